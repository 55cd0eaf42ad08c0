"""Recording a real service as stubs, and replaying it."""

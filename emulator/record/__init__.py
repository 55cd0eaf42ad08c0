"""Recording a real service as stubs, and replaying it."""

from __future__ import annotations

__all__: list[str] = []

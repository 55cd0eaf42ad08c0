"""Request (and response) validation against the rules the contracts carry: `buf.validate`
annotations, evaluated by protovalidate, and `google.api.field_behavior = REQUIRED`."""

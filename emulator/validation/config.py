"""The `validation:` section of emulator.yaml: what is checked against the contracts' rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Mode", "ValidationConfig"]

Mode = Literal["enforce", "report", "off"]


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """Requests (and the responses of behaviours and stubs) checked against their `buf.validate`
    rules and `google.api.field_behavior`."""

    # `enforce` by default: the service this emulator stands in for runs validation middleware
    # (that is what the rules in its contract are for), and a test that sends a request
    # production refuses should fail here, not there. `report` keeps the older behaviour
    # while a suite is brought in line.
    requests: Mode = field(
        default="enforce",
        metadata={
            "help": "requests that break their rules: `enforce` (INVALID_ARGUMENT with a "
            "google.rpc.BadRequest), `report` (journalled and logged, still answered) or `off`"
        },
    )
    # `report` by default: the service does not refuse its own responses (validation middleware
    # checks what comes in), so failing the call would answer what production never answers;
    # and stubs merged onto default responses that predate the rules would turn into INTERNAL.
    # A response that breaks its rules is still loud: a warning naming the behaviour or stub
    # and the violation, kept on the journal record. `enforce` fails the call (and the test).
    responses: Mode = field(
        default="report",
        metadata={
            "help": "responses of behaviours and stubs that break their rules: `report` "
            "(logged and journalled, sent as they are), `enforce` (INTERNAL naming the "
            "behaviour or stub and the rule; in-process tests fail) or `off`"
        },
    )

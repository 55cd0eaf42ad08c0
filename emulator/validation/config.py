"""The `validation:` section of emulator.yaml: what is checked against the contracts' rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Mode", "ValidationConfig"]

Mode = Literal["enforce", "report", "off"]


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """Requests checked against their `buf.validate` rules and `google.api.field_behavior`."""

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

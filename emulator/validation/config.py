"""The `validation:` section of emulator.yaml: what is checked against the contracts' rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Mode", "ValidationConfig"]

Mode = Literal["enforce", "report", "off"]


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """Messages checked against their `buf.validate` rules and `google.api.field_behavior`."""

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
    # `off` by default: checking every response costs a parse per message, and what answers
    # is the test's own code, which `report` or `enforce` checks when a suite asks for it.
    responses: Mode = field(
        default="off",
        metadata={
            "help": "responses of behaviours and stubs that break their rules: `enforce` "
            "(INTERNAL naming what answered), `report` (journalled and logged) or `off`"
        },
    )

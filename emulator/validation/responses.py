"""Response validation (`validation.responses`): what behaviours and stubs answer, checked
against the response type's rules.

A behaviour or stub that sends a message breaking the contract's rules is a bug in the test's
emulation of the service, not the service's answer: `report` logs it (a warning naming the
method, the behaviour or stub, and the first violation) and keeps it on the journal record as
`response.name: ...` (`response[2]...` for the third message of a stream); `enforce` fails the
call with INTERNAL naming the same, and, as a behaviour that returns the wrong type does, fails
an in-process test (`Emulator.behavior_errors`).

Only the responders that know they answered with their own message call it: the behaviour and
stub responders. Default responses are not checked (making them keep the rules is the default
generator's business), nor what a real upstream answers through the proxy (the upstream is the
truth), nor recorded stubs (they replay it). A method whose response type has no rules has no
`ResponseCheck`: its responders are never handed one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection

from google.protobuf.message import Message

from emulator.behavior.convert import ReturnTypeError
from emulator.call import Call
from emulator.contracts.model import MethodSpec
from emulator.validation.config import Mode
from emulator.validation.rules import Rules, Violation, checked

__all__ = ["InvalidResponse", "ResponseCheck"]

log = logging.getLogger("emulator")

_TOP = re.compile(r"[.\[]")


class InvalidResponse(ReturnTypeError):
    """A behaviour's or stub's response broke the contract's rules (`validation.responses:
    enforce`): the call ends INTERNAL with this text, and an in-process test fails with it."""


class ResponseCheck:
    """The check of one method's responses, for the snapshot whose `spec` it was made for."""

    __slots__ = ("mode", "rules", "spec")

    def __init__(self, rules: Rules, spec: MethodSpec, mode: Mode) -> None:
        self.rules = rules
        self.spec = spec
        self.mode = mode

    def __call__(
        self,
        call: Call,
        message: Message | bytes,
        who: str,
        *,
        given: Collection[str] | None = None,
        default: Callable[[], Message] | None = None,
    ) -> None:
        """Check response message `message` (the next one `call` sends) that `who` answered
        (`behaviour Signup.Register at behaviors/signup.py:12`, `stub name (file:line)`).

        A stub merged onto the default response passes the fields it gives as `given` and the
        default as `default`: a violation is the stub's when it is in a field the stub gives,
        or when the default alone does not have it (a message-level rule the merge broke)."""
        spec = self.spec
        if isinstance(message, bytes):
            message = spec.output_class.FromString(message)
        violations = checked(self.rules, message, spec.name, "response")
        if violations and given is not None:
            violations = _blamed(violations, given, default, self.rules, spec)
        if not violations:
            return
        root = "response" if not spec.kind.server_streaming else f"response[{len(call.responses)}]"
        call.violations = (*call.violations, *(v.at(root) for v in violations))
        first = violations[0].at(root)
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        if self.mode == "report":
            log.warning(
                "%s: invalid response from %s (validation.responses: report): %s%s",
                spec.name,
                who,
                first,
                more,
            )
            return
        raise InvalidResponse(
            f"response of {spec.name} from {who} breaks the contract's rules: {first}{more} "
            "(validation.responses: enforce); fix what it answers"
        )


def _blamed(
    violations: list[Violation],
    given: Collection[str],
    default: Callable[[], Message] | None,
    rules: Rules,
    spec: MethodSpec,
) -> list[Violation]:
    """The violations a stub merged onto the default is to blame for."""
    own: set[tuple[str, str]] | None = None
    out = []
    for violation in violations:
        if violation.field and _TOP.split(violation.field, maxsplit=1)[0] in given:
            out.append(violation)
            continue
        if default is None:
            continue
        if own is None:
            found = checked(rules, default(), spec.name, "response")
            own = {(v.field, v.reason) for v in found}
        if (violation.field, violation.reason) not in own:
            out.append(violation)
    return out

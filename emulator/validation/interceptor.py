"""The validation interceptor: requests checked against their contract's rules (and the plan of
which responses are: `emulator.validation.responses`).

It runs in the chain after security and faults, before the responder: each request message as it
arrives (`on_request`, once for unary requests, per message for streams). A request that breaks
its rules answers INVALID_ARGUMENT with a `google.rpc.BadRequest` in the status details, one
field violation per broken rule, as protovalidate's middleware does in production; `report`
journals and logs it and lets the call through.

What has rules is worked out per snapshot of the contracts (`prepare`, then `use` once the
snapshot is served). With no method whose messages have rules, the hooks are not bound at all;
a method without rules beside ones with costs a dict lookup per message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError, Message

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.contracts.model import Contracts, MethodSpec
from emulator.errors import RpcAbort
from emulator.validation.config import ValidationConfig
from emulator.validation.responses import ResponseCheck
from emulator.validation.rules import Rules, Violation, checked

__all__ = ["Plan", "ValidationInterceptor"]

log = logging.getLogger("emulator")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one snapshot's contracts check: the methods whose requests have rules, each with
    the spec it was worked out for (a call on an older snapshot is left alone), and the check
    of each method whose responses have rules (the dispatcher hands it to its responders)."""

    rules: Rules | None = None
    requests: dict[str, MethodSpec] = field(default_factory=dict)
    responses: dict[str, ResponseCheck] = field(default_factory=dict)


class ValidationInterceptor(Interceptor):
    def __init__(self, config: ValidationConfig, contracts: Contracts) -> None:
        self.config = config
        self._plan = Plan()
        self.use(self.prepare(contracts))

    def prepare(self, contracts: Contracts) -> Plan:
        """The plan for `contracts`, their CEL rules compiled (ContractError if one does not):
        made before a snapshot is served, so a contract that cannot be checked never is."""
        config = self.config
        requests, responses = config.requests != "off", config.responses != "off"
        if not (requests or responses):
            return Plan()
        specs = list(contracts.methods.values())
        roots = [s.descriptor.input_type for s in specs] if requests else []
        roots += [s.descriptor.output_type for s in specs] if responses else []
        rules = Rules(contracts, roots)
        plan = Plan(rules)
        for spec in specs:
            if requests and rules.applies(spec.descriptor.input_type):
                rules.compile(spec.descriptor.input_type, spec.input_class)
                plan.requests[spec.path] = spec
            if responses and rules.applies(spec.descriptor.output_type):
                rules.compile(spec.descriptor.output_type, spec.output_class)
                plan.responses[spec.path] = ResponseCheck(rules, spec, config.responses)
        return plan

    def use(self, plan: Plan) -> None:
        """Check calls with `plan` from the next call on."""
        self._plan = plan
        self.changed()

    @property
    def plan(self) -> Plan:
        return self._plan

    def live(self, hook: str) -> bool:
        return hook == "on_request" and bool(self._plan.requests)

    async def on_request(self, call: Call, index: int) -> None:
        # Written out (no helper calls): this runs on every request of a method with rules.
        plan, spec = self._plan, call.spec
        rules = plan.rules
        if plan.requests.get(spec.path) is not spec or rules is None:
            return
        raw, decoded = call.requests[index], call.decoded
        if decoded is not None and decoded[0] is raw:
            message = decoded[1]  # a stream's message, decoded by the exchange reading it
        else:
            try:
                message = spec.input_class.FromString(raw)
            except (DecodeError, RuntimeError):  # (upb raises DecodeError, older RuntimeError)
                return  # malformed bytes: the responder answers INVALID_ARGUMENT for those
            call.decoded = (raw, message)  # for the responder's `parse`: one decode per request
        violations = checked(rules, message, spec.name, "request")
        if not violations:
            return
        root = "request" if not spec.kind.client_streaming else f"request[{index}]"
        call.violations = (*call.violations, *(v.at(root) for v in violations))
        first = violations[0].at(root)
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        if self.config.requests == "report":
            log.warning("%s: invalid request (validation: report): %s%s", spec.name, first, more)
            return
        raise RpcAbort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid request to {spec.name}: {first}{more}",
            details=[_bad_request(violations)],
        )


def _bad_request(violations: Sequence[Violation]) -> Message:
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]

    detail: Message = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=v.description, reason=v.reason
            )
            for v in violations
        ]
    )
    return detail

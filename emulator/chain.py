"""The interceptor chain every call passes through, whatever its RPC kind.

An `Interceptor` sees a call at four points:

    before(call)               before the responder runs; raise RpcAbort to refuse the call
    on_request(call, i)        request message i has arrived (`call.requests[i]`, raw bytes);
                               unary calls have one, streams one per message; may raise RpcAbort
    before_response(call, i)   before response message i is sent (streams: each message)
    after(call)                once the status is known (journal, telemetry); must not raise

State an interceptor keeps from one hook to the next lives on the call, in a slot of its own
(`self.state(call)`, `self.set_state(call, value)`), so interceptors share no per-call dicts and
a finished call drops it all at once.

The chain calls only the hooks an interceptor has live (`Interceptor.live`: by default those its
class overrides). One whose hooks have nothing to do for a while, such as faults without rules,
says so there and calls `changed()` when that changes, so it costs nothing per call meanwhile.

Security interceptors run first, then faults, so nothing a test configures lets a request through
that the policy refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emulator.call import Call

__all__ = ["Chain", "Interceptor"]


_HOOKS = ("before", "on_request", "before_response", "after")


class Interceptor:
    """Override any of the four hooks; the defaults do nothing and cost nothing per call."""

    # The chains this interceptor is in: told to bind its hooks again when `changed()`.
    _chains: tuple[Chain, ...] = ()

    async def before(self, call: Call) -> None:
        """Runs before the responder; raise `RpcAbort` to end the call with a status."""

    async def on_request(self, call: Call, index: int) -> None:
        """Runs once request message `index` has arrived, before the responder sees it."""

    async def before_response(self, call: Call, index: int) -> None:
        """Runs before response message `index` is sent."""

    def after(self, call: Call) -> None:
        """Runs once the call has its status; must not raise."""

    def live(self, hook: str) -> bool:
        """Whether the chain calls `hook` (a name of the four) now: by default, the hooks the
        class overrides. An interceptor whose hooks have nothing to do for a while (faults
        with no rules) says so here, and calls `changed()` when that changes."""
        return getattr(type(self), hook) is not getattr(Interceptor, hook)

    def changed(self) -> None:
        """What `live()` answers has changed: the chains bind their hooks again, so the next
        call runs the hooks that now have something to do (calls under way may run either)."""
        for chain in self._chains:
            chain.bind()

    def state(self, call: Call, default: Any = None) -> Any:
        """What this interceptor stored on `call` with `set_state`, or `default`."""
        slots = call.slots
        return default if slots is None else slots.get(self, default)

    def set_state(self, call: Call, value: Any) -> None:
        """Keep `value` on `call` for this interceptor's later hooks."""
        if call.slots is None:
            call.slots = {}
        call.slots[self] = value


class Chain:
    """Interceptors in order. A hook no interceptor has live costs nothing per call (the
    dispatcher reads `checks_calls`, `checks_requests` and `checks_responses` first), and a hook
    only one has is that interceptor's own method (no loop, no extra coroutine)."""

    checks_calls: bool  # some interceptor's `before` is live
    checks_requests: bool  # `on_request`
    checks_responses: bool  # `before_response`

    def __init__(self, interceptors: Sequence[Interceptor] = ()) -> None:
        self.interceptors = list(interceptors)
        for interceptor in self.interceptors:
            interceptor._chains = (*interceptor._chains, self)
        self.bind()

    def bind(self) -> None:
        """Point each hook at the interceptors whose hook is live (see `Interceptor.live`)."""
        found = {name: [i for i in self.interceptors if i.live(name)] for name in _HOOKS}
        found["after"].reverse()  # unwinding: the last one first
        # The lists first, then the shortcuts: a call on the loop meanwhile sees either binding.
        self._before, self._on_request = found["before"], found["on_request"]
        self._before_response, self._after = found["before_response"], found["after"]
        for name, live in found.items():
            if len(live) == 1:
                # An instance attribute shadows the looping method below.
                setattr(self, name, getattr(live[0], name))
            else:
                self.__dict__.pop(name, None)
        self.checks_calls = bool(self._before)
        self.checks_requests = bool(self._on_request)
        self.checks_responses = bool(self._before_response)

    async def before(self, call: Call) -> None:
        for interceptor in self._before:
            await interceptor.before(call)

    async def on_request(self, call: Call, index: int) -> None:
        for interceptor in self._on_request:
            await interceptor.on_request(call, index)

    async def before_response(self, call: Call, index: int) -> None:
        for interceptor in self._before_response:
            await interceptor.before_response(call, index)

    def after(self, call: Call) -> None:
        for interceptor in self._after:
            interceptor.after(call)

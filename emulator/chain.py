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

Security interceptors run first, then faults, so nothing a test configures lets a request through
that the policy refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emulator.call import Call

__all__ = ["Chain", "Interceptor"]


class Interceptor:
    """Override any of the four hooks; the defaults do nothing and cost nothing per call."""

    async def before(self, call: Call) -> None:
        """Runs before the responder; raise `RpcAbort` to end the call with a status."""

    async def on_request(self, call: Call, index: int) -> None:
        """Runs once request message `index` has arrived, before the responder sees it."""

    async def before_response(self, call: Call, index: int) -> None:
        """Runs before response message `index` is sent."""

    def after(self, call: Call) -> None:
        """Runs once the call has its status; must not raise."""

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
    """Interceptors in order. A hook no interceptor overrides costs nothing per call, and a hook
    only one overrides is that interceptor's own method (no loop, no extra coroutine)."""

    def __init__(self, interceptors: Sequence[Interceptor] = ()) -> None:
        self.interceptors = list(interceptors)
        self._before = self._overriding("before")
        self._on_request = self._overriding("on_request")
        self._before_response = self._overriding("before_response")
        self._after = self._overriding("after")[::-1]  # unwinding: the last one first
        # Instance attributes shadow the methods below when one interceptor has the hook.
        for name, found in (
            ("before", self._before),
            ("on_request", self._on_request),
            ("before_response", self._before_response),
            ("after", self._after),
        ):
            if len(found) == 1:
                setattr(self, name, getattr(found[0], name))

    def _overriding(self, name: str) -> list[Interceptor]:
        base = getattr(Interceptor, name)
        return [i for i in self.interceptors if getattr(type(i), name) is not base]

    @property
    def checks_requests(self) -> bool:
        return bool(self._on_request)

    @property
    def checks_responses(self) -> bool:
        return bool(self._before_response)

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

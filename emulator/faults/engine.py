"""The faults interceptor: delays, aborts, held deadlines, cut streams and rate limits.

It runs in the chain after security and before the responder. Rules are looked up per method
once (and again only when rules change), so rules that match nothing cost a dict lookup a call.

A rule with `match.request` is checked against the request message. A unary request is there
before the call starts, so such a rule is checked then, in order with the others. A client or
bidi stream's messages come later: the rule is checked against each message as it arrives
(`on_request`) and fires on the first one that matches, once per call, at that point in the
stream (the messages before it went through, and bidi responses to them were sent). As for unary
calls, its `when` counts calls that matched, not messages.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import grpc

from emulator.call import Call, first_values
from emulator.chain import Interceptor
from emulator.contracts.patterns import method_matches
from emulator.errors import RpcAbort
from emulator.faults.config import RateLimitConfig
from emulator.faults.headers import header_fault, warn_if_ignored
from emulator.faults.rules import Abort, Rule, seeded

__all__ = ["FaultInterceptor", "RateLimiter", "StreamFault"]

HOLD_WITHOUT_DEADLINE = 30.0  # `deadline: exceed` on a call without a deadline: hold this long


@dataclass(slots=True)
class StreamFault:
    rule: str
    abort_after: int | None
    message_delay: float
    abort: Abort | None


@dataclass(slots=True)
class _CallFaults:
    """The interceptor's state for one call (its `Interceptor.state` slot)."""

    stream: StreamFault | None = None  # the stream fault applied, if any (one per call)
    # Rules with `match.request` that no message of this request stream has matched yet.
    waiting: list[Rule] | None = None


class _ForMethod(NamedTuple):
    rules: list[Rule]
    limits: list[RateLimiter]
    by_request: list[Rule]  # those of `rules` with `match.request`


class RateLimiter:
    """A token bucket: `rps` tokens a second, at most `burst` saved up. Seconds are read from
    `clock` (the emulator clock's `monotonic`), so a test refills a bucket by advancing it."""

    def __init__(
        self, config: RateLimitConfig, index: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.name = config.name or f"rate_limits[{index}]"
        self._clock = clock
        self._tokens = float(config.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a call may go ahead, else the seconds until the next token."""
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.config.burst), self._tokens + (now - self._last) * self.config.rps
            )
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.config.rps

    def reset(self) -> None:
        with self._lock:
            self._tokens, self._last = float(self.config.burst), self._clock()


class FaultInterceptor(Interceptor):
    def __init__(
        self,
        rules: Sequence[Rule],
        limits: Sequence[RateLimiter],
        *,
        seed: int,
        header_faults: bool = False,
        max_active: int | None = None,
        clock: Callable[[], float] = time.monotonic,  # windows count in it: the emulator clock
    ) -> None:
        self._rules = list(rules)
        self._limits = list(limits)
        self._seed = seed
        self._header_faults = header_faults
        self._max_active = max_active
        self._clock = clock
        self._started = clock()
        self._active = 0
        self._by_path: dict[str, _ForMethod] = {}
        self._header_calls = itertools.count(1)
        self._header_warned = header_faults  # headers ignored while off: logged once
        # Once a rule with `stream` has been added, the per-message and end hooks stay live:
        # a call holding its stream fault keeps it (and frees its max_active_faults slot) even
        # after the rule is removed.
        self._streams = any(r.config.stream for r in self._rules)

    # -- rules at run time (emu.fault) ---------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def add(self, rule: Rule) -> None:
        self._by_path = {}
        rule.removed = False
        self._rules = [*self._rules, rule]
        self._by_path = {}
        self._streams = self._streams or bool(rule.config.stream)
        self.changed()

    def remove(self, rule: Rule) -> None:
        # A call already past `_for` holds the old list: the flag keeps the rule from firing
        # there once it is gone (a `with emu.fault()` block ended while the call was delayed).
        rule.removed = True
        self._by_path = {}
        self._rules = [r for r in self._rules if r is not rule]
        self._by_path = {}
        self.changed()

    def reset(self) -> None:
        """Counters, matching-call indexes, buckets and windows back to the start."""
        for rule in self._rules:
            rule.reset()
        for limit in self._limits:
            limit.reset()
        self._started = self._clock()
        self._header_calls = itertools.count(1)

    def restart_clock(self) -> None:
        self._started = self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    # -- the chain hooks -------------------------------------------------------------------

    def live(self, hook: str) -> bool:
        # With no rule, limit or header fault, a call costs nothing here: the chain leaves the
        # hooks out until add() (only the look for ignored fault headers runs, until it has
        # said so; in `after`, a loop over two hooks costs as much as the coroutine).
        if hook == "before":
            return bool(self._rules or self._limits or self._header_faults) or (
                not self._header_warned
            )
        if hook == "on_request":
            return any(r.needs_request for r in self._rules)
        return self._streams  # before_response, after

    def _for(self, path: str) -> _ForMethod:
        # Read the cache before the rules: a concurrent add()/remove() replaces both, and a
        # lookup built from old rules must land in the old cache, never the new one.
        cache = self._by_path
        found = cache.get(path)
        if found is None:
            rules = [r for r in self._rules if method_matches(r.config.match.method, path)]
            found = _ForMethod(
                rules,
                [lim for lim in self._limits if method_matches(lim.config.match.method, path)],
                [r for r in rules if r.needs_request],
            )
            cache[path] = found
        return found

    def _call_state(self, call: Call) -> _CallFaults:
        state: _CallFaults | None = self.state(call)
        if state is None:
            state = _CallFaults()
            self.set_state(call, state)
        return state

    async def before(self, call: Call) -> None:
        if not self._header_warned:
            self._header_warned = warn_if_ignored(call.metadata)
            if self._header_warned:
                self.changed()  # said: with no rules, `before` has nothing left to do
            if not (self._rules or self._limits or self._header_faults):
                return
        rules, limits, by_request = self._for(call.spec.path)
        if not (rules or limits or self._header_faults):
            return
        headers = first_values(call.metadata)
        for limit in limits:
            wait = limit.take()
            if wait:
                raise RpcAbort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit {limit.name}: {limit.config.rps:g} calls/s, burst "
                    f"{limit.config.burst}",
                    trailers={"grpc-retry-pushback-ms": str(max(1, round(wait * 1000)))},
                )
        if self._header_faults:
            await self._header(call, headers)
        streamed = call.spec.kind.client_streaming  # no request yet: see on_request
        if streamed and by_request:
            waiting = [r for r in by_request if r.matches_metadata(call.metadata)]
            if waiting:
                self._call_state(call).waiting = waiting
        request = None
        for rule in rules:  # `_for` picked them by method
            if rule.removed:
                continue
            if rule.needs_request:
                if streamed:
                    continue
                if request is None and call.requests:
                    request = _parse(call, 0)
            if not rule.matches_call(call.metadata, request):
                continue
            await self._matched(call, rule)

    async def on_request(self, call: Call, index: int) -> None:
        state: _CallFaults | None = self.state(call)
        if state is None or not state.waiting:
            return  # unary calls, and streams no rule with `match.request` waits on
        request = _parse(call, index)
        matched = [r for r in state.waiting if not r.removed and r.matches_request(request)]
        if not matched:
            return
        # Once per call: a rule that matched leaves the waiting list, whatever its gate says.
        state.waiting = [r for r in state.waiting if r not in matched]
        for rule in matched:
            await self._matched(call, rule)

    async def _matched(self, call: Call, rule: Rule) -> None:
        """`rule` matched `call`: count the call, and apply the rule if its gate lets it."""
        index = rule.next_index()
        if rule.gate(index, self.elapsed()):
            await self._apply(call, rule, index)

    async def _apply(self, call: Call, rule: Rule, index: int) -> None:
        config, seed = rule.config, self._seed
        delay = rule.delay(seed, index) if config.delay and rule.draw(seed, index, "delay") else 0
        hold = config.deadline == "exceed" and rule.draw(seed, index, "deadline")
        abort = rule.abort if rule.abort and rule.draw(seed, index, "abort") else None
        stream = config.stream if config.stream and rule.draw(seed, index, "stream") else None
        if not (delay or hold or abort or stream):
            return
        if not self._admit():
            return
        done = (("delay", delay), ("deadline", hold), ("abort", abort), ("stream", stream))
        kind = "+".join(name for name, on in done if on)
        held = False  # a stream fault keeps its max_active_faults slot until the call ends
        try:
            rule.counted()
            call.faults = (*call.faults, rule.name)
            call.fault_kinds = (*call.fault_kinds, kind)
            if stream is not None:
                state = self._call_state(call)
                held = state.stream is None  # released in after(); one per call
                state.stream = StreamFault(
                    rule.name, stream.abort_after, stream.message_delay, rule.abort
                )
                abort = None  # with `stream`, the abort ends the stream after abort_after
            if delay:
                await _sleep_within_deadline(call, delay)
            if hold:
                await _sleep_within_deadline(call, HOLD_WITHOUT_DEADLINE)
                # Only a call without a (near) deadline gets here: it still ends as a timeout.
                raise RpcAbort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"fault {rule.name}: held the call {HOLD_WITHOUT_DEADLINE:g}s",
                )
            if abort is not None:
                raise abort.error(f"fault {rule.name}")
        finally:
            if not held:
                self._active -= 1

    def _admit(self) -> bool:
        """`max_active_faults`: injected faults in flight at once, as in Envoy."""
        if self._max_active is not None and self._active >= self._max_active:
            return False
        self._active += 1
        return True

    async def _header(self, call: Call, headers: dict[str, str | bytes]) -> None:
        fault = header_fault(headers)
        if fault is None:
            return
        index = next(self._header_calls)
        rng = seeded(self._seed, "header", index)
        delay = fault.delay if fault.delay and rng.random() < fault.delay_probability else 0
        abort = fault.code if fault.code and rng.random() < fault.abort_probability else None
        if not (delay or abort) or not self._admit():
            return
        try:
            call.faults = (*call.faults, "header")
            call.fault_kinds = (*call.fault_kinds, "header")
            if delay:
                await _sleep_within_deadline(call, delay)
            if abort is not None:
                raise RpcAbort(abort, fault.message or "fault requested by header")
        finally:
            self._active -= 1

    async def before_response(self, call: Call, index: int) -> None:
        state: _CallFaults | None = self.state(call)
        fault = None if state is None else state.stream
        if fault is None:
            return
        if fault.abort_after is not None and index >= fault.abort_after:
            if fault.abort is not None:
                raise fault.abort.error(f"fault {fault.rule}: stream cut after {index} messages")
            raise RpcAbort(
                grpc.StatusCode.UNAVAILABLE, f"fault {fault.rule}: stream cut after {index}"
            )
        if fault.message_delay:
            await _sleep_within_deadline(call, fault.message_delay)

    def after(self, call: Call) -> None:
        state: _CallFaults | None = self.state(call)
        if state is not None and state.stream is not None:  # over: its fault no longer active
            self._active -= 1

    def stats(self) -> dict[str, dict[str, int]]:
        return {r.name: {"matched": r.matched, "injected": r.injected} for r in self._rules}


async def _sleep_within_deadline(call: Call, seconds: float) -> None:
    """Sleep, but never past the client's deadline: there the call ends DEADLINE_EXCEEDED."""
    if call.deadline is None:
        await asyncio.sleep(seconds)
        return
    remaining = call.deadline - time.time()
    if seconds < remaining:
        await asyncio.sleep(seconds)
        return
    await asyncio.sleep(max(0.0, remaining))
    raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded during an injected delay")


def _parse(call: Call, index: int) -> object:
    try:
        return call.spec.input_class.FromString(call.requests[index])
    except Exception:  # the responder answers INVALID_ARGUMENT for it
        return None


def rate_limiters(
    configs: Iterable[RateLimitConfig], clock: Callable[[], float] = time.monotonic
) -> list[RateLimiter]:
    return [RateLimiter(c, i, clock) for i, c in enumerate(configs)]

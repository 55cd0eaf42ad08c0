"""Health faults: matched services report a status other than SERVING while a window is open.

Windows count in the emulator clock's monotonic seconds from the server's start, so
`emu.clock.advance(10)` opens a window that starts at 5s. A task sleeps until the next edge of a
window and looks again whenever the clock moves; a clock moved from another thread (a sync
test) waits until the new statuses are set, so the next health check already sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from grpc_health.v1 import health_pb2

from emulator.clock import Clock
from emulator.contracts.model import Contracts
from emulator.contracts.patterns import method_matches
from emulator.faults.config import FaultConfig

__all__ = ["HealthWindows"]

SERVING = health_pb2.HealthCheckResponse.SERVING
_APPLY_TIMEOUT = 5.0  # a clock moved off the loop waits at most this long for the new statuses


class HealthWindows:
    """The health faults of one server, reported through its health servicer."""

    def __init__(
        self, health: Any, clock: Clock, rules: Iterable[FaultConfig], contracts: Contracts
    ) -> None:
        self._health = health  # grpc_health's aio HealthServicer
        self._clock = clock
        self._rules = [(rule, _covered(rule, contracts)) for rule in rules]
        self._started = 0.0
        self._reported: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._moved: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Windows count from now; statuses of windows open from the start are set at once."""
        if not self._rules:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._moved, self._lock = asyncio.Event(), asyncio.Lock()
        self._started = self._clock.monotonic()
        self._reported = {name: SERVING for _, names in self._rules for name in names}
        await self._apply()
        self._clock.listeners.append(self._clock_moved)
        self._task = asyncio.create_task(self._run())

    async def cover(self, contracts: Contracts) -> None:
        """Apply the windows to the services of new contracts (a swapped snapshot), from now on;
        a service no longer served is no longer reported."""
        self._rules = [(rule, _covered(rule, contracts)) for rule, _ in self._rules]
        if self._lock is None:
            return  # not started: start() reports from these
        names = {name for _, covered in self._rules for name in covered}
        async with self._lock:
            self._reported = {
                name: self._reported.get(name, SERVING) for name in sorted(names)
            }  # a new service starts SERVING, as the server sets it
        await self._apply()
        if self._moved is not None:
            self._moved.set()  # the task picks its next edge among the new rules

    def status_of(self, name: str) -> int:
        """The status the windows report for `name` now (SERVING outside every window)."""
        return int(self._reported.get(name, SERVING))

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._clock.listeners.remove(self._clock_moved)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _clock_moved(self, _frozen: datetime.datetime | None) -> None:
        loop, moved = self._loop, self._moved
        if loop is None or moved is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            moved.set()  # on the loop (an async test): the task looks again next turn
            return
        future = asyncio.run_coroutine_threadsafe(self._apply(), loop)
        with contextlib.suppress(TimeoutError):
            future.result(_APPLY_TIMEOUT)
        loop.call_soon_threadsafe(moved.set)  # and the task picks its next edge

    async def _run(self) -> None:
        assert self._moved is not None
        while True:
            self._moved.clear()
            wait = await self._apply()
            if wait is None:
                return  # every window is over, and the clock never goes back
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), wait)

    async def _apply(self) -> float | None:
        """Report what the windows say now; the seconds until the next edge (None: no more)."""
        assert self._lock is not None
        async with self._lock:
            wanted, wait = self._wanted(self._clock.monotonic() - self._started)
            for name, status in wanted.items():
                if self._reported.get(name) != status:
                    await self._health.set(name, status)
                    self._reported[name] = status
            return wait

    def _wanted(self, elapsed: float) -> tuple[dict[str, int], float | None]:
        wanted: dict[str, int] = {}
        edges: list[float] = []
        for rule, names in self._rules:
            window = rule.when.window
            if window is None:
                inside = True
            else:
                end = window.start + window.duration
                inside = window.start <= elapsed < end
                edges += [edge - elapsed for edge in (window.start, end) if edge > elapsed]
            if inside:
                status = getattr(health_pb2.HealthCheckResponse, rule.health or "NOT_SERVING")
                for name in names:
                    wanted.setdefault(name, status)  # the first open rule for a service wins
        for name in self._reported:
            wanted.setdefault(name, SERVING)
        return wanted, min(edges) if edges else None


def _covered(rule: FaultConfig, contracts: Contracts) -> Sequence[str]:
    """A service is covered when the pattern matches one of its methods; "*" also covers the
    server as a whole ("")."""
    pattern = rule.match.method
    names = [""] if pattern == "*" else []
    names += [
        name
        for name, service in contracts.services.items()
        if any(method_matches(pattern, m.path) for m in service.methods.values())
    ]
    return names

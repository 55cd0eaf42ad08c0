"""Calls in flight, so that a journal read never misses a call the client has already seen end.

A client gives up at its deadline a moment before the server does (the server's deadline is the
client's plus the time the headers took), so right after a client's DEADLINE_EXCEEDED the
server may still be ending that call. A read of the journal from another thread waits, briefly,
for calls whose deadline has passed; calls that are merely running are never waited for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.chain import Call

__all__ = ["DEADLINE_SLACK", "InFlight", "past_deadline"]

# How close to its deadline a cancelled call counts as DEADLINE_EXCEEDED: the client cancels at
# its own deadline, slightly before the server's.
DEADLINE_SLACK = 0.05
_SETTLE_TIMEOUT = 2.0


def past_deadline(call: Call) -> bool:
    """Whether the client has given up on `call`: its deadline is (all but) past."""
    return call.deadline is not None and time.time() >= call.deadline - DEADLINE_SLACK


class InFlight:
    def __init__(self, expire: Callable[[Call], None]) -> None:
        self._calls: set[Call] = set()
        self._changed = threading.Condition(threading.Lock())
        self._waiting = 0
        self._expire = expire  # ends a call past its deadline as DEADLINE_EXCEEDED, at once
        self.loop_thread: int | None = None  # reads on the server's own loop must not wait

    def add(self, call: Call) -> None:
        if call.deadline is not None:  # only calls with a deadline are ever waited for
            with self._changed:
                self._calls.add(call)

    def remove(self, call: Call) -> None:
        if call.deadline is not None:
            with self._changed:
                self._calls.discard(call)
                if self._waiting:
                    self._changed.notify_all()

    def settle(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until no call whose deadline has passed is still in flight (at most `timeout`)."""
        if threading.get_ident() == self.loop_thread:
            # An async test reads on the loop that would end those calls, so it cannot wait:
            # end them here instead (the client has given up on them: it saw the deadline).
            with self._changed:
                due = [c for c in self._calls if past_deadline(c)]
            for call in due:
                self._expire(call)
            return
        give_up = time.monotonic() + timeout
        with self._changed:
            self._waiting += 1
            try:
                while True:
                    left = give_up - time.monotonic()
                    if not any(past_deadline(c) for c in self._calls) or left <= 0:
                        return
                    self._changed.wait(min(left, 0.05))
            finally:
                self._waiting -= 1

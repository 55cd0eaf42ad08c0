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

from emulator.call import Call, past_deadline

__all__ = ["InFlight"]

_SETTLE_TIMEOUT = 2.0


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

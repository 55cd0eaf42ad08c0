"""The emulator's clock: real time unless a test freezes or advances it."""

from __future__ import annotations

import datetime
import threading

__all__ = ["Clock"]


class Clock:
    """`now()` is real UTC time plus an offset, or a frozen instant; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime.datetime | None = None
        self._offset = datetime.timedelta()

    def now(self) -> datetime.datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.datetime.now(datetime.UTC) + self._offset

    def freeze(self, at: datetime.datetime | None = None) -> None:
        """Stop the clock at `at` (timezone-aware; naive means UTC), or at the current time."""
        moment = at or self.now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        with self._lock:
            self._frozen = moment

    def advance(self, seconds: float) -> None:
        with self._lock:
            step = datetime.timedelta(seconds=seconds)
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step

    def reset(self) -> None:
        with self._lock:
            self._frozen = None
            self._offset = datetime.timedelta()

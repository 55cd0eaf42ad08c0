"""The emulator's clock: real time unless a test freezes or advances it."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """`now()` is real UTC time plus an offset, or a frozen instant; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime.datetime | None = None
        self._offset = datetime.timedelta()
        # Told the frozen instant (None: running) whenever it changes; defaults follow it.
        self.listeners: list[Callable[[datetime.datetime | None], None]] = []

    @property
    def frozen(self) -> datetime.datetime | None:
        return self._frozen

    def _changed(self) -> None:
        for listener in self.listeners:
            listener(self._frozen)

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
        self._changed()

    def advance(self, seconds: float) -> None:
        with self._lock:
            step = datetime.timedelta(seconds=seconds)
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step
        self._changed()

    def reset(self) -> None:
        with self._lock:
            self._frozen = None
            self._offset = datetime.timedelta()
        self._changed()

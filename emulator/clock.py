"""The emulator's clock: real time unless a test freezes or advances it.

Two readings, moved together by `freeze()` and `advance()`:

- `now()`, the wall-clock time behaviours and default responses see;
- `monotonic()`, the seconds that everything the emulator schedules by time counts in: fault
  windows, rate-limit refills, health windows. It never goes backwards: `reset()` puts the wall
  clock back to real time but leaves this one where it is, and a negative `advance()` moves the
  wall clock only.

Real calls keep to real time: client deadlines, delays and call durations are what grpc and the
network see, so the clock does not move them.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """`now()` is real UTC time plus an offset, or a frozen instant; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime.datetime | None = None
        self._offset = datetime.timedelta()
        self._mono_offset = 0.0  # seconds added to time.monotonic() while running
        self._mono_frozen: float | None = None
        # Told the frozen instant (None: running) whenever the clock is frozen, advanced or
        # reset; defaults follow it, health windows look again. Called on the caller's thread.
        self.listeners: list[Callable[[datetime.datetime | None], None]] = []

    @property
    def frozen(self) -> datetime.datetime | None:
        return self._frozen

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener(self._frozen)

    def now(self) -> datetime.datetime:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return datetime.datetime.now(datetime.UTC) + self._offset

    def monotonic(self) -> float:
        """Seconds, as `time.monotonic()`, plus every `advance()`; still while frozen."""
        with self._lock:
            return self._monotonic()

    def _monotonic(self) -> float:
        if self._mono_frozen is not None:
            return self._mono_frozen
        return time.monotonic() + self._mono_offset

    def freeze(self, at: datetime.datetime | None = None) -> None:
        """Stop the clock at `at` (timezone-aware; naive means UTC), or at the current time."""
        moment = at or self.now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        with self._lock:
            self._frozen = moment
            self._mono_frozen = self._monotonic()
        self._changed()

    def advance(self, seconds: float) -> None:
        with self._lock:
            step = datetime.timedelta(seconds=seconds)
            if self._frozen is not None:
                self._frozen += step
            else:
                self._offset += step
            forward = max(0.0, seconds)
            if self._mono_frozen is not None:
                self._mono_frozen += forward
            else:
                self._mono_offset += forward
        self._changed()

    def reset(self) -> None:
        """Real time again; `monotonic()` runs on from where it is."""
        with self._lock:
            if self._mono_frozen is not None:
                self._mono_offset = self._mono_frozen - time.monotonic()
                self._mono_frozen = None
            self._frozen = None
            self._offset = datetime.timedelta()
        self._changed()

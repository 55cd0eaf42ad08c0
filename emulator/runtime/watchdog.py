"""Says so when something holds the event loop: an async behaviour that never awaits.

Every call of the server shares one event loop, so `async def` behaviour code that blocks (a
`time.sleep`, a busy loop, a blocking client) freezes all of them, silently. A heartbeat on the
loop and a thread that watches it find out; the loop thread's current stack names the culprit.
The heartbeat is one timer callback a tenth of a second; nothing runs per call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import CodeType, FrameType

__all__ = ["LoopWatchdog"]

log = logging.getLogger("emulator")

_INTERVAL = 0.1
_ASYNCIO = os.path.dirname(asyncio.__file__)


class LoopWatchdog:
    """Warns once per stall when the loop has not run its heartbeat for `threshold` seconds.

    `behaviours()` gives (code object, name) for every behaviour method, so the warning names
    the RPC whose code holds the loop.
    """

    def __init__(
        self, threshold: float, behaviours: Callable[[], Iterable[tuple[CodeType, str]]]
    ) -> None:
        self.threshold = threshold
        self._behaviours = behaviours
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def start(self) -> None:
        """Start watching the running loop (call it on the loop's thread)."""
        if self.threshold <= 0 or self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._heartbeat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="emulator-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        assert self._loop is not None
        self._timer = self._loop.call_later(_INTERVAL, self._heartbeat)

    def _watch(self) -> None:
        warned = False
        while not self._stop.wait(_INTERVAL):
            stalled = time.monotonic() - self._beat
            if stalled < self.threshold:
                warned = False
            elif not warned:
                warned = True
                log.warning(
                    "the event loop has been blocked for %.1fs by %s: every call waits meanwhile. "
                    "An `async def` behaviour must await instead of blocking (asyncio.sleep, an "
                    "async client), or be a plain `def`, which runs in the thread pool",
                    stalled,
                    self._culprit(),
                )

    def _culprit(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "unknown code"
        names = dict(self._behaviours())
        innermost: FrameType | None = None
        while frame is not None:
            name = names.get(frame.f_code)
            if name is not None:
                return f"{name} (at {frame.f_code.co_filename}:{frame.f_lineno})"
            if innermost is None and not frame.f_code.co_filename.startswith(_ASYNCIO):
                innermost = frame
            frame = frame.f_back
        if innermost is None:
            return "unknown code"
        code = innermost.f_code
        return f"{code.co_name} at {code.co_filename}:{innermost.f_lineno}"

"""While the emulator waits, the admin API's forms of the calls it keeps.

A ListCalls of 10,000 calls no one listed before spends seconds making their records and the
JSON forms of their messages (pure Python: about 50 µs for a message of twenty fields on this
machine), but calls rarely come back to back: a test does its own work between them. So once a
client has listed the journal (ListCalls; the Python client asks for raw forms only, and gets
only those made), the emulator makes the same forms for new calls in the lulls: a millisecond
at a time on the event loop, only when no call has finished for a tick (10 ms), stopping as
soon as one does. Under load it does nothing; an emulator no one lists never starts it; while
a listing is being built it waits too (that listing makes the same forms, in a thread: the two
only took turns at the interpreter, and the listing took twice as long).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from emulator.admin.convert import encoded_record
from emulator.journal import CallRecord, Journal

log = logging.getLogger("emulator")

__all__ = ["Preparer"]

TICK = 0.01  # seconds between looks at the journal
SLICE = 0.001  # seconds of work at a time: what a call arriving may wait
BATCH = 4  # calls made between looks at the clock
BIG = 16 << 10  # message bytes of a call above which its forms are not made ahead


class Preparer:
    def __init__(self, journal: Callable[[], Journal], header: str) -> None:
        self._journal = journal
        self._header = header
        self._task: asyncio.Task[None] | None = None
        self._json = False  # the JSON forms too, not only the raw ones
        self._stopped = False
        self._done = (0, 0)  # (journal clears, index) up to which forms are made
        self.listings = 0  # ListCalls being built now: no lull, whatever the journal says

    def start(self, *, raw_only: bool) -> None:
        """From now on, make the forms a ListCalls like this one needs, in the lulls (on the
        event loop; again with raw_only false adds the JSON forms)."""
        if self._stopped:
            return  # the server is stopping: a listing now must not leave a task behind
        if self._json is False and not raw_only:
            self._json, self._done = True, (0, 0)  # the calls made raw-only get JSON too
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug of ours: said, and the server still stops
                log.error("making the admin API's forms ahead failed", exc_info=True)

    async def _run(self) -> None:
        seen: tuple[int, int] | None = None
        finished: tuple[int, int] | None = None  # (clears, last index) with all forms made
        while True:
            await asyncio.sleep(TICK)
            journal = self._journal()
            now = (journal.clears, journal.last_index)
            if now != seen or self.listings:  # calls came, or a listing runs: wait for a lull
                seen = now
                continue
            while now == seen and now != finished and not self.listings:
                if self._slice(journal):
                    finished = now
                await asyncio.sleep(0)  # a call that came meanwhile goes first
                now = (journal.clears, journal.last_index)

    def _slice(self, journal: Journal) -> bool:
        """Some of the work, for about SLICE; whether it is all done."""
        deadline = time.perf_counter() + SLICE
        clears, since = self._done
        if clears != journal.clears:  # reset: indexes start again
            since = 0
        while time.perf_counter() < deadline:
            records = journal.build(BATCH, since)
            if not records:
                self._done = (journal.clears, since)
                return True
            for record in records:
                self._prepare(record)
            since = records[-1].index
        self._done = (journal.clears, since)
        return False

    def _prepare(self, record: CallRecord) -> None:
        if sum(map(len, record.raw_requests)) + sum(map(len, record.raw_responses)) > BIG:
            return  # milliseconds of Python: left to the listing, off the loop
        try:
            encoded_record(record, self._header, raw_only=not self._json)
        except Exception:  # a message json_format refuses: the listing will say so
            log.debug("no forms made ahead for call %d", record.index, exc_info=True)

"""`journal.out` (`--journal-out FILE`): every finished call appended to a file as one JSON line.

Each line is the admin API's `CallRecord` as JSON, made by the admin API's own conversion, so a
line is the same object `GET /admin/v1/calls` lists: headers redacted as the journal keeps them,
requests and responses as protobuf JSON (and their bytes, base64).

protobuf's JSON conversion is pure Python and costs more than a whole call does, so the call
path only queues the record (the journal hands it over as the call is journalled); a thread of
its own converts it, writes the line and flushes it to the operating system whenever the queue
runs dry, typically well under a millisecond after the call ended. A killed emulator (SIGKILL,
a container stopped) leaves every line flushed by then; a stopped one (SIGTERM, the end of an
`Emulator` block) writes them all first. Not fsynced: a power cut may lose the last lines.
A burst is queued (up to `QUEUE_LIMIT` calls); past that, calls wait for the writer rather than
lose lines or grow the emulator's memory.

The file is appended to, never truncated: an emulator restarted after a crash keeps the lines of
the run that crashed. Lines of different runs tell themselves apart by `startedAt` (an `index`
starts again at 1 in each run and after each reset).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import typing
from typing import TYPE_CHECKING, TextIO

from emulator.errors import ConfigError

if TYPE_CHECKING:
    from emulator.journal import CallRecord
    from emulator.runtime.server import EmulatorServer

__all__ = ["JournalOut", "attach_journal_out"]

log = logging.getLogger("emulator")


def attach_journal_out(server: EmulatorServer) -> JournalOut | None:
    """Open `journal.out` (ConfigError naming it if it cannot be) and write each call of
    `server` to it from now on; None when the key is unset."""
    path = server.config.journal.out
    if not path:
        return None
    out = JournalOut(path, server.config.admin.session_header, server.contracts.fingerprint)
    server.journal.record_listeners.append(out.write)
    return out


QUEUE_LIMIT = 10_000
_CLOSE = object()  # the last thing queued: the writer ends once it reaches it
_FLUSH_EVERY = 256  # lines, when the queue never runs dry: a busy emulator flushes too


class JournalOut:
    """Writes one JSON line per record given to `write`, from a thread of its own."""

    def __init__(self, path: str, session_header: str, fingerprint: str = "") -> None:
        try:
            self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"journal.out {path}: cannot be opened for writing: {exc.strerror}",
                key="journal.out",
                problem=f"cannot be opened for writing: {exc.strerror}",
            ) from None
        self.path = path
        self._header = session_header
        # On every line, not in a header line: the file is appended to by run after run (and
        # `emulate report`, jq and grep read lines alone), so each says which contracts served it.
        self._extra = {"contractFingerprint": fingerprint} if fingerprint else {}
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_LIMIT)
        self._closed = False
        self._failed = False
        # Started now, not with the server: an in-process Emulator serves on a thread of its
        # own, and the writer must not depend on which.
        self._thread = threading.Thread(target=self._run, name="emulator-journal-out", daemon=True)
        self._thread.start()

    def write(self, record: CallRecord) -> None:
        """Queue `record` (on the call path: nothing else happens here)."""
        if not self._closed:
            self._queue.put(record)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_CLOSE)
        self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - a file system that hangs
            log.error("journal.out %s: lines still queued after %.0fs", self.path, timeout)

    def _run(self) -> None:
        # Imported here: the admin API's messages load only for an emulator that writes a file.
        from emulator.admin.convert import call_record
        from emulator.admin.operations import to_json

        file, pending = self._file, 0
        try:
            while True:
                item = self._queue.get()
                if item is _CLOSE:
                    return
                record = typing.cast("CallRecord", item)
                try:
                    line = json.dumps({**to_json(call_record(record, self._header)), **self._extra})
                except Exception:  # one record that cannot be converted loses its line only
                    log.exception("journal.out: call %s not written", record.summary())
                    continue
                if self._failed:
                    continue
                try:
                    file.write(line + "\n")
                    pending += 1
                    if self._queue.empty() or pending >= _FLUSH_EVERY:
                        file.flush()
                        pending = 0
                except OSError as exc:  # a full disk: say so once, not on every call
                    log.error("journal.out %s: cannot write: %s", self.path, exc.strerror)
                    self._failed = True
        finally:
            try:
                file.close()
            except OSError as exc:
                log.error("journal.out %s: cannot write: %s", self.path, exc.strerror)

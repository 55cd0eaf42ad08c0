"""The access log: one structured line per call (`log.access: all | errors`).

Written through the `emulator.access` logger, so it follows `log_format` (a JSON object per line,
or text) and `log_stream`; or to `log.access_file`, as JSON lines. A line names the caller by its
principal or certificate identity, never by a token: headers are not logged at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import grpc

from emulator.call import Call, first_value
from emulator.chain import Interceptor

__all__ = ["AccessLog"]

log = logging.getLogger("emulator.access")

FLUSH_EVERY = 0.1  # seconds a written line may wait in the file's buffer

# One encoder for every line: json.dumps with separators builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":")).encode


class AccessLog(Interceptor):
    def __init__(
        self,
        mode: str,
        *,
        session_header: str,
        request_id: Callable[[Call], str],
        trace_ids: Callable[[Call], tuple[str, str]],
        path: str = "",
    ) -> None:
        self._errors_only = mode == "errors"
        self._session_header = session_header
        self._request_id = request_id
        self._trace_ids = trace_ids
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._flush_due = False
        self._second: tuple[int, str] = (-1, "")  # the last whole second, formatted
        if path:
            from emulator.errors import ConfigError

            try:
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open while serving
            except OSError as exc:
                raise ConfigError(f"log.access_file: cannot open {path}: {exc.strerror}") from None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _flush(self) -> None:
        with self._lock:
            self._flush_due = False
            if self._file is not None:
                self._file.flush()

    def _time(self, started: float) -> str:
        """ISO 8601 in UTC to the millisecond, the seconds formatted once a second."""
        fraction, seconds = math.modf(started)  # rounded as datetime.fromtimestamp rounds
        micros, whole = round(fraction * 1e6), int(seconds)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        if self._second[0] != whole:
            self._second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        return f"{self._second[1]}.{micros // 1000:03d}+00:00"

    def entry(self, call: Call) -> dict[str, Any]:
        session = first_value(call.metadata, self._session_header)
        trace_id, span_id = self._trace_ids(call)
        entry: dict[str, Any] = {
            "time": self._time(call.started),
            "method": call.spec.name,
            "code": call.code.name,
            "duration_ms": round(call.duration * 1000, 3),
            "peer": call.peer,
            "principal": call.principal or (call.identities[0] if call.identities else None),
            "session": session if isinstance(session, str) else None,
            "responder": call.answered_by or None,
            "faults": list(call.faults),
            "request_id": self._request_id(call) or None,
            "trace_id": trace_id or None,
            "span_id": span_id or None,
        }
        if call.code != grpc.StatusCode.OK:
            entry["details"] = call.details
        return entry

    def after(self, call: Call) -> None:
        if self._errors_only and call.code == grpc.StatusCode.OK:
            return
        entry = self.entry(call)
        if self._file is not None:
            self._write(_JSON(entry) + "\n")
            return
        text = " ".join(f"{k}={_text(v)}" for k, v in entry.items() if v not in (None, []))
        log.info("%s", text, extra={"access": entry})

    def _write(self, line: str) -> None:
        """Buffered, and flushed within FLUSH_EVERY seconds (and at the stop), as Envoy and
        nginx buffer theirs: a flush is a system call, and one a line was half of the log's
        cost under load. A process killed outright loses at most that last fraction of a
        second of lines; a stop by SIGTERM or SIGINT loses none."""
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            if self._flush_due:
                return
            self._flush_due = True
        try:
            asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush)
        except RuntimeError:  # not on an event loop: flush now
            self._flush()


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    text = str(value)
    return json.dumps(text) if any(c.isspace() for c in text) or not text else text

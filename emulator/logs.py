"""Log set-up for the command line: plain text or one JSON object per line, to stderr (or stdout,
as containers prefer).

With JSON, whatever else writes to file descriptor 2 is turned into JSON lines as well: grpc
core logs from C++ straight to the descriptor (`E0101 12:00:00.000000 1 file.cc:83] ...`), and
Python prints warnings, tracebacks and `emulate: error:` there. A pipe takes the descriptor's
place and a thread relays each line through the same handler as the emulator's own records.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import sys
import threading

__all__ = ["configure"]

# grpc core (absl) lines: severity letter, date, time, thread, source location, message.
_GRPC_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]\s]+)\] ?(.*)$")
_SEVERITY = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        source = getattr(record, "source", None)
        if source:
            entry["source"] = source
        access = getattr(record, "access", None)  # an access log line: its fields, as fields
        if access:
            entry.update({k: v for k, v in access.items() if k != "time"})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(fmt: str = "text", stream: str = "stderr", level: int = logging.INFO) -> None:
    if fmt == "json":
        relay = _StderrRelay.start()
        handler = logging.StreamHandler(relay.stderr if stream == "stderr" else sys.stdout)
        handler.setFormatter(_JsonFormatter())
        relay.handler = handler
        # grpcio's Python side logs through the root logger: JSON too, not logging's plain
        # last-resort lines.
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
    else:
        handler = logging.StreamHandler(sys.stdout if stream == "stdout" else sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("emulator")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class _StderrRelay:
    """File descriptor 2 → a pipe → one JSON record per line, through `handler`."""

    _instance: _StderrRelay | None = None

    def __init__(self) -> None:
        sys.stderr.flush()
        self._real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        # Line-buffered text on the real stderr, for the handler: its own lines skip the pipe.
        self.stderr = open(self._real, "w", buffering=1, closefd=False)  # noqa: SIM115
        self.handler: logging.Handler | None = None
        self._thread = threading.Thread(
            target=self._relay, args=(read,), name="emulator-stderr", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def start(cls) -> _StderrRelay:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _relay(self, fd: int) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    self._emit(line)

    def _emit(self, line: str) -> None:
        match = _GRPC_LINE.match(line)
        if match:
            name, level, source, message = "grpc", _SEVERITY[match[1]], match[2], match[3]
        else:
            error = line.startswith("emulate") and ": error: " in line
            name, level, source, message = "stderr", logging.WARNING, "", line
            if error:
                level = logging.ERROR
        record = logging.LogRecord(name, level, "", 0, message, None, None)
        record.source = source
        handler = self.handler
        if handler is None:  # before configure() finished: still one JSON object per line
            self.stderr.write(_JsonFormatter().format(record) + "\n")
        else:
            handler.handle(record)

    def close(self) -> None:
        """Put the real stderr back and let the relay drain what is left in the pipe."""
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr
            sys.stderr.flush()
        os.dup2(self._real, 2)  # closes the pipe's last write end: the relay reads to its end
        self._thread.join(timeout=2)

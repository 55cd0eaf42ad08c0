"""Log set-up for the command line: plain text or one JSON object per line, to stderr (or stdout,
as containers prefer)."""

from __future__ import annotations

import json
import logging
import sys

__all__ = ["configure"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(fmt: str = "text", stream: str = "stderr", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout if stream == "stdout" else sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("emulator")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False

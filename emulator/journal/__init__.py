"""The call journal: records of every call, queries over them (`CallList`), field-by-field
matching and `assert_called` verification with near-miss reports."""

from __future__ import annotations

from emulator.journal.records import (
    DEFAULT_MAX_BYTES,
    REDACTED,
    SECRET_HEADERS,
    CallList,
    CallRecord,
    Journal,
)

__all__ = ["DEFAULT_MAX_BYTES", "REDACTED", "SECRET_HEADERS", "CallList", "CallRecord", "Journal"]

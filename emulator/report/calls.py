"""Reading a `--journal-out` file: one admin API `CallRecord` as JSON per line.

Only the fields a report needs are required (`method`, `code`, `startedAt`, `durationSeconds`);
the rest (`index`, `details`, `faults`, `answeredBy`, `session`, `requests`) are read when there.
Anything else is an error naming the file and the line: a report of a journal half-read would
compare methods on the calls it happened to understand.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.errors import EmulatorError

__all__ = ["Call", "read_journal"]

REQUIRED = ("method", "code", "startedAt", "durationSeconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """What a report shows of one call."""

    line: int  # in its file, from 1
    index: int
    method: str  # `pkg.Service/Method`
    code: str  # `OK`, `UNAVAILABLE`, ...
    details: str
    started_at: datetime.datetime
    duration: float  # seconds
    faults: tuple[str, ...]
    answered_by: str
    session: str
    request: str  # the first request as compact JSON, cut short

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def read_journal(path: str | Path) -> list[Call]:
    """Every call of a JSON Lines journal, in file order; EmulatorError naming the file and
    line of the first one that is not a call record. Blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EmulatorError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EmulatorError(f"{path}: is a directory, not a journal file") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise EmulatorError(f"{path}:{line}: not UTF-8 text") from None
    except OSError as exc:
        raise EmulatorError(f"{path}: cannot be read: {exc.strerror}") from None
    calls = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            calls.append(_call(raw, f"{path}:{number}", number))
    return calls


def _call(raw: str, where: str, number: int) -> Call:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EmulatorError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise EmulatorError(f"{where}: not a call record (a JSON object), but {_kind(value)}")
    missing = [key for key in REQUIRED if key not in value]
    if missing:
        raise EmulatorError(
            f"{where}: not a call record: no {', '.join(missing)} "
            "(lines are the admin API's CallRecord, as --journal-out writes them)"
        )
    method = _typed(value, "method", str, where)
    code = _typed(value, "code", str, where)
    started = _typed(value, "startedAt", str, where)
    try:
        started_at = datetime.datetime.fromisoformat(started)
    except ValueError:
        raise EmulatorError(f"{where}: startedAt {started!r} is not an RFC 3339 time") from None
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=datetime.UTC)
    duration = value["durationSeconds"]
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise EmulatorError(f"{where}: durationSeconds must be a number of seconds >= 0")
    faults = value.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise EmulatorError(f"{where}: faults must be a list of rule names")
    index = value.get("index", number)
    if isinstance(index, bool) or not isinstance(index, int):
        raise EmulatorError(f"{where}: index must be a whole number")
    requests = value.get("requests")
    first = ""
    if isinstance(requests, list) and requests:
        first = json.dumps(requests[0], separators=(",", ":"), ensure_ascii=False)
    return Call(
        line=number,
        index=index,
        method=method,
        code=code,
        details=_optional(value, "details", where),
        started_at=started_at,
        duration=float(duration),
        faults=tuple(faults),
        answered_by=_optional(value, "answeredBy", where),
        session=_optional(value, "session", where),
        request=first if len(first) <= 200 else first[:199] + "…",
    )


def _typed(value: dict[str, Any], key: str, kind: type[str], where: str) -> str:
    found = value[key]
    if not isinstance(found, kind) or not found:
        raise EmulatorError(f"{where}: {key} must be a non-empty string, not {_kind(found)}")
    return found


def _optional(value: dict[str, Any], key: str, where: str) -> str:
    found = value.get(key, "")
    if not isinstance(found, str):
        raise EmulatorError(f"{where}: {key} must be a string, not {_kind(found)}")
    return found


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")

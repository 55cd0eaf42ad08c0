"""`assert_called`: verification with WireMock-style near-miss reports.

When the expected calls are not there, the message lists the calls that came closest and how each
differs, field by field, instead of only "expected 2, got 0".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from emulator.journal.matching import differences, message_text
from emulator.journal.records import CallList, CallRecord

__all__ = ["check_called"]

_SHOWN = 3  # near misses in a failure message


def check_called(
    records: list[CallRecord],
    method: str,
    *,
    times: int | None = None,
    request: Mapping[str, Any] | Message | None = None,
    metadata: Mapping[str, str] | None = None,
    at_least: int | None = None,
    at_most: int | None = None,
) -> CallList:
    """The matching calls to `method`; AssertionError with near misses when their number is
    not `times`, under `at_least` or over `at_most` (none of them given: at least 1)."""
    if times is not None:
        at_least = at_most = times
    elif at_least is None and at_most is None:
        at_least = 1
    to_method = [r for r in records if r.method == method]
    matching = [r for r in to_method if not differences(r.request, r.metadata, request, metadata)]
    low, high = at_least or 0, at_most
    if low <= len(matching) and (high is None or len(matching) <= high):
        return CallList(matching)
    wanted = _wanted(low, high)
    condition = _condition(request, metadata)
    lines = [f"expected {wanted} to {method}{condition}, got {len(matching)}"]
    if not to_method:
        others = sorted({r.method for r in records})
        lines.append(
            f"{method} was never called; calls were made to: {', '.join(others)}"
            if others
            else "no calls were made to the emulator at all"
        )
        return _fail(lines)
    if high is not None and len(matching) > high:
        lines.append("matching calls:")
        lines.extend(f"  {r.summary()}" for r in matching)
        return _fail(lines)
    misses = sorted(
        (
            (differences(r.request, r.metadata, request, metadata), r)
            for r in to_method
            if r not in matching
        ),
        key=lambda pair: len(pair[0]),
    )
    if not misses:
        lines.append(f"all {len(to_method)} call(s) to {method} match")
        return _fail(lines)
    lines.append(f"{len(to_method)} call(s) to {method}; closest:")
    for diffs, record in misses[:_SHOWN]:
        lines.append(f"  {record.summary()}")
        lines.extend(f"      {d}" for d in diffs)
    if len(misses) > _SHOWN:
        lines.append(f"  ... and {len(misses) - _SHOWN} more")
    return _fail(lines)


def _wanted(low: int, high: int | None) -> str:
    def calls(n: int) -> str:
        return f"{n} call{'s' * (n != 1)}"

    if high is None:
        return f"at least {calls(low)}"
    if low == high:
        return calls(low)
    return f"at most {calls(high)}" if low == 0 else f"{low} to {calls(high)}"


def _condition(
    request: Mapping[str, Any] | Message | None, metadata: Mapping[str, str] | None
) -> str:
    parts = []
    if request is not None:
        if isinstance(request, Message):
            text = f"{request.DESCRIPTOR.full_name} {message_text(request, limit=200)}"
        else:
            text = _json(request)
        parts.append(f"request {text}")
    if metadata:
        parts.append(f"metadata {json.dumps(dict(metadata))}")
    return " with " + " and ".join(parts) if parts else ""


def _json(value: Mapping[str, Any]) -> str:
    def plain(item: Any) -> Any:
        return message_text(item) if isinstance(item, Message) else str(item)

    try:
        return json.dumps(dict(value), default=plain)
    except Exception:  # keys json cannot write: the message is still worth having
        return repr(dict(value))


def _fail(lines: list[str]) -> CallList:
    raise AssertionError("\n".join(lines))

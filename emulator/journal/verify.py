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
) -> CallList:
    """The matching calls to `method`; AssertionError with near misses when the count is off."""
    to_method = [r for r in records if r.method == method]
    matching = [r for r in to_method if not differences(r.request, r.metadata, request, metadata)]
    if (times is None and matching) or (times is not None and len(matching) == times):
        return CallList(matching)
    wanted = "at least 1 call" if times is None else f"{times} call{'s' * (times != 1)}"
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
    if times is not None and len(matching) > times:
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
    lines.append(f"{len(to_method)} call(s) to {method}; closest:")
    for diffs, record in misses[:_SHOWN]:
        lines.append(f"  {record.summary()}")
        lines.extend(f"      {d}" for d in diffs)
    if len(misses) > _SHOWN:
        lines.append(f"  ... and {len(misses) - _SHOWN} more")
    return _fail(lines)


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

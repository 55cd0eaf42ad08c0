"""The admin API's messages from the control plane's values: calls, stubs, faults, structs.

Requests and responses go out twice: as JSON (a `Struct`, protobuf's JSON mapping with the
contract's field names, so a test in any language reads them without the contract's classes)
and as the raw bytes the call carried. Header values of `-bin` headers, and any other bytes,
go out base64-encoded, as gRPC's own text forms of them do.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import struct_pb2

from emulator.admin.descriptor import pb
from emulator.admin.structs import StructCache
from emulator.journal import CallRecord

__all__ = [
    "call_list",
    "call_record",
    "encoded_record",
    "fault",
    "first_values",
    "plain",
    "struct",
    "stub_list",
]


def plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values (whole numbers as int: a stub's `times: 2`, not 2.0)."""
    return {key: _plain(value) for key, value in struct.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, struct_pb2.Struct):
        return plain(value)
    if isinstance(value, struct_pb2.ListValue):
        return [_plain(v) for v in value]
    return value


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else base64.b64encode(value).decode("ascii")


def first_values(headers: Mapping[str, str | bytes]) -> dict[str, str]:
    return {key: _text(value) for key, value in headers.items()}


_STRUCTS = StructCache()  # the JSON forms of messages, for ListCalls and WatchCalls


def encoded_record(record: CallRecord, header: str, *, raw_only: bool = False) -> bytes:
    """`call_record(...)` serialized, made once per record and form and kept on the record: a
    test polling ListCalls, or the next page over the same calls, encodes nothing again."""
    key = (_ENCODED, header, raw_only)
    kept = record.exported
    if kept is not None:
        found: bytes | None = kept.get(key)
        if found is not None:
            return found
    data: bytes = call_record(record, header, raw_only=raw_only).SerializeToString()
    if kept is None:
        kept = record.exported = {}
    kept[key] = data
    return data


_ENCODED = object()  # the key of encoded_record()'s forms on a record


def call_list(encoded: list[bytes]) -> bytes:
    """CallList.calls (field 1) of records already encoded, as wire bytes: no messages made."""
    parts = []
    for data in encoded:
        parts.append(b"\x0a")
        parts.append(_varint(len(data)))
        parts.append(data)
    return b"".join(parts)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def call_record(record: CallRecord, header: str, *, raw_only: bool = False) -> Any:
    """One journal record as a `CallRecord` message (headers redacted as the journal keeps
    them: secrets never leave)."""
    session = record.metadata.get(header)
    out = pb.CallRecord(
        index=record.index,
        method=record.method,
        code=record.code.name,
        details=record.details,
        duration_seconds=record.duration,
        metadata=first_values(record.metadata),
        trailers=first_values(record.trailers),
        raw_requests=record.raw_requests,
        raw_responses=record.raw_responses,
        request_count=record.request_count,
        response_count=record.response_count,
        faults=record.faults,
        answered_by=record.answered_by,
        session=session if isinstance(session, str) else "",
        peer=record.peer,
    )
    started = record.started_at.timestamp()
    seconds = int(started)
    out.started_at.seconds, out.started_at.nanos = seconds, int((started - seconds) * 1e9)
    for miss in record.near_misses:
        out.near_misses.add(stub=miss.stub, reasons=miss.reasons)
    if not raw_only:
        # Struct bytes parsed in C (building each Struct in Python cost most of a big page),
        # kept by message bytes; a message is decoded only when its bytes are new.
        jsons = _STRUCTS.of(record.request_type, record.raw_requests, lambda: record.requests)
        for data in jsons:
            out.requests.add().MergeFromString(data)
        jsons = _STRUCTS.of(record.response_type, record.raw_responses, lambda: record.responses)
        for data in jsons:
            out.responses.add().MergeFromString(data)
    return out


def stub_list(stats: Iterable[Mapping[str, Any]]) -> Any:
    return pb.StubList(
        stubs=[
            pb.Stub(
                name=s["name"],
                methods=s["methods"],
                source=s["source"],
                answered=s["answered"],
                session=s["session"] or "",
            )
            for s in stats
        ]
    )


def fault(handle: Any) -> Any:
    """A `FaultHandle` as a `Fault` message."""
    return pb.Fault(
        name=handle.name,
        matched=handle.matched,
        injected=handle.injected,
        session=handle.session or "",
        active=handle.active,
    )

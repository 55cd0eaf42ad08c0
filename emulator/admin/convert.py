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
from emulator.admin.wire import varint
from emulator.headers import Headers
from emulator.journal import CallRecord

__all__ = [
    "Encoded",
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
    items = headers.first_items() if isinstance(headers, Headers) else headers.items()
    return {key: _text(value) for key, value in items}


_STRUCTS = StructCache()  # the JSON forms of messages, for ListCalls and WatchCalls


def encoded_record(record: CallRecord, header: str, *, raw_only: bool = False) -> bytes:
    """`call_record(...)` serialized, made once per record and kept on it: a test polling
    ListCalls, or the next page over the same calls, encodes nothing again.

    The JSON forms are the `requests` and `responses` fields written after the rest: wire
    fields may come in any order, and a message's bytes followed by more fields' bytes are the
    message with those fields. So the JSON never goes through a message of its own (parsing
    each Struct into the record and serializing it again cost more than making it)."""
    kept = record.exported
    if kept is None:
        kept = record.exported = {}
    base: bytes | None = kept.get((_RAW, header))
    if base is None:
        base = kept[(_RAW, header)] = call_record(record, header, raw_only=True).SerializeToString()
    if raw_only:
        return base
    jsons: bytes | None = kept.get(_JSON)
    if jsons is None:
        # Kept by message bytes, so a message is decoded and converted only when they are new.
        requests = _STRUCTS.of(record.request_type, record.raw_requests, lambda: record.requests)
        responses = _STRUCTS.of(
            record.response_type, record.raw_responses, lambda: record.responses
        )
        jsons = kept[_JSON] = _repeated(b"\x4a", requests) + _repeated(b"\x52", responses)
    return base + jsons


_RAW, _JSON = object(), object()  # the keys of encoded_record()'s forms on a record


def _repeated(tag: bytes, values: list[bytes]) -> bytes:
    """A repeated message field's wire bytes, from its values' own bytes."""
    parts = []
    for data in values:
        parts.append(tag)
        parts.append(varint(len(data)))
        parts.append(data)
    return b"".join(parts)


def call_list(encoded: list[bytes], total: int, next_page_token: str) -> Encoded:
    """A CallList of records already encoded, as wire bytes: no messages made."""
    data = _repeated(b"\x0a", encoded)
    if next_page_token:
        token = next_page_token.encode("utf-8")
        data += b"\x12" + varint(len(token)) + token
    if total:
        data += b"\x18" + varint(total)
    return Encoded(pb.CallList, data)


class Encoded:
    """An answer already in wire form: the gRPC door sends its bytes as they are (a page of
    10,000 calls is megabytes: parsing it into a message to serialize it again cost a tenth of
    a second); the HTTP door asks for the message."""

    __slots__ = ("cls", "data")

    def __init__(self, cls: Any, data: bytes) -> None:
        self.cls, self.data = cls, data

    def SerializeToString(self) -> bytes:  # a message's name for it
        return self.data

    def message(self) -> Any:
        return self.cls.FromString(self.data)


def _seconds_nanos(record: CallRecord) -> tuple[int, int]:
    started = record.started_at.timestamp()
    seconds = int(started)
    return seconds, int((started - seconds) * 1e9)


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
        violations=record.violations,
        session=session if isinstance(session, str) else "",
        peer=record.peer,
    )
    out.started_at.seconds, out.started_at.nanos = _seconds_nanos(record)
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

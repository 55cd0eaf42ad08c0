"""Messages as `google.protobuf.Struct` wire bytes, the way `json_format` would make them.

`struct_bytes(message)` is `struct(json_format.MessageToDict(message)).SerializeToString()`
(protobuf's JSON mapping: JSON field names, enums by name, 64-bit integers and bytes as text,
NaN and infinities as strings, well-known types in their JSON forms) without the two pure-Python
walks in between: one plan per message type, made once, writes the Struct's bytes directly, and
protobuf's C parser reads them into the answer. A ListCalls page of 10,000 calls spent 1.8 s of
its 2.2 s in those walks.

Whatever the plan does not cover (extensions, a closed enum's unknown number, a request that is
itself a well-known type, the `pb.enumvalue.json` option) goes through json_format as before, so
the answers are the same either way.
"""

from __future__ import annotations

import base64
import datetime
import math
import struct as _struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pool, json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from emulator.admin.wire import delimited, small, varint

__all__ = ["StructCache", "struct_bytes"]

_Encode = Callable[[Any], bytes]  # a field's value → the bytes of a google.protobuf.Value

_TEXT_FORMS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_JSON_FORMS = frozenset(
    {"google.protobuf.Any", "google.protobuf.Struct", "google.protobuf.Value"}
    | {"google.protobuf.ListValue"}
)
_WRAPPERS = "google/protobuf/wrappers.proto"
_NULL, _TRUE, _FALSE = b"\x08\x00", b"\x20\x01", b"\x20\x00"  # Value fields 1 and 4
_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}
_pack_double = _struct.Struct("<d").pack


class _Fallback(Exception):
    """This message is one for json_format itself."""


def struct_bytes(message: Message) -> bytes:
    """`message` as the serialized `Struct` of its proto3 JSON form."""
    try:
        return _plan(message.DESCRIPTOR).encode(message)
    except _Fallback:
        out = struct_pb2.Struct()
        out.update(json_format.MessageToDict(message))
        return out.SerializeToString()


class StructCache:
    """`struct_bytes` of messages by type and wire bytes, up to `max_bytes` of answers (the
    oldest forgotten first): a test polling ListCalls, or a journal of the same request again
    and again, converts each distinct message once. Bytes are the message, so an entry can
    never go stale; a reloaded contract has classes of its own, hence other keys."""

    def __init__(self, max_bytes: int = 16 << 20, max_entry: int = 256 << 10) -> None:
        self.max_bytes, self.max_entry = max_bytes, max_entry
        # An OrderedDict, not a dict: dropping a dict's oldest entry (`next(iter(d))` then pop)
        # walks over every entry dropped before it, so a full cache took quadratic time to
        # make room (a fifth of a 10,000-call page once it had been filled twice). Not
        # emulator._bounded.BoundedCache: its lock and recency bookkeeping on every lookup
        # made a first 10,000-call page a tenth slower (0.72 -> 0.80 s), and reads here need
        # no lock (a lookup of an immutable key; writes take this one).
        self._kept: OrderedDict[tuple[type[Message], bytes], bytes] = OrderedDict()
        self._bytes = 0
        # ListCalls pages are built off the event loop, WatchCalls records on it.
        self._lock = threading.Lock()

    def of(
        self, cls: type[Message], raws: Sequence[bytes], decoded: Callable[[], Sequence[Message]]
    ) -> list[bytes]:
        """`struct_bytes` of each message of `raws` (of type `cls`); `decoded()` gives them
        as messages, and is asked (once) only when some are new."""
        kept = self._kept
        out = []
        messages: Sequence[Message] | None = None
        for n, raw in enumerate(raws):
            found = kept.get((cls, raw))
            if found is None:
                if messages is None:
                    messages = decoded()
                found = struct_bytes(messages[n])
                self._keep((cls, raw), found)
            out.append(found)
        return out

    def _keep(self, key: tuple[type[Message], bytes], found: bytes) -> None:
        size = len(found) + len(key[1])
        if size > self.max_entry:
            return
        with self._lock:
            kept = self._kept
            if key in kept:
                return
            kept[key] = found
            self._bytes += size
            while self._bytes > self.max_bytes:
                old, value = kept.popitem(last=False)  # the oldest
                self._bytes -= len(value) + len(old[1])

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


# -- wire bytes ----------------------------------------------------------------------------------


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    size = len(data)
    return b"\x1a" + (small[size] if size < 128 else varint(size)) + data  # string_value


def _number(value: float) -> bytes:
    return b"\x11" + _pack_double(value)  # Value.number_value


def _entry(key: bytes, value: bytes) -> bytes:
    """One `Struct.fields` map entry; `key` is the key's own bytes with its tag and length."""
    return delimited(b"\x0a", key + delimited(b"\x12", value))


def _key(name: str) -> bytes:
    return delimited(b"\x0a", name.encode("utf-8"))


def _struct_value(fields: bytes) -> bytes:
    return delimited(b"\x2a", fields)  # Value.struct_value


def _list_value(values: list[bytes]) -> bytes:
    return delimited(b"\x32", b"".join(delimited(b"\x0a", v) for v in values))


def _json(value: Any) -> bytes:
    """A JSON value (what json_format gives for a well-known type) as Value bytes, as
    `Struct.update` would store it."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return _struct_value(b"".join(_entry(_key(k), _json(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return _list_value([_json(v) for v in value])
    raise _Fallback


# -- one plan per message type -------------------------------------------------------------------


class _Plan:
    """How to write the fields of one message type: per field, its whole map entry."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[FieldDescriptor, _Encode] = {}

    def encode(self, message: Message) -> bytes:
        fields = self.fields  # by descriptor: ListFields gives the same objects, no lookups
        try:
            return b"".join([fields[field](value) for field, value in message.ListFields()])
        except KeyError:  # an extension
            raise _Fallback from None


def _entry_of(field: FieldDescriptor) -> _Encode:
    """The field's `Struct.fields` map entry (its JSON name, its Value), from its value: for a
    single value of the common kinds, written in one step (nearly all of a big page's fields
    are these, and each call saved is a few percent of it); else from the Value's bytes."""
    key = _key(field.json_name) + b"\x12"  # the key, then the Value's tag; then its length
    kind = None if field.is_repeated else _kind(field)
    if kind is None:
        return _generic_entry(key, _field(field))
    if kind == "string":
        return _string_entry(key)
    text = _string_entry(key)
    if kind == "number":
        return _number_entry(key, text)
    if kind == "double":
        number = _number_entry(key, text)
        return lambda value: (
            number(value) if value - value == 0 else text(_SPECIAL.get(value, "NaN"))
        )
    if kind == "int64":
        return lambda value: text(str(value))
    if kind == "timestamp":
        return lambda value: text(_timestamp(value))
    if kind == "bool":
        true, false = _entry(key[:-1], _TRUE), _entry(key[:-1], _FALSE)
        return lambda value: true if value else false
    values: Any = field.enum_type and field.enum_type.values_by_number
    enum = _single(field)  # may raise _Fallback: then the whole type goes to json_format
    known = {number: _entry(key[:-1], enum(number)) for number in values}
    generic = _generic_entry(key, enum)
    return lambda value: known.get(value) or generic(value)


def _kind(field: FieldDescriptor) -> str | None:
    """Which one-step entry a single value of the field takes, if any."""
    cpp, kind = field.cpp_type, field.type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return "string" if kind == FieldDescriptor.TYPE_STRING else None
    if cpp in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        return "number"
    if cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return "int64"
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return "double"
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return "bool"
    enum, message = field.enum_type, field.message_type
    if enum is not None:
        return "enum" if enum.full_name != "google.protobuf.NullValue" else None
    if message is not None:
        return "timestamp" if message.full_name == _TIMESTAMP else None
    return None  # float (json_format's shortest form) and bytes: the generic way


def _generic_entry(key: bytes, encode: _Encode) -> _Encode:
    size = len(key)

    def entry(value: Any) -> bytes:
        data = encode(value)
        length = len(data)
        body = size + 1 + length
        if body < 128:  # one byte for either length: nearly every field
            return b"\x0a%c%b%c%b" % (body, key, length, data)
        return delimited(b"\x0a", key + varint(length) + data)

    return entry


def _string_entry(key: bytes) -> Callable[[str], bytes]:
    size = len(key)
    long = _generic_entry(key, _string)

    def string_entry(value: str) -> bytes:
        data = value.encode("utf-8")
        length = len(data)
        body = size + 3 + length
        if body < 128:  # string_value's tag and length, and the Value's length: a byte each
            return b"\x0a%c%b%c\x1a%c%b" % (body, key, length + 2, length, data)
        return long(value)

    return string_entry


def _number_entry(key: bytes, text: Callable[[str], bytes]) -> _Encode:
    if len(key) + 10 >= 128:  # a 100-character field name: the generic way
        return _generic_entry(key, _number)
    head = b"\x0a%c%b\x09\x11" % (len(key) + 10, key)  # ... then number_value's 8 bytes
    return lambda value: head + _pack_double(value)


def _timestamp(value: Any) -> str:
    """`value.ToJsonString()` without its datetime arithmetic, for the years 1970 to 9999; the
    rest, and values json_format refuses, as it does."""
    seconds, nanos = value.seconds, value.nanos
    if not (0 <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        text: str = value.ToJsonString()
        return text
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    # (not gmtime: under a `right/` zone it counts leap seconds, as Timestamps do not)
    day = f"{_date(_EPOCH_DAY + days).isoformat()}T{hours:02d}:{minutes:02d}:{rest:02d}"
    if not nanos:
        return day + "Z"
    if not nanos % 1_000_000:
        return f"{day}.{nanos // 1_000_000:03d}Z"
    if not nanos % 1000:
        return f"{day}.{nanos // 1000:06d}Z"
    return f"{day}.{nanos:09d}Z"


_TIMESTAMP = "google.protobuf.Timestamp"
_date = datetime.date.fromordinal
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the last second a Timestamp may hold


_PLANS: dict[Any, _Plan] = {}  # by message Descriptor
_ENUM_OPTION: list[bool] = []  # [whether the pb.enumvalue.json option is known], once


def _plan(descriptor: Any) -> _Plan:
    plan = _PLANS.get(descriptor)
    if plan is not None:
        return plan
    if _special(descriptor):
        raise _Fallback  # a well-known type at the top: not a Struct in JSON
    plan = _PLANS[descriptor] = _Plan()  # before the fields: a type may contain itself
    try:
        for field in descriptor.fields:
            plan.fields[field] = _entry_of(field)
    except BaseException:
        del _PLANS[descriptor]
        raise
    return plan


def _special(descriptor: Any) -> bool:
    name = descriptor.full_name
    return name in _TEXT_FORMS or name in _JSON_FORMS or descriptor.file.name == _WRAPPERS


def _field(field: FieldDescriptor) -> _Encode:
    """The whole field (a list, a map or one value) → Value bytes."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key_field = message.fields_by_name["key"]
        encode_value = _single(message.fields_by_name["value"])
        bool_keys = key_field.type == FieldDescriptor.TYPE_BOOL

        def a_map(value: Any) -> bytes:
            entries = []
            for key, item in value.items():
                text = ("true" if key else "false") if bool_keys else str(key)
                entries.append(_entry(_key(text), encode_value(item)))
            return _struct_value(b"".join(entries))

        return a_map
    encode = _single(field)
    if field.is_repeated:
        return lambda value: _list_value([encode(v) for v in value])
    return encode


def _single(field: FieldDescriptor) -> _Encode:
    """One value of the field → Value bytes (json_format's _FieldToJsonObject)."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return _message(field.message_type)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return _enum(field)
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return lambda value: _string(base64.b64encode(value).decode("utf-8"))
        return _string
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return lambda value: _TRUE if value else _FALSE
    if cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return lambda value: _string(str(value))
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if cpp == FieldDescriptor.CPPTYPE_FLOAT:
        return _float
    return _number  # 32-bit integers


def _double(value: float) -> bytes:
    if math.isfinite(value):
        return _number(value)
    return _string(_SPECIAL.get(value, "NaN"))


def _float(value: float) -> bytes:
    if math.isfinite(value):
        return _number(type_checkers.ToShortestFloat(value))
    return _string(_SPECIAL.get(value, "NaN"))


def _enum(field: FieldDescriptor) -> _Encode:
    enum: Any = field.enum_type
    if enum.full_name == "google.protobuf.NullValue":
        return lambda value: _NULL
    if not _ENUM_OPTION:
        try:  # as json_format looks for it; with it, an enum value may have another JSON name
            descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
            _ENUM_OPTION.append(True)
        except KeyError:
            _ENUM_OPTION.append(False)
    if _ENUM_OPTION[0]:
        raise _Fallback
    names = {number: _string(value.name) for number, value in enum.values_by_number.items()}
    closed = enum.is_closed

    def an_enum(value: int) -> bytes:
        found = names.get(value)
        if found is not None:
            return found
        if closed:
            raise _Fallback  # json_format refuses it, with its own error
        return _number(value)

    return an_enum


def _message(descriptor: Any) -> _Encode:
    name = descriptor.full_name
    if name in _TEXT_FORMS:
        return lambda value: _string(value.ToJsonString())
    if name in _JSON_FORMS:
        return lambda value: _json(json_format.MessageToDict(value))
    if descriptor.file.name == _WRAPPERS:
        inner = _single(descriptor.fields_by_name["value"])
        return lambda value: inner(value.value)
    plan = _plan(descriptor)
    return lambda value: _struct_value(plan.encode(value))

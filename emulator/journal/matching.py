"""Partial matching of messages and headers, field by field, with the reasons they differ.

`{"product_id": "42", "price": {"units": 10}}` matches a request whose `product_id` is "42" and
whose `price.units` is 10, whatever else it holds. Keys may be proto names or JSON names; enums
may be given by name or number; 64-bit integers as numbers or strings (as JSON writes them).
A message instead of a dict must be equal as a whole; it may come from any generated module (the
user's own `_pb2` classes included), since messages are compared by type name and content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "differences",
    "header_differences",
    "message_differences",
    "message_text",
    "same_message",
]


def differences(
    actual: Message | None,
    headers: Mapping[str, str | bytes],
    request: Mapping[str, Any] | Message | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Why a call's request message `actual` and `headers` do not match `request` and
    `metadata`; empty when they do."""
    found: list[str] = []
    if request is not None:
        if actual is None:
            found.append("no request message was received")
        elif isinstance(request, Message):
            found.extend(_message_differences(actual, request, "request"))
        else:
            found.extend(message_differences(actual, request))
    if metadata:
        found.extend(header_differences(headers, metadata))
    return found


def header_differences(actual: Mapping[str, str | bytes], expected: Mapping[str, str]) -> list[str]:
    """How the first value of each `expected` header differs (`actual`: a record's `Headers`)."""
    found = []
    for key, want in expected.items():
        got = actual.get(key.lower())
        if got != want:
            found.append(f"header {key.lower()}: expected {want!r}, got {got!r}")
    return found


def message_differences(
    message: Message, expected: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    desc = message.DESCRIPTOR
    found: list[str] = []
    for key, want in expected.items():
        field = desc.fields_by_name.get(key) or desc.fields_by_camelcase_name.get(key)
        if field is None:
            found.append(f"{prefix}{key}: {desc.full_name} has no field {key!r}")
            continue
        name = prefix + field.name
        found.extend(_field_differences(message, field, want, name))
    return found


def _field_differences(message: Message, field: Any, want: Any, name: str) -> list[str]:
    got = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(want, Mapping):
            return [f"{name}: expected a mapping to compare with the map field"]
        value_field = field.message_type.fields_by_name["value"]
        found = []
        for key, sub in want.items():
            if key not in got:
                found.append(f"{name}[{key!r}]: expected {sub!r}, got nothing")
            else:
                found.extend(_value_differences(value_field, got[key], sub, f"{name}[{key!r}]"))
        return found
    if field.is_repeated:
        items = list(got)
        if not isinstance(want, list | tuple):
            return [f"{name}: expected a list to compare with the repeated field"]
        if len(items) != len(want):
            return [f"{name}: expected {len(want)} entries, got {len(items)}"]
        found = []
        for index, (item, sub) in enumerate(zip(items, want, strict=True)):
            found.extend(_value_differences(field, item, sub, f"{name}[{index}]"))
        return found
    if field.message_type is not None and not message.HasField(field.name) and want is not None:
        return [f"{name}: expected {_plain(want)}, got nothing (not set)"]
    return _value_differences(field, got, want, name)


def _value_differences(field: Any, got: Any, want: Any, name: str) -> list[str]:
    if field.message_type is not None:
        if isinstance(want, Message):
            return _message_differences(got, want, name)
        if not isinstance(want, Mapping):
            return [f"{name}: expected a mapping of fields to compare with the message"]
        return message_differences(got, want, name + ".")
    if field.enum_type is not None:
        value = field.enum_type.values_by_number.get(got)
        got_name = value.name if value is not None else got
        if want in (got, got_name):
            return []
        return [f"{name}: expected {want!r}, got {got_name!r}"]
    wide = field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)
    if wide and isinstance(want, str) and want.lstrip("-").isdigit():
        want = int(want)  # JSON writes 64-bit integers as strings
    if got == want:
        return []
    return [f"{name}: expected {want!r}, got {got!r}"]


def same_message(actual: Message, expected: Message) -> bool:
    """Equal content, whichever generated module or descriptor pool `expected` comes from
    (`==` is False across pools even for identical messages)."""
    if actual.DESCRIPTOR.full_name != expected.DESCRIPTOR.full_name:
        return False
    if type(actual) is not type(expected):
        try:  # through the wire bytes: fields compare as values (maps in any order)
            expected = type(actual).FromString(expected.SerializeToString())
        except Exception:
            return False
    return bool(actual == expected)


def _message_differences(actual: Message, expected: Message, name: str) -> list[str]:
    want, got = expected.DESCRIPTOR.full_name, actual.DESCRIPTOR.full_name
    if want != got:
        return [f"{name}: expected a {want}, got a {got}"]
    if same_message(actual, expected):
        return []
    return [f"{name}: expected {message_text(expected)}, got {message_text(actual)}"]


def message_text(message: Message, limit: int | None = None) -> str:
    """`message` as one line of JSON for reports, resolving `Any` types through the pool the
    message comes from; never raises. A message JSON cannot show (an out-of-range Timestamp,
    an `Any` of an unknown type) falls back to the text format, then to its name and size:
    a report must never take a test run down."""
    try:
        from google.protobuf import json_format

        pool: Any = message.DESCRIPTOR.file.pool  # the contracts' pool, for Any types
        text = json_format.MessageToJson(message, indent=None, descriptor_pool=pool)
    except Exception:
        text = _fallback_text(message)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _fallback_text(message: Message) -> str:
    try:
        from google.protobuf import text_format

        pool: Any = message.DESCRIPTOR.file.pool
        body = text_format.MessageToString(message, as_one_line=True, descriptor_pool=pool)
        return "{" + body + "}"
    except Exception:
        pass
    try:
        return f"<{message.DESCRIPTOR.full_name}, {message.ByteSize()} bytes>"
    except Exception:
        return f"<{type(message).__name__}>"


def _plain(value: Any) -> str:
    if isinstance(value, Message):
        return message_text(value)
    try:
        return repr(dict(value)) if isinstance(value, Mapping) else repr(value)
    except Exception:
        return f"<{type(value).__name__}>"

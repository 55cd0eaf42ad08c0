"""Partial matching of messages and headers, field by field, with the reasons they differ.

`{"product_id": "42", "price": {"units": 10}}` matches a request whose `product_id` is "42" and
whose `price.units` is 10, whatever else it holds. Keys may be proto names or JSON names; enums
may be given by name or number; 64-bit integers as numbers or strings (as JSON writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator.chain import first_values

if TYPE_CHECKING:
    from emulator.journal import CallRecord

__all__ = ["differences", "header_differences", "message_differences"]


def differences(
    record: CallRecord,
    request: Mapping[str, Any] | Message | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Why `record` does not match; empty when it does."""
    found: list[str] = []
    if request is not None:
        actual = record.request
        if actual is None:
            found.append("no request message was received")
        elif isinstance(request, Message):
            if request != actual:
                found.append(f"request: expected {_text(request)}, got {_text(actual)}")
        else:
            found.extend(message_differences(actual, request))
    if metadata:
        found.extend(header_differences(record.metadata, metadata))
    return found


def header_differences(
    actual: Sequence[tuple[str, str | bytes]], expected: Mapping[str, str]
) -> list[str]:
    values = first_values(tuple(actual))
    found = []
    for key, want in expected.items():
        got = values.get(key.lower())
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
            return [] if want == got else [f"{name}: expected {_text(want)}, got {_text(got)}"]
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


def _text(message: Message) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(message, indent=None)


def _plain(value: Any) -> str:
    return repr(dict(value)) if isinstance(value, Mapping) else repr(value)

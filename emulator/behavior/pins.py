"""Pinned defaults: `defaults.fields` fixes chosen fields of every default response, and
`defaults.enums` says how the other enum fields are chosen.

    defaults:
      enums: first                                # or seeded
      fields:
        payments.v1.Reservation.state: HELD       # full message name, then the field

Pins are checked against the contracts once, at start-up, and become one template per message
type holding only its pinned fields. Wherever the generator completes a message of that type (the
response itself, a nested message, a repeated element, a map value) it clears those fields and
merges the template in. Pins are applied after generation rather than instead of it, so that a pin
changes its field and nothing else: every other field draws the same numbers as without the pin.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator._schema import invalid
from emulator.behavior.values import is_map
from emulator.contracts.model import Contracts
from emulator.errors import ConfigError

__all__ = ["EnumMode", "Pins", "compile_pins"]

EnumMode = Literal["first", "seeded"]

# protobuf's type stubs split every descriptor into a Python and a upb class; here they are one.
_Desc: TypeAlias = Any

_LISTED = 20  # enum values or fields an error message lists at most
_INTEGER = re.compile(r"^\s*-?[0-9]+\s*$", re.ASCII)
_TYPE_NAMES = {  # TYPE_INT32 → "int32", as the .proto files write them
    number: name.removeprefix("TYPE_").lower()
    for name, number in vars(FieldDescriptor).items()
    if name.startswith("TYPE_")
}
_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True)
class _Pinned:
    """The pinned fields of one message type, and a message holding just their values."""

    names: tuple[str, ...]
    template: Message


class Pins:
    """What `defaults.fields` and `defaults.enums` ask of the generator; empty by default."""

    def __init__(self, pinned: Mapping[str, _Pinned] | None = None, enums: EnumMode = "first"):
        self._pinned = dict(pinned or {})
        self.enums = enums

    def names(self, message_type: str) -> tuple[str, ...]:
        """The pinned fields of a message type (full name)."""
        pinned = self._pinned.get(message_type)
        return pinned.names if pinned else ()

    def apply(self, msg: Message) -> None:
        """Set the pinned fields of `msg`, whatever the generator put there."""
        if not self._pinned:
            return
        pinned = self._pinned.get(msg.DESCRIPTOR.full_name)
        if pinned is None:
            return
        for name in pinned.names:
            msg.ClearField(name)
        if type(msg) is type(pinned.template):
            msg.MergeFrom(pinned.template)
        else:  # the same type from another pool (a generated module): by its wire form
            msg.MergeFromString(pinned.template.SerializeToString())


def compile_pins(
    fields: Mapping[str, Any],
    enums: EnumMode,
    contracts: Contracts,
    where: Callable[[str], str] = lambda key: "config",
) -> Pins:
    """Check every pin against the contracts; `where(dotted key)` says where a key was set (the
    config file and line) for the message of the ConfigError that refuses a bad one."""
    pinned: dict[str, list[tuple[str, _Desc, Any]]] = {}
    messages = dict(_messages(contracts)) if fields else {}
    answered = _answered(contracts) if fields else set()
    for key, value in fields.items():
        bad = functools.partial(
            invalid, where(f"defaults.fields.{key}"), f'defaults.fields["{key}"]'
        )
        field = _field(str(key), messages, bad)
        if field.containing_type.full_name not in answered:
            raise bad(
                f"message {field.containing_type.full_name} is in no response of the "
                "contracts' methods, so the pin would never apply: pins shape default "
                "responses only; pin a field of a message that a method returns"
            )
        oneof = _real_oneof(field)
        for other_key, other, _ in pinned.get(field.containing_type.full_name, ()):
            if other is field:
                raise bad(f"the same field as {other_key!r}: pin it once")
            if oneof is not None and _real_oneof(other) is oneof:
                raise bad(
                    f"{field.name} and {other.name} (pinned as {other_key!r}) are members of "
                    f"the same oneof {oneof.name!r}, of which a message holds one: pin one of them"
                )
        try:
            converted = _value(field, value, contracts)
        except _Bad as exc:
            # An enum's message names the enum already; other fields say what they hold.
            plain_enum = field.enum_type is not None and not field.is_repeated
            raise bad(
                str(exc) if plain_enum else f"{exc}; {field.name} is {_describe(field)}"
            ) from None
        pinned.setdefault(field.containing_type.full_name, []).append((key, field, converted))
    return Pins({name: _template(items, contracts) for name, items in pinned.items()}, enums)


def _template(items: list[tuple[str, _Desc, Any]], contracts: Contracts) -> _Pinned:
    template = contracts.message_class(items[0][1].containing_type)()
    for _, field, value in items:
        if is_map(field):
            target = getattr(template, field.name)
            for k, v in value.items():
                if isinstance(v, Message):
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            target = getattr(template, field.name)
            for item in value:
                if isinstance(item, Message):
                    target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif isinstance(value, Message):
            sub = getattr(template, field.name)
            sub.CopyFrom(value)
            sub.SetInParent()  # `{}` pins an empty message, present all the same
        else:
            setattr(template, field.name, value)  # a oneof member or `optional`: present too
    return _Pinned(tuple(field.name for _, field, _ in items), template)


def _field(key: str, messages: Mapping[str, _Desc], bad: Callable[[str], ConfigError]) -> _Desc:
    """The field a key names, or a ConfigError that says what is wrong and what was meant."""
    name = key.strip().lstrip(".")
    type_name, _, field_name = name.rpartition(".")
    example = "as payments.v1.Reservation.state"
    if not type_name or not field_name:
        raise bad(f"expected a message's full name and a field, {example}")
    desc = messages.get(type_name)
    field = None
    if desc is not None:
        field = desc.fields_by_name.get(field_name) or next(
            (f for f in desc.fields if f.json_name == field_name), None
        )
    if field is None and name in messages:
        first = next(iter(messages[name].fields), None)
        then = f", such as {name}.{first.name}" if first else ""
        raise bad(f"names a message, not a field: add the field's name{then}")
    if desc is None:
        raise bad(
            f"no message {type_name!r} in the contracts{_suggest(type_name, messages)}; "
            "write the message's full name, package included, then the field's name, "
            f"{example}"
        )
    if desc.GetOptions().map_entry:
        parent = desc.containing_type
        map_field = next(f for f in parent.fields if f.message_type is desc)
        raise bad(
            f"{type_name} is the entry type of the map field {map_field.full_name}: pin "
            f"{map_field.full_name} itself, with a mapping of keys to values"
        )
    if field is None:
        names = [f.name for f in desc.fields]
        close = difflib.get_close_matches(field_name, names, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        listed = ", ".join(names[:_LISTED]) if names else "none"
        if len(names) > _LISTED:
            listed += f", ... ({len(names) - _LISTED} more)"
        raise bad(f"message {type_name} has no field {field_name!r}{hint}; its fields: {listed}")
    return field


def _messages(contracts: Contracts) -> Iterator[tuple[str, _Desc]]:
    def walk(desc: _Desc) -> Iterator[tuple[str, _Desc]]:
        yield desc.full_name, desc
        for nested in desc.nested_types:
            yield from walk(nested)

    for file_name in contracts.file_protos:
        for desc in contracts.pool.FindFileByName(file_name).message_types_by_name.values():
            yield from walk(desc)


def _answered(contracts: Contracts) -> set[str]:
    """Every message type a default response can hold: the methods' output types and the
    message types of their fields, nested, repeated and map values included."""
    found: set[str] = set()
    todo = [spec.output_class.DESCRIPTOR for spec in contracts.methods.values()]
    while todo:
        desc = todo.pop()
        if desc.full_name in found:
            continue
        found.add(desc.full_name)
        for field in desc.fields:
            sub = field.message_type
            if sub is not None and sub.GetOptions().map_entry:
                sub = sub.fields_by_name["value"].message_type
            if sub is not None:
                todo.append(sub)
    return found


def _suggest(type_name: str, messages: Mapping[str, _Desc]) -> str:
    """Messages of the same short name (the package left out or misspelt), then close names."""
    short = type_name.rpartition(".")[2].lower()
    same = sorted(n for n, d in messages.items() if d.name.lower() == short and n != type_name)
    close = difflib.get_close_matches(type_name, sorted(messages), n=3, cutoff=0.75)
    found = list(dict.fromkeys([*same, *close]))[:3]
    return f" (did you mean {' or '.join(map(repr, found))}?)" if found else ""


def _real_oneof(field: _Desc) -> _Desc:  # None: in no oneof, or a synthetic one
    oneof = field.containing_oneof
    # proto3 `optional` makes a one-member oneof named `_field`: no choice between fields.
    if oneof is None or (len(oneof.fields) == 1 and oneof.name == "_" + field.name):
        return None
    return oneof


def _describe(field: _Desc) -> str:
    if is_map(field):
        key, value = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        return f"a map of {_type_name(key)} to {_type_name(value)}"
    return ("a list of " if field.is_repeated else "") + _type_name(field)


def _type_name(field: _Desc) -> str:
    if field.enum_type is not None:
        return f"enum {field.enum_type.full_name}"
    if field.message_type is not None:
        return f"message {field.message_type.full_name}"
    return _TYPE_NAMES.get(field.type, "scalar")


class _Bad(ValueError):
    """A value that does not fit its field; the message says how."""


def _value(field: _Desc, value: Any, contracts: Contracts) -> Any:
    if value is None:
        raise _Bad("no value: give the value this field has in every default response")
    if is_map(field):
        if not isinstance(value, Mapping):
            raise _Bad(f"expected a mapping of keys to values, got {_kind(value)}")
        key_f, value_f = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        out = {}
        for k, v in value.items():
            try:
                out[_map_key(key_f, k)] = _single(value_f, v, contracts)
            except _Bad as exc:
                raise _Bad(f"at key {k!r}: {exc}") from None
        return out
    if field.is_repeated:
        if not isinstance(value, list | tuple):
            raise _Bad(f"expected a list, got {_kind(value)} {value!r}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_single(field, item, contracts))
            except _Bad as exc:
                raise _Bad(f"item {i}: {exc}") from None
        return items
    return _single(field, value, contracts)


def _single(field: _Desc, value: Any, contracts: Contracts) -> Any:
    """One value of the field's type (for a repeated field, one element)."""
    if field.message_type is not None:
        return _message(field.message_type, value, contracts)
    return _scalar(field, value)


def _scalar(field: _Desc, value: Any) -> Any:
    if field.enum_type is not None:
        return _enum(field.enum_type, value)
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {value!r}")
        return value
    if cpp in _RANGES:
        if isinstance(value, str) and _INTEGER.match(value):
            value = int(value)  # JSON writes 64-bit integers as strings
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {_kind(value)} {value!r}")
        low, high = _RANGES[cpp]
        if not low <= value <= high:
            raise _Bad(f"{value} is out of range: {low} to {high}")
        return value
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"expected a number, got {_kind(value)} {value!r}")
        if not math.isfinite(value):
            raise _Bad(f"expected a finite number, got {value!r}")
        return float(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                pass
        raise _Bad(f"expected base64 text (the JSON form of bytes), got {value!r}")
    if isinstance(value, int | float):  # YAML reads `1.10` or `true` unquoted as no text
        raise _Bad(f"expected text, got {_kind(value)} {value!r}: quote it in YAML")
    if not isinstance(value, str):
        raise _Bad(f"expected text, got {_kind(value)}")
    return value


def _enum(enum: _Desc, value: Any) -> int:
    values = ", ".join(f"{v.name} = {v.number}" for v in enum.values[:_LISTED])
    if len(enum.values) > _LISTED:
        values += f", ... ({len(enum.values) - _LISTED} more)"
    if isinstance(value, int) and not isinstance(value, bool):
        if value in enum.values_by_number:
            return value
        raise _Bad(f"{value} is not a number of enum {enum.full_name}; its values: {values}")
    if not isinstance(value, str):
        raise _Bad(f"expected a value name of enum {enum.full_name}, got {_kind(value)} {value!r}")
    found = enum.values_by_name.get(value)
    if found is not None:
        number: int = found.number
        return number
    names = [v.name for v in enum.values]
    upper = value.strip().upper()
    # Another case, a short name (`HELD` for `STATE_HELD`) or a long one (`STATE_HELD`).
    near = [n for n in names if upper == n or n.endswith("_" + upper) or upper.endswith("_" + n)]
    near += difflib.get_close_matches(upper, names, n=3, cutoff=0.6)
    hint = list(dict.fromkeys(near))[:3]
    meant = f" (did you mean {' or '.join(map(repr, hint))}?)" if hint else ""
    raise _Bad(f"{value!r} is not a value of enum {enum.full_name}{meant}; its values: {values}")


def _message(desc: _Desc, value: Any, contracts: Contracts) -> Message:
    cls = contracts.message_class(desc)
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != desc.full_name:
            raise _Bad(f"expected a {desc.full_name}, got a {value.DESCRIPTOR.full_name}")
        return cls.FromString(value.SerializeToString())
    # Well-known types have JSON forms of their own (a Timestamp is text); the rest are objects.
    if not desc.full_name.startswith("google.protobuf.") and not isinstance(value, Mapping):
        raise _Bad(f"expected a mapping of its fields (the JSON form), got {_kind(value)}")
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(value, cls(), descriptor_pool=contracts.pool)
    except json_format.ParseError as exc:
        problem = " ".join(str(exc).split())
        raise _Bad(f"not a {desc.full_name} in JSON form: {problem}") from None


def _map_key(field: _Desc, key: Any) -> Any:
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL and key in ("true", "false"):
        return key == "true"
    try:
        return _scalar(field, key)
    except _Bad as exc:
        raise _Bad(f"key {key!r} is not a {_type_name(field)}: {exc}") from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"

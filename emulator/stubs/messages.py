"""A stub's response message: JSON-like data converted to the method's output type at load.

    message: {name: "Widget", stock_count: 0}      # merged onto the deterministic default
    message: {name: "Widget"}, replace: true         # only these fields

Merging is per field the stub names, not protobuf's MergeFrom: a field the stub gives replaces
the default's (`stock_count: 0` sets 0, a list replaces the list), and a message field given as
a mapping is merged the same way one level down, so `price: {units: 5}` keeps the default's
currency. The data is parsed once, at load, so a stub can never send bytes that are not a valid
message of the output type; only template values (see `emulator.stubs.templates`) are parsed per
call, into a field whose type was checked at load.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator.behavior.values import is_map
from emulator.stubs.templates import Template, TemplateError, compile_template, is_template

__all__ = ["MessageSpec", "StubDataError"]

# Messages whose JSON form is one string or number, so a template can fill them.
_ONE_VALUE = {
    "google.protobuf.Timestamp": "1970-01-01T00:00:00Z",
    "google.protobuf.Duration": "0s",
    "google.protobuf.FieldMask": "",
    "google.protobuf.StringValue": "",
    "google.protobuf.BytesValue": "",
    "google.protobuf.Int32Value": 0,
    "google.protobuf.Int64Value": 0,
    "google.protobuf.UInt32Value": 0,
    "google.protobuf.UInt64Value": 0,
    "google.protobuf.DoubleValue": 0.0,
    "google.protobuf.FloatValue": 0.0,
    "google.protobuf.BoolValue": False,
    "google.protobuf.Value": "",
}
_FREE = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.Any"})
_INTS = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)


class StubDataError(ValueError):
    """Data that is not a valid message of the type; `key` is where it was written."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


Mask = dict[str, "Mask | None"]  # field name → sub-mask (a message merged) or None (replaced)


class MessageSpec:
    """One response message of a stub: `build(default, context)` gives its bytes."""

    def __init__(
        self, cls: type[Message], data: Mapping[str, Any], key: str, *, replace: bool = False
    ) -> None:
        if not isinstance(data, Mapping):
            raise StubDataError(key, "a message is a mapping of field names to values")
        self.cls = cls
        self.key = key
        self.replace = replace
        desc = cls.DESCRIPTOR
        self._slots: list[tuple[tuple[Any, ...], Template, Callable[[str], Any]]] = []
        sample = self._walk(desc, data, key, ())
        self._data = data
        self.message = _parse(cls, sample, key)  # the data as a message: checked once, here
        self.mask = _mask(desc, data)
        self.templated = bool(self._slots)
        self.fixed = None if self.templated else self.message.SerializeToString()

    def build(self, default: Callable[[], Message], context: Mapping[str, Any] | None) -> bytes:
        """The message's bytes: merged onto `default()` unless `replace`; templates rendered
        with `context` (TemplateError or StubDataError when a rendered value does not fit)."""
        message = self.message
        if self.templated:
            message = _parse(self.cls, self._render(context or {}), self.key)
        if self.replace:
            return message.SerializeToString() if self.templated else self.fixed  # type: ignore[return-value]
        base = default()
        merge(base, message, self.mask)
        return base.SerializeToString()

    # -- load ---------------------------------------------------------------------------------

    def _walk(self, desc: Any, data: Mapping[str, Any], key: str, at: tuple[Any, ...]) -> Any:
        """`data` with each template replaced by a value its field takes (for the check at
        load), noting where the templates are and how their text becomes the field's value."""
        out: dict[str, Any] = {}
        for name, value in data.items():
            here = f"{key}.{name}"
            field = desc.fields_by_name.get(name) or desc.fields_by_camelcase_name.get(name)
            if field is None:
                from emulator.stubs.conditions import ConditionError, _field

                try:
                    _field(desc, str(name), here, "")
                except ConditionError as exc:
                    raise StubDataError(here, exc.problem) from None
            assert field is not None
            out[name] = self._value(field, value, here, (*at, name), repeated=field.is_repeated)
        return out

    def _value(
        self, field: Any, value: Any, key: str, at: tuple[Any, ...], *, repeated: bool
    ) -> Any:
        if repeated and is_map(field) and isinstance(value, Mapping):
            entry = field.message_type.fields_by_name["value"]
            return {
                k: self._value(entry, v, f"{key}.{k}", (*at, k), repeated=False)
                for k, v in value.items()
            }
        if repeated and isinstance(value, list):
            return [
                self._value(field, v, f"{key}[{i}]", (*at, i), repeated=False)
                for i, v in enumerate(value)
            ]
        message = field.message_type
        if message is not None and isinstance(value, Mapping) and message.full_name not in _FREE:
            return self._walk(message, value, key, at)
        if is_template(value):
            sample, convert = _slot(field, key)
            self._slots.append((at, compile_template(value, key), convert))
            return sample
        _check_value(field, value, key, repeated=repeated)
        return value

    # -- call ---------------------------------------------------------------------------------

    def _render(self, context: Mapping[str, Any]) -> Any:
        data = _copy(self._data)
        for at, template, convert in self._slots:
            text = template.render(context)
            try:
                value = convert(text)
            except ValueError as exc:
                raise StubDataError(
                    template.key, f"template {template.source!r} rendered {text!r}: {exc}"
                ) from None
            target = data
            for part in at[:-1]:
                target = target[part]
            target[at[-1]] = value
        return data


def _check_value(field: Any, value: Any, key: str, *, repeated: bool) -> None:
    """The common mistakes refused at the field's own key (so the message names its line), in
    words a stub writer acts on; json_format's parse of the whole message catches the rest."""
    if value is None:
        return  # `field: null`: the field cleared
    if repeated:
        what = "a map: give a mapping of keys to values" if is_map(field) else "a list: give [...]"
        raise StubDataError(key, f"{field.name} is {what}, not {value!r}")
    message = field.message_type
    if message is not None:
        if message.full_name in _FREE or message.full_name in _ONE_VALUE:
            return  # JSON forms json_format knows (a timestamp string, a number, any value)
        raise StubDataError(
            key,
            f"{field.name} is a message ({message.full_name}): give a mapping of its fields, "
            f"not {value!r}",
        )
    enum = field.enum_type
    if enum is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            return  # a number: proto3 enums are open
        if isinstance(value, str) and value in enum.values_by_name:
            return
        from emulator.stubs.conditions import enum_problem

        if isinstance(value, str):
            raise StubDataError(key, enum_problem(enum, value))
        raise StubDataError(
            key, f"{field.name} is an enum ({enum.full_name}): give a value name or number"
        )
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            if not isinstance(value, str):
                raise StubDataError(
                    key, f"{field.name} is bytes: give them base64-encoded, as text"
                )
            return
        if not isinstance(value, str):
            raise StubDataError(
                key,
                f"{field.name} is a string: {_shown(value)} is {type(value).__name__}; write it "
                f'in quotes ("{_shown(value)}")',
            )
        return
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            raise StubDataError(
                key, f"{field.name} is a bool: give true or false, not {_shown(value)}"
            )
        return
    if cpp in _INTS:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        text = isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value) is not None
        if isinstance(value, bool) or not (whole or text):
            raise StubDataError(
                key, f"{field.name} is an integer: give a whole number, not {_shown(value)}"
            )
        return
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StubDataError(key, f"{field.name} is a number: give one, not {_shown(value)}")


def _shown(value: Any) -> str:
    """A value as the stub file wrote it: `true`, not Python's `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _slot(field: Any, key: str) -> tuple[Any, Callable[[str], Any]]:
    """A placeholder the field takes, and how rendered text becomes its JSON value."""
    message = field.message_type
    if message is not None:
        if message.full_name in _ONE_VALUE:
            return _ONE_VALUE[message.full_name], _as_json_text(message.full_name)
        raise TemplateError(
            key, f"{field.name} is a message ({message.full_name}): template its fields instead"
        )
    if field.enum_type is not None:
        return field.enum_type.values[0].name, _enum_text
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return "", lambda text: base64.b64encode(text.encode()).decode()
        return "", str
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return False, _bool
    if cpp in _INTS:
        return 0, _int
    return 0.0, _float


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("not an integer") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("not a number") from None


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0", ""):
        return False
    raise ValueError("not true or false")


def _enum_text(text: str) -> Any:
    word = text.strip()
    return int(word) if word.lstrip("-").isdigit() else word


def _as_json_text(name: str) -> Callable[[str], Any]:
    sample = _ONE_VALUE[name]
    if isinstance(sample, bool):
        return _bool
    if isinstance(sample, int):
        return _int
    if isinstance(sample, float):
        return _float
    return str


def _parse(cls: type[Message], data: Any, key: str) -> Message:
    message = cls()
    try:
        pool: Any = cls.DESCRIPTOR.file.pool  # the contracts' pool, for Any types
        json_format.ParseDict(data, message, descriptor_pool=pool)
    except json_format.ParseError as exc:
        raise StubDataError(key, f"not a valid {cls.DESCRIPTOR.full_name}: {exc}") from None
    return message


def _mask(desc: Any, data: Mapping[str, Any]) -> Mask:
    mask: Mask = {}
    for name, value in data.items():
        field = desc.fields_by_name.get(name) or desc.fields_by_camelcase_name.get(name)
        assert field is not None  # checked by _walk
        message = field.message_type
        nested = (
            message is not None
            and not field.is_repeated
            and isinstance(value, Mapping)
            and message.full_name not in _FREE
        )
        mask[field.name] = _mask(message, value) if nested else None
    return mask


def merge(base: Message, top: Message, mask: Mask) -> None:
    """Each field `mask` names, from `top` onto `base`: replaced, or merged one level down."""
    for name, sub in mask.items():
        field = base.DESCRIPTOR.fields_by_name[name]
        if sub is not None:
            if not top.HasField(name):
                continue
            if base.HasField(name):
                merge(getattr(base, name), getattr(top, name), sub)
            else:
                getattr(base, name).CopyFrom(getattr(top, name))
            continue
        if field.is_repeated:
            base.ClearField(name)
            getattr(base, name).MergeFrom(getattr(top, name))
        elif field.message_type is not None:
            if top.HasField(name):
                getattr(base, name).CopyFrom(getattr(top, name))
            else:
                base.ClearField(name)  # `field: null`
        elif field.has_presence and not top.HasField(name):
            base.ClearField(name)
        else:
            setattr(base, name, getattr(top, name))

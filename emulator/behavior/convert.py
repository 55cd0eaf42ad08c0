"""Turn what a behaviour returns (message, dict or None) into the method's message type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from emulator._bounded import IdentityCache

__all__ = ["ReturnTypeError", "from_dict", "to_message"]


class ReturnTypeError(TypeError):
    """A behaviour returned something that is not the method's message type."""


def to_message(
    value: object, cls: type[Message], pool: descriptor_pool.DescriptorPool, where: str
) -> Message:
    """`value` as an instance of `cls`; messages from any generated module with the same full
    name are accepted (they are converted through their wire bytes)."""
    expected = cls.DESCRIPTOR.full_name
    if isinstance(value, Message):
        if type(value) is cls:
            return value
        if value.DESCRIPTOR.full_name != expected:
            raise ReturnTypeError(
                f"{where} returned a {value.DESCRIPTOR.full_name}, but the method returns "
                f"{expected}"
            )
        return cls.FromString(value.SerializeToString())
    if isinstance(value, Mapping):
        try:
            return from_dict(value, cls, pool)
        except ValueError as exc:
            raise ReturnTypeError(
                f"{where} returned a dict that is not a {expected}: {exc}"
            ) from None
    raise ReturnTypeError(
        f"{where} returned {type(value).__name__}; return a {expected} message, a dict of its "
        "fields, or None for the default response"
    )


def from_dict(
    value: Mapping[str, Any], cls: type[Message], pool: descriptor_pool.DescriptorPool
) -> Message:
    """A message from a dict with proto or JSON field names; ValueError names a bad field.

    The message constructor takes proto names and plain values in about a microsecond; JSON
    names and JSON forms (timestamps as text, 64-bit integers as strings) go through
    json_format, which is some twenty times slower.
    """
    try:
        return cls(**_proto_keys(value, cls.DESCRIPTOR))
    except (ValueError, TypeError, AttributeError, KeyError):
        pass
    from google.protobuf import json_format

    try:
        return json_format.ParseDict(dict(value), cls(), descriptor_pool=pool)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None


def _proto_keys(value: Mapping[str, Any], descriptor: Any) -> dict[str, Any]:
    """`value` with JSON field names (`productId`) renamed to proto names (`product_id`), nested
    messages included, so the fast constructor accepts what behaviours usually return."""
    names = _names(descriptor)
    out: dict[str, Any] = {}
    for key, item in value.items():
        found = names.get(key)
        if found is None:
            found = names[key] = _name(descriptor, key)  # KeyError: not a field (json_format's)
        name, sub = found
        converted = item
        if sub is not None:
            if isinstance(item, Mapping):
                converted = _proto_keys(item, sub)
            elif isinstance(item, Message):
                converted = _in_pool(item, sub)
            elif isinstance(item, list):
                converted = [
                    _proto_keys(v, sub)
                    if isinstance(v, Mapping)
                    else _in_pool(v, sub)
                    if isinstance(v, Message)
                    else v
                    for v in item
                ]
        out[name] = converted
    return out


# Per message type: each key a behaviour used, proto or JSON, with its proto name and, for a
# message field, its type. Asking upb's descriptors for them (fields_by_name, message_type,
# GetOptions) was most of a conversion.
_NAMES: IdentityCache[Any, dict[str, tuple[str, Any]]] = IdentityCache(4096)


def _names(descriptor: Any) -> dict[str, tuple[str, Any]]:
    names = _NAMES.get(descriptor)
    return names if names is not None else _NAMES.put(descriptor, {})


def _name(descriptor: Any, key: str) -> tuple[str, Any]:
    """The proto name of field `key` (proto or JSON name) and the type of its messages (None
    for scalars, enums and maps, whose values the constructor takes as they are)."""
    field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name[key]
    sub = field.message_type
    return field.name, None if sub is None or sub.GetOptions().map_entry else sub


def _in_pool(message: Message, descriptor: Any) -> Message:
    """A nested message from another generated module (`any_pb2.Any`, the user's `_pb2`) as the
    contracts' class of the same type, which is all the constructor takes."""
    if message.DESCRIPTOR is descriptor or message.DESCRIPTOR.full_name != descriptor.full_name:
        return message  # the right class already, or the wrong type for the constructor to name
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor).FromString(message.SerializeToString())

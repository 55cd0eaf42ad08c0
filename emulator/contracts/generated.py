"""The user's own generated classes (`protoc --python_out`) for the contracts' message types.

The emulator compiles the contracts into a private descriptor pool (see `model`), so its message
classes are never those of a `_pb2` module the process has imported: a behaviour's
`isinstance(request, catalog_pb2.GetProductRequest)` would be false, and a journalled request
would never `==` the test's message. When a generated module for a type is imported (it
registers the type in protobuf's default pool), behaviours and journal reads use its class
instead, but only when it declares the same shape as the contracts: a module generated from an
older contract would otherwise read the same bytes as other fields, silently. A stale one is
left alone, with a warning naming the module and the first difference.

Looked up when a behaviour is bound and when a journal record is first read, never per call.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["difference", "generated_class"]

log = logging.getLogger("emulator")

# Verdicts per contracts class: {generated class: usable?}. Weak keys: each emulator compiles
# classes of its own, which must not outlive it (a test session starts hundreds).
_verdicts: weakref.WeakKeyDictionary[type[Message], dict[type[Message], bool]] = (
    weakref.WeakKeyDictionary()
)
_warned: set[tuple[str, str]] = set()  # (module, difference): each said once per process
_lock = threading.Lock()


def generated_class(cls: type[Message]) -> type[Message] | None:
    """The class of an imported generated module for the type of `cls` (a class of the
    contracts' pool), when it declares the same fields; None when there is none, or it differs
    (then a warning names the module, once)."""
    ours = cls.DESCRIPTOR
    try:
        theirs = descriptor_pool.Default().FindMessageTypeByName(ours.full_name)
    except KeyError:
        return None
    if theirs is ours:
        return None
    found: type[Message] = message_factory.GetMessageClass(theirs)
    # The default pool never forgets a type, but a test that imported a module may drop it from
    # sys.modules when it ends: a module no longer imported has no say.
    if sys.modules.get(found.__module__) is None:
        return None
    with _lock:
        verdicts = _verdicts.setdefault(cls, {})
        usable = verdicts.get(found)
        if usable is None:
            why = difference(ours, theirs)
            usable = verdicts[found] = why is None
            if why is not None and (found.__module__, why) not in _warned:
                _warned.add((found.__module__, why))
                module = sys.modules[found.__module__]
                log.warning(
                    "%s (%s) does not match the contracts: %s; behaviours and the journal use "
                    "the emulator's own class for %s: generate the module again from the "
                    "contracts (protoc --python_out)",
                    found.__module__,
                    getattr(module, "__file__", None) or "not a file",
                    why,
                    ours.full_name,
                )
    return found if usable else None


def difference(ours: Any, theirs: Any) -> str | None:
    """The first way message type `theirs` (a generated module's) declares other fields than
    `ours` (the contracts'), the types they reach included; None when the same.

    What decoding and attribute access depend on: each field's number, name, type, repetition,
    presence and oneof, the message and enum types it names, and the enums' values. Options and
    comments are not compared: they change neither. (Descriptors typed `Any`: the stubs type
    a message's `DESCRIPTOR` as upb's and the pure-Python descriptor classes alike.)"""
    return _message(ours, theirs, set())


def _message(ours: Descriptor, theirs: Descriptor, seen: set[str]) -> str | None:
    if ours.full_name in seen:  # recursive types: compared once
        return None
    seen.add(ours.full_name)
    if ours.full_name != theirs.full_name:
        return f"{ours.full_name} is {theirs.full_name} in the module"
    mine = {f.number: f for f in ours.fields}
    other = {f.number: f for f in theirs.fields}
    for number in sorted(mine.keys() | other.keys()):
        a, b = mine.get(number), other.get(number)
        if a is None:
            assert b is not None
            return f"{ours.full_name} has no field {number} ({b.name}) in the contracts"
        if b is None:
            return f"{ours.full_name}.{a.name} (field {number}) is not in the module"
        if _field(a) != _field(b):
            return (
                f"{ours.full_name} field {number} is {_shown(a)} in the contracts, "
                f"{_shown(b)} in the module"
            )
        if a.message_type is not None and b.message_type is not None:
            why = _message(a.message_type, b.message_type, seen)
            if why is not None:
                return why
        if a.enum_type is not None and b.enum_type is not None:
            why = _enum(a.enum_type, b.enum_type, seen)
            if why is not None:
                return why
    return None


def _field(field: FieldDescriptor) -> tuple[Any, ...]:
    """A field as decoding and attribute access see it, printable in a warning."""
    oneof = _oneof(field)
    named = field.message_type or field.enum_type
    return (
        field.name,
        _TYPE_NAMES.get(field.type, field.type),
        "repeated" if field.is_repeated else "singular",
        "presence" if field.has_presence else "no presence",
        f"oneof {oneof.name}" if oneof is not None else "no oneof",
        named.full_name if named is not None else "",
    )


def _oneof(field: FieldDescriptor) -> Any:
    """The field's oneof, but not the one protoc makes up for a proto3 `optional` field (`_id`
    for `id`: presence says that already, and upb does not tell synthetic ones apart)."""
    oneof = field.containing_oneof
    if oneof is None or (oneof.name == f"_{field.name}" and len(oneof.fields) == 1):
        return None
    return oneof


def _shown(field: FieldDescriptor) -> str:
    """A field as the .proto declares it: `optional int64 product_id`, `repeated acme.Tag tags`."""
    named = field.message_type or field.enum_type
    kind = named.full_name if named is not None else _TYPE_NAMES.get(field.type, str(field.type))
    oneof = _oneof(field)
    if field.is_repeated:
        label = "repeated "
    elif field.has_presence and field.message_type is None and oneof is None:
        label = "optional "
    else:
        label = ""
    inside = f" in oneof {oneof.name}" if oneof is not None else ""
    return f"`{label}{kind} {field.name}`{inside}"


def _enum(ours: EnumDescriptor, theirs: EnumDescriptor, seen: set[str]) -> str | None:
    if ours.full_name in seen:
        return None
    seen.add(ours.full_name)
    mine = {(v.name, v.number) for v in ours.values}
    other = {(v.name, v.number) for v in theirs.values}
    if mine != other:
        changed = sorted(mine ^ other, key=lambda v: v[1])
        name, number = changed[0]
        where = "the contracts" if (name, number) in mine else "the module"
        return f"enum {ours.full_name} value {name} = {number} is only in {where}"
    return None


_TYPE_NAMES = {
    number: name[len("TYPE_") :].lower()
    for name, number in vars(FieldDescriptor).items()
    if name.startswith("TYPE_") and isinstance(number, int)
}

"""The rules the contracts carry, and the violations of one message.

Two kinds of rule: `buf.validate` annotations (field, oneof and message rules, CEL included),
evaluated by protovalidate, and `google.api.field_behavior = REQUIRED`, checked here (a field
not set: a scalar at its default, an empty list or map, a message or `optional` field absent).

The annotations are read from the contracts' own descriptor pool: the emulator's messages are
dynamic classes of a private pool, so a generated module's extension (field_behavior_pb2) would
not see them, and the contracts may carry a copy of validate.proto of their own. Which message
types have rules is worked out once, over every type a method's request or response reaches, so
a message without any costs a dict lookup, and protovalidate is imported only when one has some.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message

from emulator.contracts.model import Contracts
from emulator.errors import ContractError, RpcAbort

__all__ = ["Rules", "Violation", "checked"]

log = logging.getLogger("emulator")

REQUIRED = 2  # google.api.FieldBehavior.REQUIRED

_FIELD_RULES = "buf.validate.field"
_MESSAGE_RULES = "buf.validate.message"
_ONEOF_RULES = "buf.validate.oneof"
_BEHAVIOR = "google.api.field_behavior"

_MESSAGE = descriptor.FieldDescriptor.TYPE_MESSAGE
_GROUP = descriptor.FieldDescriptor.TYPE_GROUP


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: `field` is the path from the message checked (`items[0].sku`, `labels["k"]`,
    "" for a rule on the message itself), `reason` the rule's id (`string.min_len`)."""

    field: str
    description: str
    reason: str

    def at(self, root: str) -> str:
        """`root.field: description`, the form logs and journal records show."""
        if not self.field:
            return f"{root}: {self.description}"
        joint = "" if self.field.startswith("[") else "."
        return f"{root}{joint}{self.field}: {self.description}"


class _Annotations:
    """The rule annotations of the pool's descriptors, parsed with the pool's own option classes
    (the options descriptors hand out are the default pool's: the extensions stay unknown)."""

    def __init__(self, contracts: Contracts) -> None:
        pool = contracts.pool
        self._ext: dict[str, Any] = {}  # (typeshed's extension handles do not fit pool ones)
        for name in (_FIELD_RULES, _MESSAGE_RULES, _ONEOF_RULES, _BEHAVIOR):
            try:
                self._ext[name] = pool.FindExtensionByName(name)
            except KeyError:
                continue  # no contract imports the file that declares it
        self._classes: dict[str, type[Message]] = {}
        self._contracts = contracts

    @property
    def any(self) -> bool:
        return bool(self._ext)

    def _extension(self, options: Message, name: str) -> Any:
        ext = self._ext.get(name)
        if ext is None:
            return None
        kind = options.DESCRIPTOR.full_name
        cls = self._classes.get(kind)
        if cls is None:
            cls = self._classes[kind] = self._contracts.message_class_by_name(kind)
        parsed = cls.FromString(options.SerializeToString())
        if ext.is_repeated:  # field_behavior: a list
            return list(parsed.Extensions[ext]) or None
        return parsed.Extensions[ext] if parsed.HasExtension(ext) else None

    def field_rules(self, field: descriptor.FieldDescriptor) -> Message | None:
        """The field's `buf.validate.FieldRules`, if it has any."""
        if not field.has_options:
            return None
        rules: Message | None = self._extension(field.GetOptions(), _FIELD_RULES)
        return rules

    def oneof_rules(self, oneof: descriptor.OneofDescriptor) -> Message | None:
        """The oneof's `buf.validate.OneofRules`, if it has any."""
        rules: Message | None = (
            self._extension(oneof.GetOptions(), _ONEOF_RULES) if oneof.has_options else None
        )
        return rules

    def message_rules(self, desc: descriptor.Descriptor) -> Message | None:
        """The message's `buf.validate.MessageRules`, if it has any."""
        rules: Message | None = (
            self._extension(desc.GetOptions(), _MESSAGE_RULES) if desc.has_options else None
        )
        return rules

    def required(self, field: descriptor.FieldDescriptor) -> bool:
        if not field.has_options:
            return False
        behaviors = self._extension(field.GetOptions(), _BEHAVIOR)
        return behaviors is not None and REQUIRED in behaviors

    def has_buf_rules(self, desc: descriptor.Descriptor) -> bool:
        """Whether the message itself, one of its oneofs or one of its fields has a buf rule."""
        if self.message_rules(desc) is not None:
            return True
        if any(self.oneof_rules(oneof) is not None for oneof in desc.oneofs):
            return True
        return any(self.field_rules(f) is not None for f in desc.fields)


class Rules:
    """The rules of one set of contracts: which message types have any, and their violations."""

    def __init__(self, contracts: Contracts, roots: Iterable[descriptor.Descriptor]) -> None:
        self.annotations = _Annotations(contracts)
        # Full names of the message types whose rules (their own or a nested message's) apply.
        self._buf: frozenset[str] = frozenset()
        # Per message type with REQUIRED fields at or under it: its own REQUIRED fields and the
        # message fields to descend into.
        self._required: dict[str, tuple[tuple[descriptor.FieldDescriptor, ...], ...]] = {}
        self._validator: Any = None
        self._collect: Any = None  # the validator's collect_violations, bound once
        # Per message class checked so far: (has REQUIRED fields at or under it, has buf
        # rules). Keyed by class, not by full name: `type()` is cheaper than DESCRIPTOR's name,
        # and the check runs on every request.
        self._kinds: dict[type[Message], tuple[bool, bool]] = {}
        if self.annotations.any:
            self._work_out(list(roots))

    def applies(self, desc: descriptor.Descriptor) -> bool:
        return desc.full_name in self._buf or desc.full_name in self._required

    def _work_out(self, roots: list[descriptor.Descriptor]) -> None:
        # Every type reachable, then "has rules" spread back along the edges: a fixed point, so
        # recursive messages (a tree of nodes) come out right whichever type is seen first.
        types: dict[str, descriptor.Descriptor] = {}
        parents: dict[str, set[str]] = {}
        pending = list(roots)
        while pending:
            desc = pending.pop()
            if desc.full_name in types:
                continue
            types[desc.full_name] = desc
            for field in desc.fields:
                child = _message_type(field)
                if child is not None:
                    parents.setdefault(child.full_name, set()).add(desc.full_name)
                    pending.append(child)
        notes = self.annotations
        own_buf = {name for name, desc in types.items() if notes.has_buf_rules(desc)}
        own_required = {
            name: tuple(f for f in desc.fields if notes.required(f)) for name, desc in types.items()
        }
        self._buf = frozenset(_spread(own_buf, parents))
        under = _spread({name for name, fields in own_required.items() if fields}, parents)
        for name in under:
            nested = tuple(
                f
                for f in types[name].fields
                if (child := _message_type(f)) is not None and child.full_name in under
            )
            self._required[name] = (own_required[name], nested)

    def compile(self, desc: descriptor.Descriptor, cls: type[Message]) -> None:
        """Compile the type's buf rules now (CEL included), so a rule that cannot compile stops
        start-up naming the message, not the first call."""
        if desc.full_name not in self._buf:
            return
        protovalidate = _protovalidate()
        try:
            self.validator().collect_violations(cls())
        except (protovalidate.CompilationError, protovalidate.EvaluationError) as exc:
            raise ContractError(
                f"{desc.full_name}: its buf.validate rules do not compile: {exc}; fix the rule "
                "in the contract"
            ) from None

    def validator(self) -> Any:
        # One per set of contracts: protovalidate caches compiled rules by message name, and a
        # swapped contract may give a name other rules.
        if self._validator is None:
            self._validator = _protovalidate().Validator()
        return self._validator

    def check(self, message: Message) -> list[Violation]:
        """The rules `message` breaks, missing REQUIRED fields first (and no other rule of a
        field reported missing); [] when it keeps them all.
        Raises protovalidate's EvaluationError when a CEL rule fails to run."""
        kind = self._kinds.get(type(message))
        if kind is None:
            name = message.DESCRIPTOR.full_name
            kind = self._kinds[type(message)] = (name in self._required, name in self._buf)
        required, buf = kind
        found: list[Violation] = []
        if required:
            self._missing(message, "", found)
        if buf:
            collect = self._collect
            if collect is None:
                collect = self._collect = self.validator().collect_violations
            broken = collect(message)
            if broken:
                # A field reported missing is not reported again for the length it then lacks.
                missing = {v.field for v in found}
                for violation in broken:
                    one = _violation(violation.proto)
                    if one.field not in missing:
                        found.append(one)
        return found

    def _missing(self, message: Message, prefix: str, found: list[Violation]) -> None:
        """Append to `found` the REQUIRED fields of `message` (and of the messages set in it)
        that are not set."""
        own, nested = self._required[message.DESCRIPTOR.full_name]
        for field in own:
            if not _is_set(message, field):
                found.append(
                    Violation(prefix + field.name, "is required", "field_behavior.required")
                )
        for field in nested:
            value = getattr(message, field.name)
            path = prefix + field.name
            entry = _message_type(field)
            if entry is not None and entry.GetOptions().map_entry:
                if _message_type(entry.fields_by_name["value"]) is not None:
                    for key in value:
                        self._missing(value[key], f"{path}[{json.dumps(key)}].", found)
            elif field.is_repeated:
                for i, item in enumerate(value):
                    self._missing(item, f"{path}[{i}].", found)
            elif message.HasField(field.name):
                self._missing(value, path + ".", found)


def checked(rules: Rules, message: Message, method: str, what: str) -> list[Violation]:
    """`rules.check(message)`, a CEL rule that fails to run answered INTERNAL naming `method`."""
    try:
        return rules.check(message)
    except Exception as exc:  # protovalidate's EvaluationError: a CEL rule that cannot run
        log.error("%s: the %s's validation rules failed to run: %s", method, what, exc)
        raise RpcAbort(
            grpc.StatusCode.INTERNAL,
            f"{method}: the {what}'s validation rules failed to run: {exc}; fix the rule "
            "in the contract",
        ) from None


def _spread(marked: set[str], parents: dict[str, set[str]]) -> set[str]:
    """`marked` and every type from which one of them is reachable."""
    found = set(marked)
    pending = list(marked)
    while pending:
        for parent in parents.get(pending.pop(), ()):
            if parent not in found:
                found.add(parent)
                pending.append(parent)
    return found


def _message_type(field: descriptor.FieldDescriptor) -> descriptor.Descriptor | None:
    """The field's message type (a map's is its entry type), or None for other fields."""
    return field.message_type if field.type in (_MESSAGE, _GROUP) else None


def _is_set(message: Message, field: descriptor.FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.has_presence:
        return bool(message.HasField(field.name))
    value: object = getattr(message, field.name)
    return bool(value != field.default_value)


def _violation(proto: Any) -> Violation:
    """protovalidate's `buf.validate.Violation` as a path, a description and a rule id."""
    parts: list[str] = []
    for element in proto.field.elements if proto.field is not None else ():
        if parts and not element.field_name.startswith("["):
            parts.append(".")
        parts.append(element.field_name)
        subscript = element.subscript
        if subscript is not None:
            key = subscript.value
            shown = json.dumps(key) if isinstance(key, str) else str(key).lower()
            parts.append(f"[{key}]" if subscript.field == "index" else f"[{shown}]")
    description = proto.message or proto.rule_id
    if proto.for_key:
        description += " (map key)"
    return Violation("".join(parts), description, proto.rule_id)


def _protovalidate() -> Any:
    try:
        import protovalidate
    except ImportError:  # pragma: no cover - a dependency; missing only in a broken install
        raise ContractError(
            "the contracts carry buf.validate rules but protovalidate is not installed: "
            "pip install 'protovalidate>=2.1', or set validation: {requests: off}"
        ) from None
    return protovalidate

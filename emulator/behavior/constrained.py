"""Default values that keep the contracts' validation rules.

The contracts' `buf.validate` field, oneof and message rules and `google.api.field_behavior =
REQUIRED` are read once per message type into a `MessagePlan`; the default generator asks it which
fields must be set and passes each generated value through `scalar`/`enum`/`count`, which return
the value unchanged when it already keeps the field's rules (the realistic value stays) and
otherwise a value that does, drawn from the call's seeded generator: still deterministic.

A message type without any rule has no plan, so the generator takes exactly the path, and draws
exactly the numbers, it took before rules were read: contracts without rules get the same bytes.
CEL rules (a field's or a message's `cel`) cannot be satisfied in general and are not read.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from google.protobuf.descriptor import FieldDescriptor

from emulator.behavior import textrules
from emulator.contracts.model import Contracts
from emulator.validation.rules import Rules

__all__ = ["Constraints", "FieldPlan", "MessagePlan", "count", "enum", "keeps", "scalar"]

_Desc: TypeAlias = Any  # protobuf's Python and upb descriptor classes are one thing here
_Field: TypeAlias = Any

IGNORE_ALWAYS = 3  # buf.validate.Ignore: the field's rules never apply
MAX_ITEMS = 1000  # a `min_items` beyond this is not met: a default stays a small message

_INT_BOUNDS = {
    **dict.fromkeys(("int32", "sint32", "sfixed32"), (-(2**31), 2**31 - 1)),
    **dict.fromkeys(("int64", "sint64", "sfixed64"), (-(2**63), 2**63 - 1)),
    **dict.fromkeys(("uint32", "fixed32"), (0, 2**32 - 1)),
    **dict.fromkeys(("uint64", "fixed64"), (0, 2**64 - 1)),
}
_NANOS = 1_000_000_000
# `gt_now`/`lt_now` are judged against the clock when checked; a default is never "now" (it is
# the same every day), so it moves a century forward, or a span back before the fixed range.
_CENTURY = 100 * 365 * 86_400 * _NANOS
_SPAN_BACK = 4 * 365 * 86_400 * _NANOS


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """A field's `buf.validate.FieldRules` (None without any), and whether it must be set."""

    rules: Any
    required: bool


@dataclass(frozen=True, slots=True)
class MessagePlan:
    fields: Mapping[str, FieldPlan]
    # The members of `(buf.validate.message).oneof` groups other than each group's first: at
    # most one of a group may be set, so only the first is (and it is set even in a deep
    # message when the group is `required`). A set, as it is asked once per field generated.
    unset: frozenset[str]

    def field(self, name: str) -> FieldPlan | None:
        return self.fields.get(name)

    def skipped(self, name: str) -> bool:
        """A field of an exclusive group other than its first: left unset."""
        return name in self.unset


class Constraints:
    """The rules of one set of contracts, as the default generator needs them."""

    def __init__(self, contracts: Contracts) -> None:
        self._notes = Rules(contracts, ()).annotations
        self._plans: dict[str, MessagePlan | None] = {}

    @classmethod
    def of(cls, contracts: Contracts) -> Constraints | None:
        """None when no contract imports buf.validate or field_behavior: nothing to read."""
        constraints = cls(contracts)
        return constraints if constraints._notes.any else None

    def plan(self, desc: _Desc) -> MessagePlan | None:
        """The type's plan; None when it has no rule (the generator then runs as ever)."""
        name = desc.full_name
        if name not in self._plans:
            self._plans[name] = self._read(desc)
        return self._plans[name]

    def _read(self, desc: _Desc) -> MessagePlan | None:
        notes = self._notes
        required_oneofs = set()
        for oneof in desc.oneofs:
            oneof_rules: Any = notes.oneof_rules(oneof)
            if oneof_rules is not None and oneof_rules.required:
                required_oneofs.add(oneof.name)
        fields: dict[str, FieldPlan] = {}
        for f in desc.fields:
            rules: Any = notes.field_rules(f)
            if rules is not None and rules.ignore == IGNORE_ALWAYS:
                rules = None
            oneof = f.containing_oneof
            required = (
                notes.required(f)
                or (rules is not None and rules.required)
                or (oneof is not None and oneof.name in required_oneofs)
            )
            if rules is not None or required:
                fields[f.name] = FieldPlan(rules, bool(required))
        message: Any = notes.message_rules(desc)
        unset: set[str] = set()
        for group in message.oneof if message is not None else ():
            names = tuple(group.fields)
            if names:
                unset.update(names[1:])
                if group.required:  # its first member, the one set, must be set
                    first = fields.get(names[0])
                    fields[names[0]] = FieldPlan(first.rules if first else None, True)
        if not fields and not unset:  # (a one-field group alone changes nothing generated)
            return None
        return MessagePlan(fields, frozenset(unset))


def _kind(rules: Any) -> tuple[str | None, Any]:
    kind: str | None = rules.WhichOneof("type") if rules is not None else None
    return kind, getattr(rules, kind) if kind else None


def scalar(f: _Field, plan: FieldPlan, value: Any, rng: random.Random, items: bool = False) -> Any:
    """`value` (a non-enum scalar of field `f`) if it keeps the plan's rules, else one that does.
    `items`: the value is an element of a repeated field, `plan.rules` the `items` rules."""
    kind, rules = _kind(plan.rules)
    if kind == "string":
        value = textrules.string(rules, value, rng)
    elif kind == "bytes":
        value = textrules.bytes_(rules, value, rng)
    elif kind == "bool":
        value = rules.const if rules.HasField("const") else value
    elif kind in _INT_BOUNDS:
        value = _integer(rules, value, _INT_BOUNDS[kind])
    elif kind in ("float", "double"):
        value = _float(rules, value, rng, single=kind == "float")
    if plan.required and not items and value == f.default_value and not f.has_presence:
        value = _nonzero(f)  # a scalar at its zero value is "not set"
    return value


def _nonzero(f: _Field) -> Any:
    cpp = f.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return True
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return b"\x01" if f.type == FieldDescriptor.TYPE_BYTES else "value"
    return 1


def keeps(f: _Field, plan: FieldPlan, value: Any) -> bool:
    """Whether `value` (a request's, echoed into a response) keeps the field's rules."""
    probe = random.Random(0)  # only drawn from when the value does not keep them
    kind, rules = _kind(plan.rules)
    if f.is_repeated:
        items = (
            FieldPlan(rules.items, False)
            if kind == "repeated" and rules.HasField("items")
            else None
        )
        if kind == "repeated":
            if len(value) < rules.min_items or (
                rules.HasField("max_items") and len(value) > rules.max_items
            ):
                return False
            if rules.unique and len(set(value)) != len(value):
                return False
        if plan.required and not value:
            return False
        return items is None or all(_keeps_one(f, items, v, probe, True) for v in value)
    return _keeps_one(f, plan, value, probe, False)


def _keeps_one(f: _Field, plan: FieldPlan, value: Any, probe: random.Random, items: bool) -> bool:
    if f.enum_type is not None:
        return bool(enum(f.enum_type, plan, value, items) == value)
    kept = scalar(f, plan, value, probe, items)
    return bool(kept == value and type(kept) is type(value))


def _integer(rules: Any, value: int, bounds: tuple[int, int]) -> int:
    allowed = list(getattr(rules, "in"))
    banned = set(rules.not_in)
    low, high = _range(rules, 1)

    def ok(v: int) -> bool:
        return _inside(v, low, high) and (not allowed or v in allowed) and v not in banned

    if rules.HasField("const"):
        return int(rules.const)
    if ok(value):
        return value
    if allowed:
        return int(next((v for v in allowed if ok(v)), allowed[0]))
    lo = bounds[0] if low is None else max(bounds[0], low)
    hi = bounds[1] if high is None else min(bounds[1], high)
    if lo > hi:  # gt above lt: protovalidate reads it as "outside [lt, gt]"
        candidates = [lo, lo + 1, hi, hi - 1]
    else:
        offset = abs(value) % min(hi - lo + 1, 1000)
        # Near the bound the value crossed, at a distance that still follows the drawn value.
        candidates = [lo + offset if value < lo else hi - offset, lo, hi]
    for start in candidates:
        for step in range(len(banned) + 1):  # `not_in` excludes at most that many neighbours
            for v in (start + step, start - step):
                if bounds[0] <= v <= bounds[1] and ok(v):
                    return v
    return candidates[0]


def _range(rules: Any, unit: int) -> tuple[Any, Any]:
    """The inclusive lower and upper bounds of gt/gte and lt/lte (`unit`: an integer's step;
    for floats, exclusive bounds are nudged by the caller)."""
    lower = rules.WhichOneof("greater_than")
    upper = rules.WhichOneof("less_than")
    low = None if lower is None else getattr(rules, lower) + (unit if lower == "gt" else 0)
    high = None if upper is None else getattr(rules, upper) - (unit if upper == "lt" else 0)
    return low, high


def _inside(v: float, low: float | None, high: float | None) -> bool:
    if low is not None and high is not None and low > high:
        return v >= low or v <= high  # the exclusive form: outside the gap
    return (low is None or v >= low) and (high is None or v <= high)


def _float(rules: Any, value: float, rng: random.Random, single: bool) -> float:
    allowed = list(getattr(rules, "in"))
    banned = set(rules.not_in)
    lower, upper = rules.WhichOneof("greater_than"), rules.WhichOneof("less_than")
    low = None if lower is None else getattr(rules, lower)
    high = None if upper is None else getattr(rules, upper)

    def ok(v: float) -> bool:
        stored = struct.unpack("f", struct.pack("f", v))[0] if single else v
        if not math.isfinite(stored) or stored in banned or (allowed and stored not in allowed):
            return False
        above = low is None or (stored > low if lower == "gt" else stored >= low)
        below = high is None or (stored < high if upper == "lt" else stored <= high)
        if low is not None and high is not None and low > high:
            return above or below
        return above and below

    if rules.HasField("const"):
        return float(rules.const)
    if ok(value):
        return float(value)
    if allowed:
        return float(next((v for v in allowed if ok(v)), allowed[0]))
    spread = abs(value) % 100
    if low is not None and high is not None and low <= high:
        width = high - low
        candidates = [round(low + width * rng.random(), 2), low + width / 2, low + width / 4]
    elif low is not None and high is not None:
        candidates = [low + 1 + spread, high - 1 - spread]
    elif low is not None:
        candidates = [round(low + 1 + spread, 2), low + 1, low + abs(low) / 2 + 1]
    elif high is not None:
        candidates = [round(high - 1 - spread, 2), high - 1, high - abs(high) / 2 - 1]
    else:
        candidates = [value + 1, value - 1, spread + 1.5]
    return float(next((v for v in candidates if ok(v)), candidates[0]))


def enum(enum_type: Any, plan: FieldPlan, value: int, items: bool = False) -> int:
    """`value` if it keeps the plan's enum rules (and is not 0 when required), else the first
    declared value that does: the same choice `defaults.enums: first` makes."""
    kind, rules = _kind(plan.rules)
    declared = [v.number for v in enum_type.values]
    rules = rules if kind == "enum" else None
    if rules is not None and rules.HasField("const"):
        return int(rules.const)
    allowed = list(getattr(rules, "in")) if rules is not None else []
    banned = set(rules.not_in) if rules is not None else set()
    defined = rules is not None and rules.defined_only

    def ok(v: int) -> bool:
        if (allowed and v not in allowed) or v in banned or (defined and v not in declared):
            return False
        return not (plan.required and not items and v == 0)

    if ok(value):
        return value
    # Declared values other than 0 first: 0 is "unset" (see defaults._enum_numbers).
    ordered = allowed or [n for n in declared if n != 0] + [0]
    found = next((v for v in ordered if ok(v)), None)
    if found is not None:
        return int(found)
    return (
        int(max([*declared, *banned])) + 1
    )  # only `not_in` every declared value: an undeclared one


def count(plan: FieldPlan | None, drawn: int, pairs: bool = False) -> int:
    """How many items (map pairs) to make: `drawn`, moved into min_items..max_items
    (min_pairs..max_pairs), at least 1 when the field is required."""
    if plan is None:
        return drawn
    kind, rules = _kind(plan.rules)
    low, high = (1 if plan.required else 0), None
    if kind == ("map" if pairs else "repeated"):
        lo_name, hi_name = ("min_pairs", "max_pairs") if pairs else ("min_items", "max_items")
        low = max(low, min(getattr(rules, lo_name), MAX_ITEMS))
        high = getattr(rules, hi_name) if rules.HasField(hi_name) else None
    drawn = max(drawn, low)
    return drawn if high is None else min(drawn, high)


def element_plans(plan: FieldPlan | None) -> tuple[FieldPlan | None, FieldPlan | None, bool]:
    """The plans of a repeated field's items (or a map's keys and values), and `unique`."""
    if plan is None:
        return None, None, False
    kind, rules = _kind(plan.rules)
    if kind == "repeated":
        items = FieldPlan(rules.items, False) if rules.HasField("items") else None
        return items, None, bool(rules.unique)
    if kind == "map":
        keys = FieldPlan(rules.keys, False) if rules.HasField("keys") else None
        vals = FieldPlan(rules.values, False) if rules.HasField("values") else None
        return keys, vals, False
    return None, None, False


def message(msg: Any, plan: FieldPlan, rng: random.Random) -> None:
    """Make a well-known message value keep its rules: Timestamp and Duration ranges and `const`,
    the scalar rules of a wrapper's `value`."""
    kind, rules = _kind(plan.rules)
    name = msg.DESCRIPTOR.full_name
    if kind in ("timestamp", "duration") and name in (
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
    ):
        nanos = _moment(rules, msg.seconds * _NANOS + msg.nanos)
        msg.seconds, msg.nanos = divmod(nanos, _NANOS)
        if name == "google.protobuf.Duration" and msg.seconds < 0 and msg.nanos:
            msg.seconds, msg.nanos = msg.seconds + 1, msg.nanos - _NANOS  # signs must agree
    elif name.endswith("Value") and name.startswith("google.protobuf.") and kind is not None:
        value_f = msg.DESCRIPTOR.fields_by_name.get("value")
        if value_f is not None and value_f.message_type is None:
            msg.value = scalar(value_f, FieldPlan(plan.rules, False), msg.value, rng)


def _moment(rules: Any, nanos: int) -> int:
    """A Timestamp or Duration, in nanoseconds, moved into the rules' range."""

    def total(m: Any) -> int:
        return int(m.seconds) * _NANOS + int(m.nanos)

    if rules.HasField("const"):
        return total(rules.const)
    lower, upper = rules.WhichOneof("greater_than"), rules.WhichOneof("less_than")
    if lower == "gt_now":
        return nanos + _CENTURY
    if upper == "lt_now":
        return nanos - _SPAN_BACK
    low = None if lower is None else total(getattr(rules, lower)) + (1 if lower == "gt" else 0)
    high = None if upper is None else total(getattr(rules, upper)) - (1 if upper == "lt" else 0)
    allowed = [total(v) for v in getattr(rules, "in", ())]
    banned = {total(v) for v in getattr(rules, "not_in", ())}
    if allowed:
        return nanos if nanos in allowed else int(allowed[0])
    if _inside(nanos, low, high) and nanos not in banned:
        return int(nanos)
    lo = low if low is not None else (high or 0) - 86_400 * _NANOS
    hi = high if high is not None else lo + 86_400 * _NANOS
    if lo > hi:
        return lo
    picked = lo + abs(nanos) % (hi - lo + 1)
    return picked if picked not in banned else lo

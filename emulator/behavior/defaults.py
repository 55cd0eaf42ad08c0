"""Deterministic default responses: schema-valid messages that look like real data.

A default is a pure function of (seed, method, request bytes, message index): the generator is
seeded from a SHA-256 of those, never from `hash()`, so the same request gets the same response
bytes in every run, process and machine. Values follow field names (see `values`), enums take
declared non-zero values (the first declared one, or one drawn per request: `defaults.enums`),
fields pinned by `defaults.fields` take their pinned values (see `pins`), one member of each oneof
is set, maps and repeated fields get a few entries, recursion is bounded and well-known types are
valid. Fields with validation rules (buf.validate, field_behavior REQUIRED) get values that keep
them (see `constrained`); fields without any get exactly the values they got before rules were read.

Computed defaults are cached by a SHA-256 of the request, never the request itself, and the cache
is bounded by entries and by the bytes of the responses it holds: distinct big requests cost no
memory once answered.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import random
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from google.protobuf import message as m
from google.protobuf import timestamp_pb2

from emulator.behavior import constrained, values
from emulator.behavior.constrained import Constraints, FieldPlan, MessagePlan
from emulator.behavior.pins import Pins, compile_pins
from emulator.contracts.model import Contracts, MethodSpec

if TYPE_CHECKING:
    from emulator.config import Config

__all__ = ["DefaultResponses", "fill", "seeded_rng"]

MAX_DEPTH = 6  # nesting levels that get optional sub-messages at all
MAX_REPEATS = 2  # how often one message type may appear on the path from the root (recursion)
# A message field the rules require is set below MAX_DEPTH too, down to this depth: a cycle of
# required message fields has no finite value, so it stops somewhere.
MAX_REQUIRED_DEPTH = 3 * MAX_DEPTH
CACHE_ENTRIES = 4096
CACHE_BYTES = 8 * 1024 * 1024  # response bytes the cache holds at most
CACHE_ENTRY_BYTES = CACHE_BYTES // 64  # a bigger response is recomputed: it would evict dozens
# Lookups per message type, field and enum, shared by every emulator of the process: bounded, so
# that descriptors of contracts no longer served are let go, and large enough for big contracts.
SHAPES = 16384

# protobuf's type stubs split every descriptor into a Python and a upb class; to this module
# they are one thing.
_Message: TypeAlias = Any
_Field: TypeAlias = Any
_Enum: TypeAlias = Any


_SMALL_KEY = 64  # request bytes used as the cache key as they are
_Key: TypeAlias = tuple[str, "bytes | tuple[str, bytes]", int, tuple[int, int]]


def seeded_rng(seed: int, method: str, data: bytes, index: int = 0) -> random.Random:
    """The generator for (seed, method, data, index): the same in every run and process."""
    digest = hashlib.sha256(f"{seed}\0{method}\0{index}\0".encode() + data).digest()
    return random.Random(int.from_bytes(digest, "big"))


class DefaultResponses:
    """Synthesises, and remembers, the default responses of one emulator."""

    def __init__(
        self,
        contracts: Contracts,
        seed: int,
        stream_messages: int = 3,
        pins: Pins | None = None,
    ) -> None:
        self.contracts = contracts
        self.seed = seed
        self.stream_messages = stream_messages
        self.pins = pins or Pins()
        # None for contracts that import neither buf.validate nor field_behavior: no rule to keep.
        self.constraints = Constraints.of(contracts)
        self.time_range = values.TIMESTAMP_RANGE
        # Defaults are pure functions of their key, so a bounded cache is always safe to hit.
        # Keyed by the time range too, so a freeze racing a call never caches stale timestamps.
        self._cache: OrderedDict[_Key, bytes] = OrderedDict()
        self._cache_bytes = 0

    @classmethod
    def from_config(cls, contracts: Contracts, config: Config) -> DefaultResponses:
        """The defaults `config` asks for; its pins are checked against `contracts` here."""
        defaults = config.defaults
        pins = compile_pins(defaults.fields, defaults.enums, contracts, config.where)
        return cls(contracts, config.seed, defaults.stream_messages, pins)

    def anchor(self, frozen_at: datetime.datetime | None) -> None:
        """Generated timestamps fall in the span before a frozen clock's instant, or back in
        their fixed range when the clock runs again."""
        if frozen_at is None:
            time_range = values.TIMESTAMP_RANGE
        else:
            end = int(frozen_at.timestamp())
            time_range = (end - values.TIMESTAMP_SPAN, end)
        if time_range != self.time_range:
            self.time_range = time_range
            self.clear()

    def clear(self) -> None:
        """Forget every cached default (they are recomputed, identically, when asked again)."""
        self._cache.clear()
        self._cache_bytes = 0

    def release(self, keep_bytes: int = 1 << 20) -> None:
        """Free the cache unless it is small: what big requests left behind goes, while the
        small defaults every test asks for again stay (recomputing one costs ~1 ms)."""
        if self._cache_bytes > keep_bytes:
            self.clear()

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the cached responses (keys are 32-byte digests)."""
        return self._cache_bytes

    def rng(self, method: str, data: bytes, index: int = 0) -> random.Random:
        return seeded_rng(self.seed, method, data, index)

    def _key(self, method: MethodSpec, request: bytes, index: int) -> _Key:
        # Small requests are their own key (hashing costs more than it saves); a digest for the
        # rest, so that a key never pins a big request. A digest is a tuple, never equal to bytes.
        key: bytes | tuple[str, bytes] = (
            request if len(request) <= _SMALL_KEY else ("sha256", hashlib.sha256(request).digest())
        )
        return (method.name, key, index, self.time_range)

    def cached(self, method: MethodSpec, request: bytes, index: int = 0) -> bytes | None:
        """The default already computed for this exact request, if any (its bytes parsed fine)."""
        return self._cache.get(self._key(method, request, index))

    def response_bytes(self, method: MethodSpec, request: bytes, index: int = 0) -> bytes:
        key = self._key(method, request, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = self.response(method, request, index, key[3]).SerializeToString(deterministic=True)
        if len(data) <= CACHE_ENTRY_BYTES:
            self._store(key, data)
        return data

    def _store(self, key: _Key, data: bytes) -> None:
        old = self._cache.pop(key, None)  # a racing call computed it too: count it once
        if old is not None:
            self._cache_bytes -= len(old)
        self._cache[key] = data
        self._cache_bytes += len(data)
        while len(self._cache) > CACHE_ENTRIES or self._cache_bytes > CACHE_BYTES:
            _, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= len(evicted)

    def response(
        self,
        method: MethodSpec,
        request: bytes,
        index: int = 0,
        time_range: tuple[int, int] | None = None,
    ) -> m.Message:
        """The default for one call (`index` numbers the messages of a server stream).

        Top-level fields the request also has (same name and type) echo the request's values,
        so `GetProduct(product_id="p1")` answers with product p1, unless they are pinned.
        """
        msg = method.output_class()
        rng = self.rng(method.name, request, index)
        fill(msg, rng, time_range or self.time_range, self.pins, self.constraints)
        if not method.kind.client_streaming or method.kind.server_streaming:
            plan = self.constraints.plan(msg.DESCRIPTOR) if self.constraints else None
            _echo(method, request, msg, self.pins.names(msg.DESCRIPTOR.full_name), plan)
        return msg


def fill(
    msg: m.Message,
    rng: random.Random,
    time_range: tuple[int, int] = values.TIMESTAMP_RANGE,
    pins: Pins | None = None,
    constraints: Constraints | None = None,
) -> None:
    """Set realistic values on every field of `msg`, drawing only from `rng`; with
    `constraints`, values that keep the contracts' validation rules."""
    _Filler(rng, time_range, pins or Pins(), constraints).message(msg, (), "")


class _Filler:
    def __init__(
        self,
        rng: random.Random,
        time_range: tuple[int, int],
        pins: Pins,
        constraints: Constraints | None = None,
    ) -> None:
        self.rng = rng
        self.time_range = time_range
        self.pins = pins
        self.constraints = constraints
        self.parent: _Message | None = None  # the message holding the well-known value

    def message(
        self, msg: m.Message, path: tuple[str, ...], hint: str, parent: _Message | None = None
    ) -> None:
        desc = msg.DESCRIPTOR
        special = _WELL_KNOWN.get(desc.full_name)
        if special is not None:
            self.parent = parent
            special(self, msg, hint)
            self.pins.apply(msg)
            return
        path = (*path, desc.full_name)
        shallow = len(path) <= MAX_DEPTH and path.count(desc.full_name) <= MAX_REPEATS
        plan = self.constraints.plan(desc) if self.constraints else None
        for field in _chosen_fields(desc, self.rng):
            if plan is not None and plan.skipped(field.name):
                continue
            rules = plan.field(field.name) if plan is not None else None
            if field.message_type is not None and not shallow and not field.is_required:
                forced = rules is not None and rules.required and len(path) <= MAX_REQUIRED_DEPTH
                if not forced:
                    continue
            self.field(msg, field, path, shallow, rules)
        if desc.full_name == "google.longrunning.Operation":
            msg.done = True  # type: ignore[attr-defined]  # a result (response or error) is set
        self.pins.apply(msg)

    def field(
        self,
        msg: m.Message,
        f: _Field,
        path: tuple[str, ...],
        shallow: bool,
        rules: FieldPlan | None = None,
    ) -> None:
        owner = msg.DESCRIPTOR.name
        if rules is not None and (values.is_map(f) or f.is_repeated):
            self.constrained_items(msg, f, path, shallow, rules)
            return
        if values.is_map(f):
            key_f, value_f = (
                f.message_type.fields_by_name["key"],
                f.message_type.fields_by_name["value"],
            )
            target = getattr(msg, f.name)
            for _ in range(self.rng.randint(1, 3)):
                key = self.scalar_or_enum(key_f, f.name, owner)
                if value_f.message_type is None:
                    target[key] = self.scalar_or_enum(value_f, f.name, owner)
                else:
                    self.message(target[key], path, f.name, msg.DESCRIPTOR)
            return
        if f.is_repeated:
            target = getattr(msg, f.name)
            count = self.rng.randint(1, 3 if shallow else 1)
            for _ in range(count):
                if f.message_type is None:
                    target.append(self.scalar_or_enum(f, f.name, owner))
                else:
                    self.message(target.add(), path, f.name, msg.DESCRIPTOR)
            return
        if f.message_type is None:
            setattr(msg, f.name, self.scalar_or_enum(f, f.name, owner, rules))
            return
        sub = getattr(msg, f.name)
        self.message(sub, path, f.name, msg.DESCRIPTOR)
        sub.SetInParent()  # an all-default sub-message (Empty) is still present
        if rules is not None and rules.rules is not None:
            constrained.message(sub, rules, self.rng)

    def scalar_or_enum(
        self, f: _Field, hint: str, owner: str, rules: FieldPlan | None = None, items: bool = False
    ) -> Any:
        """A value of `f` (an element's when `items`), keeping `rules` when there are any."""
        if f.enum_type is not None:
            # Drawn in both modes, so that `first` changes the enum fields and nothing else.
            drawn = self.rng.choice(_enum_numbers(f.enum_type))
            number = _enum_numbers(f.enum_type)[0] if self.pins.enums == "first" else drawn
            return number if rules is None else constrained.enum(f.enum_type, rules, number, items)
        value = values.scalar(f, self.rng, hint, owner, self.time_range)
        return value if rules is None else constrained.scalar(f, rules, value, self.rng, items)

    def constrained_items(
        self, msg: m.Message, f: _Field, path: tuple[str, ...], shallow: bool, rules: FieldPlan
    ) -> None:
        """A repeated field or map with rules: enough items (min/max_items, min/max_pairs, at
        least one when required), each keeping the items' (keys', values') rules, unique ones
        when `unique` asks."""
        owner = msg.DESCRIPTOR.name
        target: Any = getattr(msg, f.name)
        first, second, unique = constrained.element_plans(rules)
        if values.is_map(f):
            key_f, value_f = (
                f.message_type.fields_by_name["key"],
                f.message_type.fields_by_name["value"],
            )
            wanted = constrained.count(rules, self.rng.randint(1, 3), pairs=True)
            for _ in range(4 * wanted + 4):  # keys drawn twice collapse: draw again, boundedly
                if len(target) >= wanted:
                    break
                key = self.scalar_or_enum(key_f, f.name, owner, first, items=True)
                if key in target:
                    continue
                if value_f.message_type is None:
                    target[key] = self.scalar_or_enum(value_f, f.name, owner, second, items=True)
                    continue
                self.message(target[key], path, f.name, msg.DESCRIPTOR)
                if second is not None and second.rules is not None:
                    constrained.message(target[key], second, self.rng)
            return
        wanted = constrained.count(rules, self.rng.randint(1, 3 if shallow else 1))
        seen: list[Any] = []
        for _ in range(wanted):
            if f.message_type is not None:
                item = target.add()
                self.message(item, path, f.name, msg.DESCRIPTOR)
                if first is not None and first.rules is not None:
                    constrained.message(item, first, self.rng)
                continue
            value = self.scalar_or_enum(f, f.name, owner, first, items=True)
            if unique:
                value = self.distinct(f, owner, first, value, seen)
                if value is None:
                    break  # no other value keeps the items' rules
            seen.append(value)
            target.append(value)

    def distinct(
        self, f: _Field, owner: str, rules: FieldPlan | None, value: Any, seen: list[Any]
    ) -> Any:
        """`value`, or another one keeping `rules` that `seen` does not hold; None if none."""
        for _ in range(8):
            if value not in seen:
                return value
            value = self.scalar_or_enum(f, f.name, owner, rules, items=True)
        plan = rules or FieldPlan(None, False)
        if f.enum_type is not None:  # `enums: first` gives every item the same value
            numbers = [v.number for v in f.enum_type.values]
            for number in sorted(numbers, key=lambda n: n == 0):  # 0 ("unset") last
                if (
                    number not in seen
                    and constrained.enum(f.enum_type, plan, number, True) == number
                ):
                    return number
            return None
        for step in range(1, 64):
            other: Any = (
                f"{value}-{step}"
                if isinstance(value, str)
                else value + bytes([step])
                if isinstance(value, bytes)
                else value + step
                if not isinstance(value, bool)
                else not value
            )
            other = constrained.scalar(f, plan, other, self.rng, True)
            if other not in seen:
                return other
        return None

    # Well-known types: valid by their own rules, not just by schema.

    def timestamp(self, msg: Any, hint: str) -> None:
        msg.seconds = self.rng.randrange(*self.time_range)
        msg.nanos = self.rng.randrange(1000) * 1_000_000

    def duration(self, msg: Any, hint: str) -> None:
        msg.seconds = self.rng.randrange(1, 3 * 86_400)

    def empty(self, msg: Any, hint: str) -> None:
        pass

    def wrapper(self, msg: Any, hint: str) -> None:
        value_f = msg.DESCRIPTOR.fields_by_name["value"]
        msg.value = values.scalar(value_f, self.rng, hint or "value")

    def struct(self, msg: Any, hint: str) -> None:
        msg.update(
            {
                "source": "grpc-emulator",
                values.WORDS[self.rng.randrange(len(values.WORDS))]: self.rng.randrange(1, 100),
                "enabled": self.rng.random() < 0.5,
                "labels": [self.rng.choice(values.COLORS) for _ in range(2)],
            }
        )

    def value(self, msg: Any, hint: str) -> None:
        msg.string_value = values.scalar(
            msg.DESCRIPTOR.fields_by_name["string_value"], self.rng, hint or "value"
        )

    def list_value(self, msg: Any, hint: str) -> None:
        msg.extend([self.rng.choice(values.WORDS) for _ in range(self.rng.randint(1, 3))])

    def field_mask(self, msg: Any, hint: str) -> None:
        # Name real fields: those of the resource the mask belongs to when the caller passed one.
        fields = list(_mask_fields(self.parent, hint)) if self.parent else []
        if not fields:
            return
        chosen = sorted(set(self.rng.sample(fields, k=min(len(fields), self.rng.randint(1, 3)))))
        msg.paths.extend(chosen)

    def any(self, msg: Any, hint: str) -> None:
        # A Timestamp is a real message every client can resolve, with or without our contracts.
        inner = timestamp_pb2.Timestamp()
        self.timestamp(inner, hint)
        msg.Pack(inner)


_WELL_KNOWN: dict[str, Callable[[_Filler, Any, str], None]] = {
    "google.protobuf.Timestamp": _Filler.timestamp,
    "google.protobuf.Duration": _Filler.duration,
    "google.protobuf.Empty": _Filler.empty,
    "google.protobuf.Struct": _Filler.struct,
    "google.protobuf.Value": _Filler.value,
    "google.protobuf.ListValue": _Filler.list_value,
    "google.protobuf.FieldMask": _Filler.field_mask,
    "google.protobuf.Any": _Filler.any,
    **{
        f"google.protobuf.{name}": _Filler.wrapper
        for name in (
            "DoubleValue",
            "FloatValue",
            "Int64Value",
            "UInt64Value",
            "Int32Value",
            "UInt32Value",
            "BoolValue",
            "StringValue",
            "BytesValue",
        )
    },
}


def _echo(
    method: MethodSpec,
    request: bytes,
    response: m.Message,
    pinned: tuple[str, ...] = (),
    plan: MessagePlan | None = None,
) -> None:
    pairs = _echo_fields(method.input_class.DESCRIPTOR, method.output_class.DESCRIPTOR)
    if pinned:
        pairs = tuple(name for name in pairs if name not in pinned)
    if not pairs:
        return
    try:
        parsed = method.input_class.FromString(request)
    except Exception:  # the call is refused as INVALID_ARGUMENT before a default is sent
        return
    for field in pairs:
        value = getattr(parsed, field)
        if not value:
            continue  # unset in the request: keep the generated value
        if plan is not None:
            if plan.skipped(field):
                # The response's rules want it unset: a member of an exclusive group
                # (`(buf.validate.message).oneof`) whose first member is set, with or without
                # rules of its own.
                continue
            rules = plan.field(field)
            if rules is not None and not constrained.keeps(
                response.DESCRIPTOR.fields_by_name[field], rules, value
            ):
                continue  # the response's rules refuse the request's value: keep the default
        target = getattr(response, field)
        if hasattr(target, "CopyFrom") and hasattr(value, "CopyFrom"):
            target.CopyFrom(value)
        elif hasattr(target, "extend"):
            del target[:]
            target.extend(value)
        else:
            setattr(response, field, value)


@functools.lru_cache(maxsize=SHAPES // 4)  # per method
def _echo_fields(request: _Message, response: _Message) -> tuple[str, ...]:
    """Names of top-level singular scalar/enum and repeated scalar fields both messages share."""

    def kind(f: _Field) -> tuple[object, ...]:
        return (f.cpp_type, f.is_repeated, f.enum_type and f.enum_type.full_name)

    shared = []
    for name, field in response.fields_by_name.items():
        other = request.fields_by_name.get(name)
        if other is None or field.message_type is not None or other.message_type is not None:
            continue
        if field.containing_oneof is not None or kind(field) != kind(other):
            continue
        shared.append(name)
    return tuple(shared)


@functools.lru_cache(maxsize=SHAPES)  # per field
@functools.lru_cache(maxsize=SHAPES // 4)  # per enum
def _enum_numbers(enum: _Enum) -> list[int]:
    """The values other than 0, in declaration order (in proto3 0 is "unset", by convention
    `*_UNSPECIFIED`, and never sent on the wire): the first is `enums: first`'s; [0] when the
    enum has no other."""
    numbers = [v.number for v in enum.values]
    return [n for n in numbers if n != 0] or numbers


@functools.lru_cache(maxsize=SHAPES // 2)  # per message
def _layout(
    desc: _Message,
) -> tuple[tuple[_Field, ...], tuple[tuple[_Field, ...], ...]]:
    """Fields outside real oneofs, and the members of each real oneof."""
    groups = []
    in_oneof: set[str] = set()
    for oneof in desc.oneofs:
        members = tuple(oneof.fields)
        # proto3 `optional` makes a synthetic one-member oneof named `_field`: not a real choice.
        if len(members) == 1 and oneof.name == "_" + members[0].name:
            continue
        groups.append(members)
        in_oneof.update(f.name for f in members)
    plain = tuple(f for f in desc.fields if f.name not in in_oneof)
    return plain, tuple(groups)


def _chosen_fields(desc: _Message, rng: random.Random) -> list[_Field]:
    plain, groups = _layout(desc)
    chosen = list(plain)
    chosen.extend(group[rng.randrange(len(group))] for group in groups)
    return chosen


@functools.lru_cache(maxsize=SHAPES // 16)  # per message with a FieldMask
def _mask_fields(parent: _Message, mask_name: str) -> tuple[str, ...]:
    """A FieldMask beside a resource field (`product`, `update_mask`) names the resource's fields;
    a mask on its own names its parent's other fields."""
    resources = [
        f
        for f in parent.fields
        if f.message_type is not None
        and not f.is_repeated
        and f.name != mask_name
        and not f.message_type.full_name.startswith("google.protobuf.")
    ]
    target = resources[0].message_type if resources else parent
    return tuple(f.name for f in target.fields if f.name != mask_name)

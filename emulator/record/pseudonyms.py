"""Pseudonyms for recorded data: personal values replaced, and the joins between them kept.

A rule names fields by a pattern over `<message full name>.<field name>` and says what they
hold (`email`, `id`, `name`, `phone`, `uuid`, or `redact` to blank them). Each value is replaced
by its image under a keyed permutation of all the values of its shape (same length, same
character classes, same separators): a Feistel network whose round function is HMAC-SHA256 with
the key, over the kind, the shape and the round. So

- the same original gets the same pseudonym in every message, method, file and run that use the
  same key, whichever field it came from, and another key gives other pseudonyms;
- two originals of one kind never share a pseudonym (a permutation has no collisions): a join
  neither breaks nor merges two customers into one;
- the pseudonym passes the checks the original passed: an email stays an email with its
  top-level domain, a phone number keeps its layout, a uuid its version and variant, an int32
  id stays an int32 of as many digits.

Names are the exception: picked from a short built-in list, word by word, they may repeat.
Empty strings and zeros are left as they are: a default is no personal data, and proto3
presence stays what it was.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeAlias

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator.contracts.builtin import HEALTH_FILE, REFLECTION_V1_FILE, REFLECTION_V1ALPHA_FILE
from emulator.contracts.model import Contracts
from emulator.errors import ConfigError
from emulator.record import forms
from emulator.record.config import KEY_VARIABLE
from emulator.record.leaks import MIN_LEAK_LENGTH, leaks

__all__ = ["KINDS", "MIN_LEAK_LENGTH", "REDACTED", "PseudonymRule", "Pseudonymizer", "leaks"]

KINDS = ("email", "id", "name", "phone", "uuid", "redact")
REDACTED = "[redacted]"
# A key is a secret, not a seed: one short enough to guess would let anyone undo the pseudonyms
# of a short id by trying every key.
MIN_KEY_BYTES = 16

_FITS = {
    "string": set(KINDS),
    "bytes": {"redact"},
    "integer": {"id"},
}
_FITS_TEXT = {
    "email": "string fields",
    "id": "string and integer fields",
    "name": "string fields",
    "phone": "string fields",
    "uuid": "string fields",
    "redact": "string and bytes fields",
}
_T = FieldDescriptor
_INT_BOUNDS = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("String", "Bytes", "Int32", "Int64", "UInt32", "UInt64")
}
_SINGLE, _REPEATED, _MAP = 0, 1, 2
# protobuf's type stubs split every descriptor into a Python and a upb class; here they are one.
_Desc: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class PseudonymRule:
    """`field`: an fnmatch pattern over `<message full name>.<field name>` (`*.email`,
    `acme.shop.v1.Customer.full_name`); `kind`: one of `KINDS`."""

    field: str
    kind: str


@dataclass(frozen=True, slots=True)
class _Rewrite:
    name: str  # the field's name in its message
    label: str  # its full name, for the leak check
    kind: str
    shape: int  # _SINGLE, _REPEATED or _MAP (the values)
    wrapped: bool  # a google.protobuf.*Value: the rule is about its `value`
    bounds: tuple[int, int] | None  # an integer field's range
    role: str | None  # "first" or "last" for a name field named so


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one message type, worked out once."""

    rewrites: tuple[_Rewrite, ...]
    nested: tuple[tuple[str, int], ...]  # message fields whose types may hold a match


_NOTHING = _Plan((), ())


class Pseudonymizer:
    """Rewrites recorded messages in place by `rules` (the first matching rule wins), with
    `key`. `originals` collects every value replaced, for `leaks`; `labels` says for each the
    field (or kind) it was first seen in."""

    def __init__(self, rules: Sequence[PseudonymRule], key: bytes) -> None:
        for rule in rules:
            if rule.kind not in KINDS:
                raise ValueError(f"unknown pseudonym kind {rule.kind!r}: one of {', '.join(KINDS)}")
        self.rules = tuple(rules)
        self._key = bytes(key)
        self._patterns = [(re.compile(fnmatch.translate(r.field)), r.kind) for r in self.rules]
        self._plans: dict[_Desc, _Plan] = {}
        self._reaches: dict[_Desc, bool] = {}
        self._memo: dict[tuple[Any, ...], str | int] = {}
        self.originals: set[str] = set()
        self.labels: dict[str, str] = {}

    @classmethod
    def checked(
        cls,
        rules: Sequence[Mapping[str, Any]],
        key: bytes | None,
        contracts: Contracts,
        where: str = "record.pseudonymize",
        *,
        variable: str = KEY_VARIABLE,
        need_key: bool = True,
    ) -> Pseudonymizer:
        """The pseudonymizer of rules as read from emulator.yaml, checked against the contracts:
        a ConfigError names the rule (`where[i].field` or `.kind`) and says what to do. The key
        comes from the environment variable `variable`; `need_key` False checks the rules alone
        (a config that does not record now)."""
        fields = _fields(contracts)
        parsed = [_rule(raw, f"{where}[{i}]", fields) for i, raw in enumerate(rules)]
        if not need_key:
            return cls(parsed, key or b"unchecked rules: nothing recorded")
        if parsed and not key:
            _fail(
                where,
                f"pseudonyms need a key and none is set: set {variable} to a secret of at "
                f"least {MIN_KEY_BYTES} characters (`openssl rand -hex 32`), kept out of the "
                "repository; the same key gives the same pseudonyms in every run",
            )
        if parsed and key is not None and len(key) < MIN_KEY_BYTES:
            _fail(
                where,
                f"the key ({variable}) has {len(key)} bytes: use at least {MIN_KEY_BYTES} "
                "(`openssl rand -hex 32`), a short key can be guessed and the pseudonyms undone",
            )
        return cls(parsed, key or b"")

    # ---- messages ----

    def message(self, message: Message) -> None:
        """Rewrite in place every field a rule matches, at any depth: nested and repeated
        messages, map values, oneof members. Well-known types (Timestamp, Struct, Any, ...) are
        left alone; a rule that names a wrapper field (StringValue, ...) rewrites its value."""
        plan = self._plan(message.DESCRIPTOR)
        if plan is not _NOTHING:
            self._apply(message, plan)

    def _apply(self, message: Message, plan: _Plan) -> None:
        for rewrite in plan.rewrites:
            self._rewrite(message, rewrite)
        for name, shape in plan.nested:
            if shape == _SINGLE:
                if message.HasField(name):
                    sub = getattr(message, name)
                    self._apply(sub, self._plan(sub.DESCRIPTOR))
                continue
            container = getattr(message, name)
            for sub in container.values() if shape == _MAP else container:
                self._apply(sub, self._plan(sub.DESCRIPTOR))

    def _rewrite(self, message: Message, rewrite: _Rewrite) -> None:
        name, shape = rewrite.name, rewrite.shape
        if rewrite.wrapped:
            if shape == _SINGLE:
                wrappers = [getattr(message, name)] if message.HasField(name) else []
            else:
                container = getattr(message, name)
                wrappers = list(container.values() if shape == _MAP else container)
            for wrapper in wrappers:
                if wrapper.value:
                    wrapper.value = self._swap(rewrite, wrapper.value)
        elif shape == _SINGLE:
            value = getattr(message, name)
            if value:
                setattr(message, name, self._swap(rewrite, value))
        elif shape == _REPEATED:
            items = getattr(message, name)
            for i, value in enumerate(items):
                if value:
                    items[i] = self._swap(rewrite, value)
        else:
            entries = getattr(message, name)
            for map_key in list(entries):
                if entries[map_key]:
                    entries[map_key] = self._swap(rewrite, entries[map_key])

    def _swap(self, rewrite: _Rewrite, value: str | int | bytes) -> str | int | bytes:
        if isinstance(value, bytes):
            # Bytes that are not text hold nothing the leak check could search for.
            with contextlib.suppress(UnicodeDecodeError):
                self._remember(value.decode("utf-8"), rewrite.label)
            return b""
        return self._pseudonym(rewrite.kind, value, rewrite.label, rewrite.bounds, rewrite.role)

    # ---- plans ----

    def _plan(self, desc: _Desc) -> _Plan:
        plan = self._plans.get(desc)
        if plan is None:
            plan = self._plans[desc] = self._make_plan(desc)
        return plan

    def _make_plan(self, desc: _Desc) -> _Plan:
        if _left_alone(desc):
            return _NOTHING
        rewrites: list[_Rewrite] = []
        nested: list[tuple[str, int]] = []
        for field in desc.fields:
            target = _target(field)
            kind = self._kind(desc, field)
            if kind is not None and _fits(kind, target):
                role = forms.name_role(field.name) if kind == "name" else None
                bounds = _INT_BOUNDS.get(target.value.type)
                shape, wrapped = target.shape, target.wrapped
                rewrites.append(
                    _Rewrite(field.name, field.full_name, kind, shape, wrapped, bounds, role)
                )
            elif target.message is not None and self._holds_matches(target.message):
                nested.append((field.name, target.shape))
        if not rewrites and not nested:
            return _NOTHING
        return _Plan(tuple(rewrites), tuple(nested))

    def kind_of(self, name: str) -> str | None:
        """The kind of the first rule that matches `<message full name>.<field name>`."""
        return next((kind for pattern, kind in self._patterns if pattern.match(name)), None)

    def _kind(self, desc: _Desc, field: _Desc) -> str | None:
        name = f"{desc.full_name}.{field.name}"
        return next((kind for pattern, kind in self._patterns if pattern.match(name)), None)

    def _holds_matches(self, desc: _Desc) -> bool:
        """Whether a message of this type may hold a field to rewrite, at any depth (recursive
        types included): messages that cannot are never walked."""
        known = self._reaches.get(desc)
        if known is not None:
            return known
        seen: set[_Desc] = set()
        todo = [desc]
        found = False
        while todo and not found:
            current = todo.pop()
            if current in seen or _left_alone(current):
                continue
            seen.add(current)
            for field in current.fields:
                target = _target(field)
                kind = self._kind(current, field)
                found = found or (kind is not None and _fits(kind, target))
                if target.message is not None:
                    todo.append(target.message)
        self._reaches[desc] = found
        return found

    # ---- values ----

    def value(self, kind: str, original: str | int) -> str | int:
        """The pseudonym of one value (an integer only for `id`, as in an int64 field)."""
        if kind not in KINDS:
            raise ValueError(f"unknown pseudonym kind {kind!r}: one of {', '.join(KINDS)}")
        if isinstance(original, bool) or not isinstance(original, str | int):
            raise TypeError(f"a pseudonym is of a str or an int, not {type(original).__name__}")
        bounds = None
        if isinstance(original, int):
            if kind != "id":
                raise TypeError(f"a {kind} pseudonym is of a str; only id takes an int")
            bounds = _INT_BOUNDS[_T.TYPE_INT64 if original <= 2**63 - 1 else _T.TYPE_UINT64]
            if not bounds[0] <= original <= bounds[1]:
                raise ValueError(f"{original} fits no protobuf integer field")
        return self._pseudonym(kind, original, f"kind {kind}", bounds, None)

    def _pseudonym(
        self,
        kind: str,
        original: str | int,
        label: str,
        bounds: tuple[int, int] | None,
        role: str | None,
    ) -> str | int:
        if not original:
            return original
        self._remember(str(original), label)
        memo = (kind, original, bounds if isinstance(original, int) else role)
        found = self._memo.get(memo)
        if found is None:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()  # a cache, not a record: the values are the same made again
            found = self._memo[memo] = self._make(kind, original, bounds, role)
        return found

    def _remember(self, original: str, label: str) -> None:
        if original and original not in self.originals:
            self.originals.add(original)
            self.labels[original] = label

    def _make(
        self, kind: str, original: str | int, bounds: tuple[int, int] | None, role: str | None
    ) -> str | int:
        key, tweak = self._key, kind.encode() + b"\0"
        if isinstance(original, int):
            low, high = bounds or _INT_BOUNDS[_T.TYPE_INT64]
            return forms.integer(key, tweak, original, low, high)
        if kind == "redact":
            return REDACTED
        if kind == "email":
            return forms.email(key, tweak, original)
        if kind == "name":
            return forms.name(key, original, role)
        if kind == "phone":
            return forms.phone(key, tweak, original)
        return forms.identifier(key, tweak, original)  # id, or a uuid that is not one


_MEMO_ENTRIES = 100_000


# ---- descriptors ----


class _Target(NamedTuple):
    """Where a rule about a field finds its values."""

    shape: int  # _SINGLE, _REPEATED or _MAP (its values)
    value: _Desc  # the scalar field rewritten (the field, a map's value, a wrapper's value)
    wrapped: bool  # the value is a google.protobuf.*Value's
    message: _Desc  # the message type walked into instead (None for scalars and wrappers)


def _target(field: _Desc) -> _Target:
    shape = _REPEATED if field.is_repeated else _SINGLE
    value = field
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        shape, value = _MAP, entry.fields_by_name["value"]
    sub = value.message_type
    if sub is None:
        return _Target(shape, value, False, None)
    if sub.full_name in _WRAPPERS:
        return _Target(shape, sub.fields_by_name["value"], True, None)
    return _Target(shape, value, False, sub)


def _fits(kind: str, target: _Target) -> bool:
    return target.message is None and kind in _FITS.get(_family(target.value), ())


def _left_alone(desc: _Desc) -> bool:
    return bool(desc.file.name.startswith("google/protobuf/"))


def _family(field: _Desc) -> str:
    if field.type == _T.TYPE_STRING:
        return "string"
    if field.type == _T.TYPE_BYTES:
        return "bytes"
    return "integer" if field.type in _INT_BOUNDS else "other"


def _fields(contracts: Contracts) -> dict[str, _Desc]:
    """Every field a rule may name, by `<message full name>.<field name>`, in the order the
    files declare them: the fields of the contracts' messages, but not those of the well-known
    types, of maps' entries (a rule names the map field itself) or of the services the emulator
    serves itself (health, reflection)."""
    found: dict[str, _Desc] = {}

    def walk(desc: _Desc) -> None:
        if _left_alone(desc) or desc.GetOptions().map_entry:
            return
        for field in desc.fields:
            found[f"{desc.full_name}.{field.name}"] = field
        for nested in desc.nested_types:
            walk(nested)

    for name in contracts.file_protos:
        if name not in _BUILTIN_FILES:
            for desc in contracts.pool.FindFileByName(name).message_types_by_name.values():
                walk(desc)
    return found


_BUILTIN_FILES = {HEALTH_FILE, REFLECTION_V1_FILE, REFLECTION_V1ALPHA_FILE}

_RULE_KEYS = ("field", "kind")
_EXAMPLE = 'as {field: "*.email", kind: email}'


def _rule(raw: object, at: str, fields: Mapping[str, _Desc]) -> PseudonymRule:
    if not isinstance(raw, Mapping):
        _fail(at, f"expected a mapping of field and kind, {_EXAMPLE}, not {type(raw).__name__}")
    for name in raw:
        if name not in _RULE_KEYS:
            close = difflib.get_close_matches(str(name), _RULE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            _fail(f"{at}.{name}", f"unknown key{hint}: a rule has field and kind, {_EXAMPLE}")
    pattern, kind = raw.get("field"), raw.get("kind")
    if not isinstance(pattern, str) or not pattern.strip():
        _fail(
            f"{at}.field",
            'expected a pattern over <message full name>.<field name>, as "*.email" or '
            f'"acme.shop.v1.Customer.email", not {pattern!r}',
        )
    if kind is None:
        _fail(f"{at}.kind", f"missing: a rule needs a kind, one of {', '.join(KINDS)}")
    if not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        _fail(f"{at}.kind", f"unknown kind {kind!r}{hint}: one of {', '.join(KINDS)}")
    pattern = pattern.strip()
    compiled = re.compile(fnmatch.translate(pattern))
    matched = [field for name, field in fields.items() if compiled.match(name)]
    if not matched:
        _fail(
            f"{at}.field",
            f"{pattern!r} matches no field of any message in the contracts"
            f"{_suggest(pattern, fields)}; a pattern matches <message full name>.<field name>, "
            'with * for any part, as "*.email"',
        )
    misfits = [f for f in matched if not _fits(kind, _target(f))]
    if misfits:
        more = len(misfits) - 1
        others = f" (and {more} more field(s) it matches)" if more else ""
        fitting = [k for k in KINDS if _fits(k, _target(misfits[0]))]
        instead = (
            f", or choose a kind that fits it ({', '.join(fitting)})"
            if fitting
            else " (no kind fits it)"
        )
        _fail(
            f"{at}.kind",
            f"{kind} does not fit {misfits[0].full_name}, {_describe(misfits[0])}{others}: "
            f"{kind} fits {_FITS_TEXT[kind]}; narrow the pattern {pattern!r} to leave it out"
            f"{instead}",
        )
    return PseudonymRule(pattern, kind)


def _suggest(pattern: str, fields: Mapping[str, _Desc]) -> str:
    """Patterns that would match: the message part added, the field's name spelt right, or a
    close full name."""
    head, dot, last = pattern.rpartition(".")
    names = sorted({field.name for field in fields.values()})
    found = [f"*.{pattern}"] if not dot and pattern in names else []
    if any(field.containing_type.full_name == pattern for field in fields.values()):
        found.append(f"{pattern}.*")
    for close in difflib.get_close_matches(last, names, n=3, cutoff=0.6):
        candidate = f"{head}.{close}" if dot else f"*.{close}"
        compiled = re.compile(fnmatch.translate(candidate))
        if candidate != pattern and any(compiled.match(name) for name in fields):
            found.append(candidate)
    found += difflib.get_close_matches(pattern, list(fields), n=3, cutoff=0.75)
    found = list(dict.fromkeys(found))[:3]
    return f" (did you mean {' or '.join(map(repr, found))}?)" if found else ""


_TYPE_NAMES = {
    getattr(_T, name): name.removeprefix("TYPE_").lower()
    for name in dir(_T)
    if name.startswith("TYPE_")
}


def _describe(field: _Desc) -> str:
    target = _target(field)
    if target.message is not None:
        what = f"message {target.message.full_name}"
    elif target.value.enum_type is not None:
        what = f"enum {target.value.enum_type.full_name}"
    else:
        what = _TYPE_NAMES.get(target.value.type, "value")
        if target.wrapped:
            what = f"{target.value.containing_type.full_name} ({what})"
    if target.shape == _MAP:
        return f"a map of {what} values"
    if target.shape == _REPEATED:
        return f"a list of {what}"
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what}"


def _fail(key: str, problem: str) -> NoReturn:
    raise ConfigError(f"{key}: {problem}", key=key, problem=problem)

"""Conditions on request fields and headers: the `match:` of a stub, compiled against the contract.

    match:
      request:
        product_id: p1                      # a bare value: equals
        sku: {regex: "^SKU-"}               # operators: equals, contains, regex, glob, any_of,
        price.units: {gte: 10}              #   present, absent, gt, gte, lt, lte, len, not
        tags: {contains: [a, b]}
        labels.env: prod                    # a map field, then its key
      metadata: {x-tenant: acme}

Field paths take proto or JSON names, dotted (`price.units`) or nested (`price: {units: 10}`);
enums match by name or number, 64-bit integers as numbers or strings. Each condition is checked
once, at load, against the field it names: an unknown field, a value of the wrong type, an unknown
enum name or a bad regex is a `ConfigError` naming the key. A compiled condition answers the
request with None (it holds) or the reason it does not (`product_id: expected 'p1', got 'p2'`),
which near-miss reports show.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator.behavior.values import is_map

__all__ = [
    "OPERATORS",
    "Condition",
    "ConditionError",
    "enum_problem",
    "header_conditions",
    "request_conditions",
]

OPERATORS = frozenset(
    {
        "equals",
        "contains",
        "regex",
        "glob",
        "any_of",
        "present",
        "absent",
        "gt",
        "gte",
        "lt",
        "lte",
        "len",
        "not",
        "ignore_order",
    }
)
_ORDER = ("gt", "gte", "lt", "lte")
_MISSING = object()

_INTS = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)
_FLOATS = frozenset({FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT})


class ConditionError(ValueError):
    """A condition that cannot hold for this contract; `key` is where it was written."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


Getter = Callable[[Any], tuple[bool, Any]]  # message (or headers) → (present, value)
Test = Callable[[bool, Any], bool]


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled condition: `check(target)` is None when it holds, else why not.

    `equal_to` is (field path, value) for a plain equality on a singular scalar field: what a
    stub can be indexed by, so that a thousand stubs keyed by id cost one lookup per call."""

    path: str  # as reports show it: `product_id`, `price.units`, `header x-tenant`
    get: Getter
    test: Test
    expected: str  # `'p1'`, `a match for '^SKU-'`, `>= 10`
    show: Callable[[Any], str]
    equal_to: tuple[tuple[str, ...], Any] | None = None

    def holds(self, target: Any) -> bool:
        """`check(target) is None`, without the reason: what matching a call needs."""
        present, value = self.get(target)
        return bool(self.test(present, value))

    def check(self, target: Any) -> str | None:
        present, value = self.get(target)
        if self.test(present, value):
            return None
        got = self.show(value) if present else "nothing (not set)"
        return f"{self.path}: expected {self.expected}, got {got}"


# -- request fields ------------------------------------------------------------------------------


def request_conditions(desc: Any, spec: Mapping[str, Any], key: str) -> list[Condition]:
    """Conditions on a message of type `desc`; `key` names `spec` in errors (`...match.request`)."""
    if not isinstance(spec, Mapping):
        raise ConditionError(key, "expected a mapping of field paths to values or conditions")
    found: list[Condition] = []
    _fields(desc, spec, key, (), shown="", found=found)
    return found


def _fields(
    desc: Any,
    spec: Mapping[str, Any],
    key: str,
    steps: tuple[Step, ...],
    *,
    shown: str,
    found: list[Condition],
) -> None:
    for name, want in spec.items():
        here = f"{key}.{name}"
        owner, path, label = desc, list(steps), shown
        field: Any = None
        map_value = False
        parts = str(name).split(".")
        for index, part in enumerate(parts):
            if field is not None:  # the field before this part must hold a message, or a map
                if is_map(field):
                    path += [Step(field), Step(field, map_key=_map_key(field, part, here))]
                    label += f"[{part!r}]"
                    if index != len(parts) - 1:
                        raise ConditionError(here, f"{label} is a map value: end the path there")
                    field, map_value = _MapValue(field), True
                    break
                if field.message_type is None or field.is_repeated:
                    what = "a list" if field.is_repeated else "not a message"
                    raise ConditionError(
                        here, f"{label} is {what}: {part!r} cannot follow it in a field path"
                    )
                path.append(Step(field))
                owner = field.message_type
            field = _field(owner, part, here, label)
            label = f"{label}.{field.name}" if label else field.name
        if map_value:
            _terminal(field, want, here, tuple(path), label=label, found=found)
        elif (
            isinstance(want, Mapping)
            and field.message_type is not None
            and not field.is_repeated
            and not set(want) <= OPERATORS
        ):
            # Sub-fields of a message field, nested the same way as dotted paths.
            _fields(field.message_type, want, here, (*path, Step(field)), shown=label, found=found)
        else:
            _terminal(field, want, here, (*path, Step(field)), label=label, found=found)


def _field(desc: Any, part: str, key: str, label: str) -> Any:
    field = desc.fields_by_name.get(part) or desc.fields_by_camelcase_name.get(part)
    if field is None:
        import difflib

        names = [f.name for f in desc.fields]
        close = difflib.get_close_matches(part, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        where = f" (in {label})" if label else ""
        fields = ", ".join(names[:12]) or "none"
        raise ConditionError(
            key, f"{desc.full_name} has no field {part!r}{where}{hint} (its fields: {fields})"
        )
    return field


class _Like:
    """What the operators need of a field, for values that are not fields themselves: a map's
    value (`labels['env']`), a list's element, a header."""

    def __init__(self, field: Any, *, presence: bool) -> None:
        self.name = field.name
        self.cpp_type = field.cpp_type
        self.type = field.type
        self.enum_type = field.enum_type
        self.message_type = field.message_type
        self.is_repeated = False
        self.has_presence = presence


def _MapValue(map_field: Any) -> _Like:
    return _Like(map_field.message_type.fields_by_name["value"], presence=True)


def _map_key(field: Any, part: str, key: str) -> Any:
    key_field = field.message_type.fields_by_name["key"]
    if key_field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return part
    if key_field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        if part not in ("true", "false"):
            raise ConditionError(key, f"map keys of {field.name} are true or false, not {part!r}")
        return part == "true"
    try:
        return int(part)
    except ValueError:
        raise ConditionError(key, f"map keys of {field.name} are integers, not {part!r}") from None


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a field path: read `field`, or look `map_key` up in the map just read."""

    field: Any
    map_key: Any = _MISSING


def _getter(steps: tuple[Step, ...]) -> Getter:
    last = len(steps) - 1
    # What the path reads when a message or map key on the way is missing: the value protobuf
    # reads there (a scalar's default, an empty list), as for an unset scalar, so the operators
    # always get a value of the field's type (a regex never sees None).
    empty = _empty(steps[-1])

    def get(message: Any) -> tuple[bool, Any]:
        value = message
        for index, step in enumerate(steps):
            if step.map_key is not _MISSING:
                if step.map_key not in value:
                    return False, empty
                value = value[step.map_key]
                continue
            field = step.field
            name = field.name
            if field.is_repeated:  # a list or a map
                value = getattr(value, name)
                if index == last:
                    return len(value) > 0, value
                continue
            if field.message_type is not None:
                if not value.HasField(name):
                    return False, empty
                value = getattr(value, name)
                continue
            holder, value = value, getattr(value, name)
            # An unset proto3 scalar reads as its default: `equals: 0` holds for it.
            if field.has_presence:
                return holder.HasField(name), value
            return value != field.default_value, value
        return True, value

    return get


def _empty(step: Step) -> Any:
    field = step.field
    if step.map_key is not _MISSING:
        field = field.message_type.fields_by_name["value"]
    elif field.is_repeated:
        return ()
    return None if field.message_type is not None else field.default_value


def _terminal(
    field: Any,
    want: Any,
    key: str,
    steps: tuple[Step, ...],
    *,
    label: str,
    found: list[Condition],
) -> None:
    operators = isinstance(want, Mapping) and bool(want) and set(want) <= OPERATORS
    if not operators and isinstance(want, Mapping) and is_map(field):
        for map_key, sub in want.items():  # `labels: {env: prod}`: each key must hold
            at = f"{key}.{map_key}"
            lookup = Step(field, map_key=_map_key(field, str(map_key), at))
            shown = f"{label}[{map_key!r}]"
            _terminal(_MapValue(field), sub, at, (*steps, lookup), label=shown, found=found)
        return
    ops: Mapping[str, Any] = want if operators else {"equals": want}
    show = _shower(field)
    try:
        test, expected = _operators(field, ops, key, show)
    except ConditionError as exc:
        if operators or exc.key != f"{key}.equals":
            raise
        raise ConditionError(key, exc.problem) from None  # a bare value: no `equals` was written
    equal = None
    plain = all(s.map_key is _MISSING for s in steps)
    if plain and set(ops) == {"equals"} and _singular_scalar(field):
        names = tuple(s.field.name for s in steps)
        equal = (names, _normal(field, ops["equals"], f"{key}.equals"))
    found.append(Condition(label, _getter(steps), test, expected, show, equal))


def _singular_scalar(field: Any) -> bool:
    return not field.is_repeated and field.message_type is None


def _operators(field: Any, ops: Mapping[str, Any], key: str, show: Any) -> tuple[Test, str]:
    tests: list[Test] = []
    said: list[str] = []
    ignore_order = bool(ops.get("ignore_order", False))
    for op, arg in ops.items():
        at = f"{key}.{op}"
        if op == "ignore_order":
            if not isinstance(arg, bool):
                raise ConditionError(at, "is true or false")
            continue
        test, text = _operator(field, op, arg, at, show=show, ignore_order=ignore_order)
        tests.append(test)
        said.append(text)
    if not tests:
        raise ConditionError(key, "give an operator as well: equals, contains, regex, ...")
    if len(tests) == 1:
        return tests[0], said[0]

    def every(present: bool, value: Any) -> bool:
        return all(t(present, value) for t in tests)

    return every, " and ".join(said)


def _operator(
    field: Any, op: str, arg: Any, key: str, *, show: Any, ignore_order: bool
) -> tuple[Test, str]:
    repeated = field.is_repeated
    if op in ("present", "absent"):
        if not isinstance(arg, bool):
            raise ConditionError(key, "is true or false")
        wanted = arg if op == "present" else not arg
        return (lambda present, value: present is wanted), ("set" if wanted else "not set")
    if op == "not":
        if not isinstance(arg, Mapping):
            arg = {"equals": arg}
        inner, text = _operators(field, arg, key, show)
        return (lambda present, value: not inner(present, value)), f"not {text}"
    if op == "len":
        if field.cpp_type != FieldDescriptor.CPPTYPE_STRING and not repeated:
            raise ConditionError(
                key, f"len applies to strings, bytes, lists and maps, not {_kind(field)}"
            )
        if isinstance(arg, Mapping):
            checks = dict(arg)
            for k, v in checks.items():
                if k not in ("equals", *_ORDER) or isinstance(v, bool) or not isinstance(v, int):
                    raise ConditionError(
                        f"{key}.{k}", "len takes a number, or equals/gt/gte/lt/lte of one"
                    )
        elif isinstance(arg, int) and not isinstance(arg, bool):
            checks = {"equals": arg}
        else:
            raise ConditionError(key, "len takes a number, or equals/gt/gte/lt/lte of one")
        compare = _comparisons(checks)
        text = " and ".join(f"length {_SYMBOL[k]} {v}" for k, v in checks.items())
        return (lambda present, value: compare(len(value) if present else 0)), text
    if repeated:
        return _list_operator(field, op, arg, key, show=show, ignore_order=ignore_order)
    if op == "equals":
        want = _normal(field, arg, key)
        return (lambda present, value: value == want), show(want)
    if op == "any_of":
        if not isinstance(arg, list | tuple) or not arg:
            raise ConditionError(key, "any_of takes a list of values")
        choices = [_normal(field, a, f"{key}[{i}]") for i, a in enumerate(arg)]
        return (lambda present, value: value in choices), "one of " + ", ".join(map(show, choices))
    if op in _ORDER:
        if field.cpp_type not in _INTS | _FLOATS:
            raise ConditionError(key, f"{op} compares numbers; {field.name} is {_kind(field)}")
        bound = _normal(field, arg, key)
        compare = _comparisons({op: bound})
        return (lambda present, value: compare(value)), f"{_SYMBOL[op]} {bound}"
    if op in ("contains", "regex", "glob"):
        if (
            field.cpp_type != FieldDescriptor.CPPTYPE_STRING
            or field.type == FieldDescriptor.TYPE_BYTES
        ):
            raise ConditionError(
                key,
                f"{op} applies to strings (and contains to lists); {field.name} is {_kind(field)}",
            )
        if not isinstance(arg, str):
            raise ConditionError(key, f"{op} takes a string, got {type(arg).__name__}")
        if op == "contains":
            return (lambda present, value: arg in value), f"text containing {arg!r}"
        if op == "glob":
            return (
                lambda present, value: fnmatch.fnmatchcase(value, arg)
            ), f"a match for glob {arg!r}"
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            raise ConditionError(key, f"{arg!r} is not a valid regular expression: {exc}") from None
        return (lambda present, value: pattern.search(value) is not None), f"a match for {arg!r}"
    raise ConditionError(key, f"unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}")


def _list_operator(
    field: Any, op: str, arg: Any, key: str, *, show: Any, ignore_order: bool
) -> tuple[Test, str]:
    item = _Like(field, presence=False)
    if op == "equals":
        if not isinstance(arg, list | tuple):
            raise ConditionError(key, f"{field.name} is a list: give a list, or use contains")
        want = [_normal(item, a, f"{key}[{i}]") for i, a in enumerate(arg)]
        if ignore_order:
            return (
                lambda present, value: _same_items(list(value), want)
            ), f"{show_list(want)} in any order"
        return (lambda present, value: list(value) == want), show_list(want)
    if op == "contains":
        items = arg if isinstance(arg, list | tuple) else [arg]
        want = [_normal(item, a, f"{key}[{i}]") for i, a in enumerate(items)]
        return (
            lambda present, value: all(w in list(value) for w in want)
        ), f"a list containing {show_list(want)}"
    if op == "any_of":
        if not isinstance(arg, list | tuple) or not arg:
            raise ConditionError(key, "any_of takes a list of values")
        want = [_normal(item, a, f"{key}[{i}]") for i, a in enumerate(arg)]
        return (
            lambda present, value: any(w in list(value) for w in want)
        ), f"a list holding any of {show_list(want)}"
    raise ConditionError(
        key, f"{field.name} is a list: use equals, contains, any_of, len, present or absent"
    )


def _same_items(got: list[Any], want: list[Any]) -> bool:
    if len(got) != len(want):
        return False
    rest = list(want)
    for value in got:
        if value not in rest:
            return False
        rest.remove(value)
    return True


def show_list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(map(repr, values)) + "]"


_SYMBOL = {"equals": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _comparisons(checks: Mapping[str, Any]) -> Callable[[Any], bool]:
    ops = [(k, v) for k, v in checks.items()]

    def compare(value: Any) -> bool:
        for k, v in ops:
            if k == "equals" and value != v:
                return False
            if k == "gt" and not value > v:
                return False
            if k == "gte" and not value >= v:
                return False
            if k == "lt" and not value < v:
                return False
            if k == "lte" and not value <= v:
                return False
        return True

    return compare


def _kind(field: Any) -> str:
    if field.is_repeated:
        return "a list"
    if field.message_type is not None:
        return f"a message ({field.message_type.full_name})"
    if field.enum_type is not None:
        return f"an enum ({field.enum_type.full_name})"
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return "bytes" if field.type == FieldDescriptor.TYPE_BYTES else "a string"
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return "a bool"
    return "a number"


def _normal(field: Any, value: Any, key: str) -> Any:
    """`value` as the field holds it (enum names → numbers, "64-bit" strings → ints), or
    ConditionError when it can never be equal to a value of the field."""
    cpp = field.cpp_type
    if field.message_type is not None:
        if isinstance(value, Message):
            return value
        raise ConditionError(
            key,
            f"{field.name} is {_kind(field)}: match its fields (`{field.name}.field: value`) "
            "or use present/absent",
        )
    if field.enum_type is not None:
        enum = field.enum_type
        if isinstance(value, str):
            number = enum.values_by_name.get(value)
            if number is None:
                raise ConditionError(key, enum_problem(enum, value))
            return number.number
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConditionError(key, f"{field.name} is {_kind(field)}: give a value name or number")
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise ConditionError(key, f"{field.name} is a bool: give true or false, not {value!r}")
    if cpp in _INTS:
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConditionError(key, f"{field.name} is an integer: {value!r} can never equal it")
    if cpp in _FLOATS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConditionError(key, f"{field.name} is a number: {value!r} can never equal it")
    if field.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
        raise ConditionError(key, f"{field.name} is bytes: give a string")
    if isinstance(value, str):
        return value
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    raise ConditionError(
        key,
        f"{field.name} is a string: {text} is {type(value).__name__}; write it in quotes "
        f'("{text}") to match the text',
    )


def enum_problem(enum: Any, value: str) -> str:
    """`value` is no name of `enum`: the closest names and every name, to pick from."""
    import difflib

    names = [v.name for v in enum.values]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{value!r} is not a value of {enum.full_name}{hint}: use one of {', '.join(names)}"


def _shower(field: Any) -> Callable[[Any], str]:
    enum = field.enum_type
    if enum is not None:

        def show_enum(value: Any) -> str:
            if isinstance(value, int):
                found = enum.values_by_number.get(value)
                return repr(found.name) if found is not None else repr(value)
            return show_list([show_enum(v).strip("'") for v in value])

        return show_enum

    def show(value: Any) -> str:
        if isinstance(value, _Values):
            return " and ".join(map(repr, value)) if len(value) > 1 else repr(value[0])
        if isinstance(value, Message):
            from emulator.journal.matching import message_text

            return message_text(value, limit=80)
        if hasattr(value, "__len__") and not isinstance(value, str | bytes):
            try:
                return show_list(list(value)) if not hasattr(value, "items") else repr(dict(value))
            except Exception:
                return "<unprintable>"
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    return show


# -- headers ------------------------------------------------------------------------------------


def header_conditions(spec: Mapping[str, Any], key: str) -> list[Condition]:
    """Conditions on request headers (a call's `metadata` pairs); a header sent more than once
    holds when any of its values does. Binary (`-bin`) headers compare as bytes."""
    if not isinstance(spec, Mapping):
        raise ConditionError(key, "expected a mapping of header names to values or conditions")
    found = []
    for name, want in spec.items():
        header = str(name).lower()
        at = f"{key}.{name}"
        field = _Header(header)
        operators = isinstance(want, Mapping) and bool(want) and set(want) <= OPERATORS
        ops: dict[str, Any] = dict(want) if operators else {"equals": want}
        if isinstance(ops.get("equals"), int | float) and not isinstance(ops["equals"], bool):
            ops["equals"] = str(ops["equals"])  # YAML reads `x-version: 2` as a number
        show = _shower(field)
        test, expected = _operators(field, ops, at, show)
        found.append(
            Condition(
                f"header {header}",
                _header_getter(header),
                _any_value(test, field.empty),
                expected,
                show,
            )
        )
    return found


class _Header(_Like):
    def __init__(self, name: str) -> None:
        self.name = name
        self.cpp_type = FieldDescriptor.CPPTYPE_STRING
        binary = name.endswith("-bin")
        self.type = FieldDescriptor.TYPE_BYTES if binary else FieldDescriptor.TYPE_STRING
        self.enum_type = None
        self.message_type = None
        self.is_repeated = False
        self.has_presence = True
        self.empty: str | bytes = b"" if binary else ""


class _Values(tuple[Any, ...]):
    """Every value of one header; shown as the first (what a client usually sends)."""

    __slots__ = ()


def _header_getter(header: str) -> Getter:
    def get(metadata: Any) -> tuple[bool, Any]:
        values = _Values(v for k, v in metadata if k == header)
        return bool(values), values

    return get


def _any_value(test: Test, empty: str | bytes) -> Test:
    def holds(present: bool, values: Any) -> bool:
        if not present:  # a missing header reads as empty (never None: regex, len need text)
            return test(False, empty)
        return any(test(True, v) for v in values)

    return holds

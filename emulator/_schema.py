"""Checking plain data (parsed YAML, flags, keyword arguments) against config dataclasses.

Types understood: str, int, float, bool, `Duration`, `ByteSize`, Literal[...], tuple[X, ...],
dict[str, X], unions (`X | None`, `tuple[str, ...] | dict[str, ...]`), Any, and nested
dataclasses. Every error names the dotted key and, for a file, its line.

`settings(Config)` lists the keys one text value can set (scalars and lists of scalars): the
environment variables and the command-line flags are both derived from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from emulator._yaml import SECRET_KEYED
from emulator.errors import ConfigError

__all__ = [
    "SECRET_KEYED",
    "ByteSize",
    "Duration",
    "Setting",
    "about",
    "build",
    "invalid",
    "parse_duration",
    "parse_integer",
    "parse_size",
    "settings",
    "where",
]

# A unit, or none for seconds (as in YAML, so `--grace-period 5` reads as the file would).
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
# ASCII digits only: str.isdigit() is true for '²' and int() takes '٣' or '1_000'.
_INTEGER = re.compile(r"^\s*-?[0-9]+\s*$", re.ASCII)


def parse_integer(value: str) -> int:
    """An integer written in ASCII digits (an optional minus sign, spaces around)."""
    if not _INTEGER.match(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def parse_duration(value: object) -> float:
    """Seconds from `150ms`, `5s`, `1m`, `2h`, `30d` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 150ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 150ms, 5s or 1m, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
        seconds = (
            number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[unit or "s"]
        )
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {value!r}")
    return seconds


Duration = typing.Annotated[float, "duration"]


def parse_size(value: object) -> int:
    """Bytes from `64MiB`, `512KiB`, `1GB`, `100B` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB, 512KiB or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(
                f"expected a size such as 64MiB, 512KiB or a number of bytes, got {value!r}"
            )
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 1:
        raise ValueError(f"a size must be at least 1 byte, got {value!r}")
    return size


ByteSize = typing.Annotated[int, "bytes"]


def invalid(location: str, key: str, problem: str) -> ConfigError:
    """`file:line: key: problem`, with the key and the problem kept for callers."""
    return ConfigError(f"{location}: {key}: {problem}", key=key, problem=problem)


def where(source: str, lines: Mapping[str, int], key: str) -> str:
    probe = key
    while probe:
        if probe in lines:
            return f"{source}:{lines[probe]}"
        probe = probe.rpartition(".")[0]
    return source


@functools.lru_cache(maxsize=128)  # the schema's own dataclasses: a few dozen
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def build(cls: type[Any], data: Any, prefix: str, source: str, lines: Mapping[str, int]) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where(source, lines, prefix)}: {prefix or 'config'}: expected a mapping of keys, "
            f"got {type(data).__name__}"
        )
    hints = _hints(typing.cast(Any, cls))
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where(source, lines, dotted)}: unknown key {dotted!r}{hint}; "
                f"allowed here: {', '.join(sorted(known))}"
            )
        kwargs[key] = _convert(hints[key], value, dotted, source, lines)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        at = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{where(source, lines, prefix)}: missing required key {at + missing[0]!r}"
        )
    return cls(**kwargs)


def _one_of(allowed: tuple[Any, ...], value: Any, here: str, key: str) -> Any:
    if value is False and "off" in allowed:
        # YAML 1.1 reads a bare `off` as false: `requests: off` means the choice it spells.
        return "off"
    if value in allowed:
        return value
    # Names are case-insensitive (`GZIP`, `Seeded`), as they are where code takes them.
    folded = {a.lower(): a for a in allowed if isinstance(a, str)}
    if isinstance(value, str) and value.lower() in folded:
        return folded[value.lower()]
    raise invalid(here, key, f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")


def _convert(hint: Any, value: Any, key: str, source: str, lines: Mapping[str, int]) -> Any:
    here = where(source, lines, key)
    if dataclasses.is_dataclass(hint):
        cls = typing.cast(type[Any], hint)
        return value if isinstance(value, cls) else build(cls, value, key, source, lines)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        parse = parse_size if typing.get_args(hint)[1] == "bytes" else parse_duration
        try:
            return parse(value)
        except ValueError as exc:
            raise invalid(here, key, f"{exc}") from None
    if origin is Literal:
        return _one_of(typing.get_args(hint), value, here, key)
    if origin is tuple:
        (item_type, _) = typing.get_args(hint)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise invalid(here, key, f"expected a list, got {type(value).__name__}")
        return tuple(
            _convert(item_type, v, f"{key}[{i}]", source, lines) for i, v in enumerate(items)
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise invalid(here, key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and _INTEGER.match(value):
                return int(value)
            raise invalid(here, key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(here, key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise invalid(here, key, f"expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise invalid(here, key, f"expected a string, got {type(value).__name__}")
        return str(value)
    if origin is dict:
        _, value_type = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise invalid(here, key, f"expected a mapping, got {type(value).__name__}")
        # Keys of a secret mapping (static tokens) are secrets: messages name them by position.
        secret = key in SECRET_KEYED
        return {
            str(k): _convert(
                value_type,
                v,
                f"{key}[#{i + 1}]" if secret else f"{key}.{k}",
                source,
                lines if not secret else {},
            )
            for i, (k, v) in enumerate(value.items())
        }
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, key, source, lines)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    return value


_SCALARS = (str, int, float, bool)


@dataclasses.dataclass(frozen=True)
class Setting:
    """A config key that one text value (an `EMULATOR_*` variable, a flag) sets: a scalar, or a
    list of scalars. Maps and lists of objects (auth.tokens, faults) have none."""

    key: str  # dotted, as in emulator.yaml: `server.grace_period`
    hint: Any  # the field's type, `X | None` taken as X
    field: dataclasses.Field[Any]

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.hint) is tuple

    @property
    def item(self) -> Any:
        """The type of one value: the list's items for a list."""
        return typing.get_args(self.hint)[0] if self.is_list else self.hint

    @property
    def help(self) -> str:
        """The field's `metadata["help"]`, or "" when it has none."""
        return str(self.field.metadata.get("help", ""))

    @property
    def default(self) -> Any:
        if self.field.default is not dataclasses.MISSING:
            return self.field.default
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return None

    def from_text(self, text: str | list[str]) -> Any:
        """A value for `Config.with_overrides`: true/false and numbers read from their text,
        everything else left for the schema to parse (durations, sizes, integers)."""
        if isinstance(text, list):
            return [self._scalar(part) for part in text]
        return self._scalar(text)

    def _scalar(self, text: str) -> Any:
        if self.item is bool and text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        if self.item is float:
            try:
                return float(text)
            except ValueError:
                return text  # refused by `check`, with the schema's message
        return text

    def check(self, value: Any) -> None:
        """Raise the schema's ConfigError (its `key` and `problem` set) for a value of the wrong
        type; ranges and settings that go together are checked with the whole config."""
        _convert(self.hint, value, self.key, self.key, {})


def about(error_key: str | None, key: str) -> bool:
    """Whether an error on `error_key` (`protos[0]`, `auth.jwt.keys`) is about `key`'s value."""
    if error_key is None:
        return False
    return error_key == key or error_key.startswith((f"{key}[", f"{key}."))


@functools.lru_cache(maxsize=8)  # per config dataclass: Config, and a test's own
def settings(cls: Any) -> tuple[Setting, ...]:
    """Every key of `cls` (a config dataclass) and its sections that text can set, in order."""
    return tuple(_settings(cls, ""))


def _settings(cls: Any, prefix: str) -> Iterator[Setting]:
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = _hints(cls)[field.name]
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint) and len(options) == 1:
            hint = options[0]  # `X | None`: text sets X
        if dataclasses.is_dataclass(hint):
            yield from _settings(hint, key + ".")
        elif _scalar(hint) or (
            typing.get_origin(hint) is tuple and _text_item(typing.get_args(hint)[0])
        ):
            yield Setting(key=key, hint=hint, field=field)


def _text_item(hint: Any) -> bool:
    """A list item text can give: a scalar, or a union that takes a string (`stubs`: paths on
    the command line, paths or inline stubs in a file)."""
    return _scalar(hint) or (isinstance(hint, types.UnionType) and str in typing.get_args(hint))


def _scalar(hint: Any) -> bool:
    return hint in _SCALARS or typing.get_origin(hint) in (typing.Annotated, Literal)

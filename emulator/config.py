"""One validated configuration, from emulator.yaml, command-line flags or keyword arguments.

Every source becomes a plain mapping first; `Config.from_mapping` then checks it against the
dataclasses below, so the file, the flags and `Emulator(**kwargs)` share one set of rules and one
set of messages. Unknown keys and wrong types are errors that name the key (and, for a file, the
line). Later features add their own sections as further dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from emulator.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "Config",
    "DefaultsConfig",
    "JournalConfig",
    "ServerConfig",
    "load_config_file",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from `150ms`, `5s`, `1m` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 150ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 150ms, 5s or 1m, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
        seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


Duration = typing.Annotated[float, "duration"]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    grace_period: Duration = 5.0  # how long SIGTERM waits for in-flight calls
    workers: int = 16  # threads for sync behaviour methods


@dataclass(frozen=True, kw_only=True)
class DefaultsConfig:
    stream_messages: int = 3  # messages in a default server stream


@dataclass(frozen=True, kw_only=True)
class JournalConfig:
    limit: int = 10_000  # calls kept; the oldest are dropped
    redact_headers: tuple[str, ...] = ()  # secret headers besides authorization, cookie, ...


@dataclass(frozen=True, kw_only=True)
class Config:
    protos: tuple[str, ...] = ()
    import_paths: tuple[str, ...] = ()
    behaviors: tuple[str, ...] = ()
    seed: int = 0
    server: ServerConfig = field(default_factory=ServerConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "config",
        lines: Mapping[str, int] | None = None,
    ) -> Config:
        """Validate `data` (nested mappings keyed as in emulator.yaml)."""
        result: Config = _build(cls, data, "", source, lines or {})
        _check_values(result, source, lines or {})
        return result

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "flags") -> Config:
        """A copy with dotted keys (`server.port`) replaced; used for CLI flags over the file."""
        data = dataclasses.asdict(self)
        for dotted, value in overrides.items():
            *parents, last = dotted.split(".")
            target = data
            for part in parents:
                target = target[part]
            target[last] = value
        return Config.from_mapping(data, source=source)


def load_config_file(path: str | Path) -> Config:
    """Read and validate emulator.yaml; relative paths in it are relative to the file."""
    import yaml  # only a config file needs it: keeps start-up without one fast

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot be read: {exc.strerror}") from None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if node is None:
        return Config()
    lines: dict[str, int] = {}
    data = _plain(node, "", lines, str(path))
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: the file must be a mapping of keys such as protos, seed, server"
        )
    base = path.parent
    for key in ("protos", "import_paths", "behaviors"):
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            data[key] = [str(base / v) if isinstance(v, str) else v for v in value]
    return Config.from_mapping(data, source=str(path), lines=lines)


def _plain(node: yaml.Node, path: str, lines: dict[str, int], source: str) -> Any:
    """YAML node → Python data, remembering the line of every key for messages."""
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(yaml.safe_load(yaml.serialize(key_node)))
            child = f"{path}.{key}" if path else key
            if key in out:
                raise ConfigError(
                    f"{source}:{key_node.start_mark.line + 1}: {child}: duplicate key"
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, child, lines, source)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines, source) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _where(source: str, lines: Mapping[str, int], key: str) -> str:
    probe = key
    while probe:
        if probe in lines:
            return f"{source}:{lines[probe]}"
        probe = probe.rpartition(".")[0]
    return source


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _build(cls: type[Any], data: Any, prefix: str, source: str, lines: Mapping[str, int]) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{_where(source, lines, prefix)}: {prefix or 'config'}: expected a mapping of keys, "
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
                f"{_where(source, lines, dotted)}: unknown key {dotted!r}{hint}; "
                f"allowed here: {', '.join(sorted(known))}"
            )
        kwargs[key] = _convert(hints[key], value, dotted, source, lines)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, key: str, source: str, lines: Mapping[str, int]) -> Any:
    where = _where(source, lines, key)
    if dataclasses.is_dataclass(hint):
        cls = typing.cast(type[Any], hint)
        return value if isinstance(value, cls) else _build(cls, value, key, source, lines)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {key}: expected one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return value
    if origin is tuple:
        (item_type, _) = typing.get_args(hint)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where}: {key}: expected a list, got {type(value).__name__}")
        return tuple(
            _convert(item_type, v, f"{key}[{i}]", source, lines) for i, v in enumerate(items)
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected a string, got {type(value).__name__}")
        return str(value)
    if isinstance(hint, types.UnionType):
        raise NotImplementedError(f"config type {hint} for {key}")  # pragma: no cover
    return value


def _check_values(config: Config, source: str, lines: Mapping[str, int]) -> None:
    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(f"{_where(source, lines, key)}: {key}: {message}")

    if not 0 <= config.server.port <= 65535:
        raise bad("server.port", f"must be 0 (any free port) to 65535, got {config.server.port}")
    if config.server.workers < 1:
        raise bad("server.workers", f"must be at least 1, got {config.server.workers}")
    if not 0 <= config.defaults.stream_messages <= 10_000:
        raise bad(
            "defaults.stream_messages", f"must be 0 to 10000, got {config.defaults.stream_messages}"
        )
    if config.journal.limit < 1:
        raise bad("journal.limit", f"must be at least 1, got {config.journal.limit}")
    if not config.server.host:
        raise bad("server.host", "must not be empty")

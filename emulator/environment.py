"""Settings from environment variables, mapped 1:1 onto config keys, for containers and CI.

`server.port` is `EMULATOR_SERVER_PORT`, `defaults.stream_messages` is
`EMULATOR_DEFAULTS_STREAM_MESSAGES`, and so on for every scalar or list key (lists are
comma-separated). Short forms: `EMULATOR_PORT`, `EMULATOR_HOST`, `EMULATOR_GRACE_PERIOD`.
`EMULATOR_CONFIG` names the config file. The order is: file, then environment, then flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from emulator.config import Config
from emulator.errors import ConfigError

__all__ = ["CONFIG_VARIABLE", "env_overrides", "variables_for"]

log = logging.getLogger("emulator")

PREFIX = "EMULATOR_"
CONFIG_VARIABLE = "EMULATOR_CONFIG"
_ALIASES = {
    "EMULATOR_PORT": "server.port",
    "EMULATOR_HOST": "server.host",
    "EMULATOR_GRACE_PERIOD": "server.grace_period",
}
_NOT_SETTINGS = {CONFIG_VARIABLE}


@functools.cache
def _variables() -> dict[str, tuple[str, str]]:
    """Variable name → (dotted key, kind: "list", "bool" or "text")."""
    kinds = dict(_leaves(Config, ""))
    found = {name: (key, kinds[key]) for name, key in _ALIASES.items()}
    for key, kind in kinds.items():
        found[PREFIX + key.replace(".", "_").upper()] = (key, kind)
    return found


def _leaves(cls: Any, prefix: str) -> Iterator[tuple[str, str]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint) and len(options) == 1:
            hint = options[0]  # `X | None`: the variable sets X
        if dataclasses.is_dataclass(hint):
            yield from _leaves(hint, key + ".")
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            if item is str:
                yield key, "list"
        elif hint is bool:
            yield key, "bool"
        elif hint in (str, int, float) or typing.get_origin(hint) in (
            typing.Annotated,
            typing.Literal,
        ):
            yield key, "text"


def _in_a_section(name: str, known: Mapping[str, tuple[str, str]]) -> bool:
    """Whether `name` (an unknown variable) starts like the variables of a config section."""
    rest = name[len(PREFIX) :]
    sections = {key.split(".")[0].upper() for key, _ in known.values()}
    sections |= {"AUTH", "TLS", "AUTHORIZATION", "FAULTS", "RATE_LIMITS", "MAX_DURATION"}
    return any(rest == s or rest.startswith(s + "_") for s in sections)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Dotted config keys and values from `EMULATOR_*` variables (unknown ones are logged)."""
    known = _variables()
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(PREFIX) or name in _NOT_SETTINGS:
            continue
        entry = known.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            if _in_a_section(name, known):
                # A misspelt EMULATOR_AUTH_... would leave the emulator open: never ignore one
                # that names a section of the configuration.
                raise ConfigError(
                    f"environment variable {name}: not a setting{hint}; maps and lists of "
                    "objects (auth.tokens, auth.scopes, faults, max_duration, ...) have no "
                    "variable: set them in emulator.yaml"
                )
            log.warning("ignoring environment variable %s: not a setting%s", name, hint)
            continue
        key, kind = entry
        if kind == "list":
            overrides[key] = [part.strip() for part in value.split(",") if part.strip()]
        elif kind == "bool" and value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
        else:
            overrides[key] = value
        try:  # checked one by one, so the message names the variable
            Config().with_overrides({key: overrides[key]}, source=name)
        except ConfigError as exc:
            if exc.key is not None and not _about(exc.key, key):
                # About another key (auth.jwt.issuer needs auth.jwt.keys, which the file or a
                # flag may give): judged once everything is merged, see `variables_for`.
                continue
            raise ConfigError(
                f"environment variable {name} ({key}): {exc.problem}", key=key, problem=exc.problem
            ) from None
    return overrides


def _about(error_key: str, key: str) -> bool:
    return error_key == key or error_key.startswith((f"{key}[", f"{key}."))


def variables_for(environ: Mapping[str, str], keys: Iterable[str]) -> list[str]:
    """The `EMULATOR_*` variables in `environ` that set any of `keys`, for messages."""
    known, wanted = _variables(), set(keys)
    return sorted(name for name in environ if name in known and known[name][0] in wanted)

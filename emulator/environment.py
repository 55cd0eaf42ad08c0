"""Settings from environment variables, mapped 1:1 onto config keys, for containers and CI.

`server.port` is `EMULATOR_SERVER_PORT`, `defaults.stream_messages` is
`EMULATOR_DEFAULTS_STREAM_MESSAGES`, and so on for every scalar or list key (lists are
comma-separated). Short forms: `EMULATOR_PORT`, `EMULATOR_HOST`, `EMULATOR_GRACE_PERIOD`.
`EMULATOR_CONFIG` names the config file. The order is: file, then environment, then flags. The
keys come from `_schema.settings`, as the command-line flags do (`emulator._flags`).
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from emulator._schema import Setting, settings
from emulator.config import Config
from emulator.errors import ConfigError

__all__ = ["CONFIG_VARIABLE", "env_overrides", "variable", "variables_for"]

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
def _variables() -> dict[str, Setting]:
    """Variable name → the setting it sets."""
    by_key = {setting.key: setting for setting in settings(Config)}
    found = {name: by_key[key] for name, key in _ALIASES.items()}
    for key, setting in by_key.items():
        found[variable(key)] = setting
    return found


def variable(key: str) -> str:
    """`server.grace_period` → `EMULATOR_SERVER_GRACE_PERIOD`."""
    return PREFIX + key.replace(".", "_").upper()


def _in_a_section(name: str, known: Mapping[str, Setting]) -> bool:
    """Whether `name` (an unknown variable) starts like the variables of a config section."""
    rest = name[len(PREFIX) :]
    sections = {setting.key.split(".")[0].upper() for setting in known.values()}
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
        key = entry.key
        parts = [part.strip() for part in value.split(",") if part.strip()]
        overrides[key] = entry.from_text(parts if entry.is_list else value)
        # The type here, so the message names the variable; ranges and keys that go together
        # are judged with the file and the flags, which may complete them.
        try:
            entry.check(overrides[key])
        except ConfigError as exc:
            raise ConfigError(
                f"environment variable {name} ({key}): {exc.problem}", key=key, problem=exc.problem
            ) from None
    return overrides


def variables_for(environ: Mapping[str, str], keys: Iterable[str]) -> list[str]:
    """The `EMULATOR_*` variables in `environ` that set any of `keys`, for messages."""
    known, wanted = _variables(), set(keys)
    return sorted(name for name in environ if name in known and known[name].key in wanted)

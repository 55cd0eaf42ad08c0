"""Command-line flags for the config keys, derived from the schema as `EMULATOR_*` variables are.

Every key one text value can set (`_schema.settings`) gets a flag named after it:
`server.grace_period` is `--server-grace-period`, `journal.limit` is `--journal-limit`. A list key
takes its flag once per item; a true/false key is a switch (`--header-faults`,
`--no-header-faults`). The command line adds short names (`--grace-period`), metavars and help
with a `Flag`; a key without one still gets its flag.

A value is checked as the flag is read, by the same schema code as the file, so a wrong type is one
line naming the flag (`argument --journal-limit: expected an integer, got 'x'`). Ranges and keys
that go together are checked with the whole config; `given` tells which flag set which key, for
that message.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from emulator._schema import Setting, settings
from emulator.errors import ConfigError

__all__ = ["Flag", "add_setting_flags", "flag_name", "given"]

# Where the actions keep what the command line set: key → (the flag as typed, value).
_GIVEN = "config settings"


@dataclasses.dataclass(frozen=True)
class Flag:
    """What the command line adds to a key's derived flag."""

    aliases: tuple[str, ...] = ()  # names kept working besides the derived one: `--port`
    metavar: str | None = None
    help: str = ""  # used when the field has no `metadata["help"]`
    # A check of the text before the schema's, whose message is more to the point (a port).
    parse: Callable[[str], object] | None = None
    # The value of the flag given alone (`--locked` means `--locked emulator.lock`).
    const: str | None = None


def flag_name(key: str) -> str:
    """`server.grace_period` → `--server-grace-period`."""
    return "--" + key.replace(".", "-").replace("_", "-")


def given(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """Config key → (the flag that set it, as typed; its value), for the flags given."""
    found: dict[str, tuple[str, Any]] = getattr(args, _GIVEN, None) or {}
    return dict(found)


def add_setting_flags(
    parser: argparse.ArgumentParser,
    cls: Any,
    extras: Mapping[str, Flag],
    titles: Mapping[str, str],
) -> dict[str, argparse._ActionsContainer]:
    """A flag for every setting of `cls`: the top-level keys' among the parser's options, each
    section's in a group of its own (titled from `titles`), returned by section."""
    groups: dict[str, argparse._ActionsContainer] = {}
    for setting in settings(cls):
        section = setting.key.rpartition(".")[0].partition(".")[0]
        if section not in groups:
            groups[section] = (
                parser
                if not section
                else parser.add_argument_group(
                    titles.get(section, section),
                    f"`{section}:` keys of emulator.yaml (also EMULATOR_{section.upper()}_*)",
                )
            )
        group = groups[section]
        extra = extras.get(setting.key, Flag())
        names = [flag_name(setting.key), *extra.aliases]
        text = _help(setting, extra).replace("%", "%%")  # argparse %-formats help
        if setting.item is bool and not setting.is_list:
            negated = [f"--no-{n[2:]}" for n in names if n.startswith("--")]
            group.add_argument(
                *names, *negated, action=_Switch, setting=setting, help=text, default=None
            )
        else:
            optional: dict[str, Any] = {}
            if extra.const is not None:
                optional = {"nargs": "?", "const": extra.const}
            group.add_argument(
                *names,
                action=_Value,
                setting=setting,
                parse=extra.parse,
                metavar=extra.metavar or _metavar(setting),
                help=text,
                default=None,
                **optional,
            )
    return groups


class _Value(argparse.Action):
    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        setting: Setting,
        parse: Callable[[str], object] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, _GIVEN, **kwargs)
        self.setting, self.parse = setting, parse

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        flag, text = option_string or self.option_strings[0], str(values)
        if self.parse is not None:
            try:
                self.parse(text)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                _refuse(parser, flag, str(exc))
        value = self.setting.from_text([text] if self.setting.is_list else text)
        try:
            self.setting.check(value)
        except ConfigError as exc:
            _refuse(parser, flag, exc.problem)
        store = _store(namespace)
        if self.setting.is_list and self.setting.key in store:
            value = [*store[self.setting.key][1], *value]  # repeated: one more item
        store[self.setting.key] = (flag, value)


class _Switch(argparse.Action):
    def __init__(
        self, option_strings: Sequence[str], dest: str, *, setting: Setting, **kwargs: Any
    ) -> None:
        super().__init__(option_strings, _GIVEN, nargs=0, **kwargs)
        self.setting = setting

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        flag = option_string or self.option_strings[0]
        _store(namespace)[self.setting.key] = (flag, not flag.startswith("--no-"))


def _store(namespace: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    store: dict[str, tuple[str, Any]] | None = getattr(namespace, _GIVEN, None)
    if store is None:
        store = {}
        setattr(namespace, _GIVEN, store)
    return store


def _refuse(parser: argparse.ArgumentParser, flag: str, problem: str) -> NoReturn:
    # One line, as for any other bad setting: argparse's usage would bury it under every flag.
    parser.exit(2, f"{parser.prog}: error: argument {flag}: {problem}\n")


def _metavar(setting: Setting) -> str:
    item = setting.item
    if typing.get_origin(item) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(item))) + "}"
    if typing.get_origin(item) is typing.Annotated:
        return "SIZE" if typing.get_args(item)[1] == "bytes" else "DURATION"
    if item is int:
        return "N"
    if item is float:
        return "NUMBER"
    return "VALUE"


def _help(setting: Setting, extra: Flag) -> str:
    text = setting.help or extra.help
    if not text:
        kind = _kind(setting.item)
        text = f"{setting.key}: {kind}" if kind else setting.key
        default = _shown(setting)
        if default:
            text += f" (default {default})"
    if setting.is_list and "repeatable" not in text:
        text += "; repeatable"
    return text


def _kind(item: Any) -> str:
    if typing.get_origin(item) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(item)))
    if typing.get_origin(item) is typing.Annotated:
        if typing.get_args(item)[1] == "bytes":
            return "a size such as 64KiB, 1MiB or a number of bytes"
        return "a duration such as 150ms, 5s or 1m"
    return {int: "an integer", float: "a number"}.get(item, "")  # text, or a switch: the key


def _shown(setting: Setting) -> str:
    """The default as one would write it in emulator.yaml; "" for none (or an empty one)."""
    default, item = setting.default, setting.item
    if default is None or default in ("", ()) or isinstance(default, bool):
        return ""
    values = list(default) if setting.is_list else [default]
    if typing.get_origin(item) is typing.Annotated:
        if typing.get_args(item)[1] == "bytes":
            return ", ".join(map(_size, values))
        return ", ".join(f"{v:g}s" for v in values)
    return ", ".join(map(str, values))


def _size(value: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)

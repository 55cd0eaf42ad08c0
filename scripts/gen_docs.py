"""Regenerate the parts of docs/ that come from the code: config keys, variables, flags.

    python scripts/gen_docs.py           # rewrite them (`make docs`)
    python scripts/gen_docs.py --check   # exit 1 naming each file that is out of date

A generated part sits between `<!-- BEGIN GENERATED: NAME ... -->` and
`<!-- END GENERATED: NAME -->` in a markdown file; everything around it is written by hand.
The config keys come from the dataclasses `emulator.config.Config` is checked against (types,
defaults and each field's `metadata["help"]`), the variables from `emulator.environment`, and
the flags from the `argparse` parsers `emulate` builds, so none of them can drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from emulator import cli, environment  # noqa: E402
from emulator.config import Config  # noqa: E402

BEGIN = re.compile(r"^<!-- BEGIN GENERATED: (?P<name>[\w.-]+)[^>]*-->\n", re.MULTILINE)
END = "<!-- END GENERATED: {name} -->"


# ---- config keys ----


@dataclasses.dataclass
class Section:
    key: str  # dotted, with `[]` for list items and `.<name>` for mapping values
    cls: type[Any]
    rows: list[tuple[str, str, str, str]]  # key, type, default, help


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    options = [a for a in args if a is not type(None)]
    if type(None) in args and len(options) == 1:
        return options[0], True
    return hint, False


def _type_name(hint: Any, plural: bool = False) -> str:
    hint, _ = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        name = "size" if typing.get_args(hint)[1] == "bytes" else "duration"
        return name + ("s" if plural else "")
    if origin is Literal:
        values = [f"`{v}`" for v in typing.get_args(hint)]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    if origin is tuple:
        return "list of " + _type_name(typing.get_args(hint)[0], plural=True)
    if origin is dict:
        value = typing.get_args(hint)[1]
        if value is Any:
            return "mappings" if plural else "mapping"
        return ("mappings" if plural else "mapping") + " to " + _type_name(value, plural=True)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        return ", or ".join(_type_name(a, plural) for a in typing.get_args(hint))
    if dataclasses.is_dataclass(hint):
        return "sections" if plural else "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in names:
        return names[hint] + ("s" if plural else "")
    return "any value" if not plural else "values"


def _duration(seconds: float) -> str:
    if seconds and (seconds * 1000) % 1000:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _size(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _value(hint: Any, value: Any) -> str:
    hint, _ = _unwrap_optional(hint)
    if value is None:
        return "unset"
    if typing.get_origin(hint) is typing.Annotated:
        return _size(value) if typing.get_args(hint)[1] == "bytes" else _duration(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else Any
        return "[" + ", ".join(_value(item, v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else repr(value)
    if isinstance(value, str):
        return value or '""'
    return str(value)


def _default(hint: Any, f: dataclasses.Field[Any]) -> str:
    if f.default is None:
        return "unset"
    if f.default is not dataclasses.MISSING:
        return f"`{_value(hint, f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        made = f.default_factory()
        return "" if dataclasses.is_dataclass(made) else f"`{_value(hint, made)}`"
    return "required"


def _help(cls: type[Any], f: dataclasses.Field[Any]) -> str:
    text = f.metadata.get("help")
    if not text:
        raise ValueError(
            f"{cls.__module__}.{cls.__qualname__}.{f.name} has no help text: add "
            'field(..., metadata={"help": "..."}) so docs/configuration.md can describe it'
        )
    return str(text)


def sections(cls: type[Any] = Config, key: str = "") -> Iterator[Section]:
    """Every section of the schema, parents before their children."""
    hints = typing.get_type_hints(cls, include_extras=True)
    section = Section(key, cls, [])
    children: list[tuple[str, type[Any]]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        dotted = f"{key}.{f.name}" if key else f.name
        type_name = _type_name(hint)
        inner, _ = _unwrap_optional(hint)
        args = typing.get_args(inner)
        child = None
        if dataclasses.is_dataclass(inner):
            child = (dotted, typing.cast(type[Any], inner))
        elif typing.get_origin(inner) is tuple and dataclasses.is_dataclass(args[0]):
            child = (f"{dotted}[]", args[0])
        elif typing.get_origin(inner) is dict and dataclasses.is_dataclass(args[1]):
            child = (f"{dotted}.<name>", args[1])
        if child is not None:
            children.append(child)
            type_name = f"[{type_name}](#{anchor(child[0])})"
        section.rows.append((dotted, type_name, _default(hint, f), _help(cls, f)))
    yield section
    for child_key, child in children:
        yield from sections(child, child_key)


def anchor(key: str) -> str:
    """The anchor GitHub gives the heading `### `KEY``."""
    return re.sub(r"[^\w\- ]", "", key.lower()).replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_keys() -> str:
    out: list[str] = []
    for section in sections():
        doc = (section.cls.__doc__ or "").strip()
        if section.key:
            out.append(f"### `{section.key}`\n")
        else:
            out.append("### Top level\n")
        if doc and not doc.startswith(section.cls.__name__ + "("):  # not dataclass's own
            out.append(f"{doc}\n")
        out.append("| key | type | default | what it does |")
        out.append("|---|---|---|---|")
        for key, type_name, default, text in section.rows:
            out.append(f"| `{key}` | {_cell(type_name)} | {_cell(default)} | {_cell(text)} |")
        out.append("")
    return "\n".join(out).rstrip("\n")


def variables() -> str:
    known = environment._variables()
    rows = sorted(known.items(), key=lambda item: (item[1].key, len(item[0]), item[0]))
    out = ["| variable | key | value |", "|---|---|---|"]
    for name, setting in rows:
        if setting.is_list:
            form = "comma-separated list"
        elif setting.item is bool:
            form = "`true` or `false`"
        else:
            form = "as in the file"
        out.append(f"| `{name}` | `{setting.key}` | {form} |")
    return "\n".join(out)


# ---- command-line flags ----


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The parser `emulate ARGV...` builds: caught as it starts parsing, so nothing runs."""

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        try:
            cli.main(argv)
        except _Parsed as parsed:
            return parsed.parser
    raise RuntimeError(f"emulate {' '.join(argv)} built no argument parser")


def subcommands() -> list[str]:
    """`emulate`'s subcommands: `check`, `record` and the tools, each with a parser of its own."""
    return ["check", "record", *sorted(getattr(cli, "_TOOLS", {}))]


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Command (`emulate`, `emulate check`, ...) → its parser."""
    found = {"emulate": _parser_for([])}
    for name in subcommands():
        found[f"emulate {name}"] = _parser_for([name])
    return found


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    metavar = action.metavar or action.dest.upper()
    return f"`{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"


def flags(command: str) -> str:
    parser = parsers()[command]
    out = ["| flag | value | what it does |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
        text = action.help or ""
        if "%" in text:
            text = text % {**vars(action), "prog": parser.prog}
        if isinstance(action, argparse._AppendAction):
            text += "" if "repeatable" in text else "; repeatable"
        out.append(f"| {names} | {_metavar(action)} | {_cell(text)} |")
    return "\n".join(out)


# ---- the files ----


def generators() -> dict[str, Callable[[], str]]:
    found: dict[str, Callable[[], str]] = {"config-keys": config_keys, "variables": variables}
    for command in parsers():
        found["flags-" + command.replace(" ", "-")] = lambda command=command: flags(command)
    return found


def render(text: str, where: str) -> str:
    """`text` with every generated part replaced by what the code gives now."""
    made = generators()
    out, at = [], 0
    for begin in BEGIN.finditer(text):
        name = begin.group("name")
        end = text.find(END.format(name=name), begin.end())
        if end < 0:
            raise ValueError(f"{where}: no {END.format(name=name)} after its BEGIN")
        if name not in made:
            raise ValueError(f"{where}: unknown generated part {name!r}; known: {sorted(made)}")
        out += [text[at : begin.end()], made[name](), "\n\n"]
        at = end
    out.append(text[at:])
    return "".join(out)


def doc_files() -> list[Path]:
    return sorted((ROOT / "docs").glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="report stale files, change nothing")
    check = args.parse_args(argv).check
    stale = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        try:
            fresh = render(text, str(path.relative_to(ROOT)))
        except ValueError as exc:
            print(f"gen_docs: {exc}", file=sys.stderr)
            return 2
        if fresh != text:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(fresh, encoding="utf-8")
    for path in stale:
        print(f"{path}: {'out of date: run `make docs`' if check else 'regenerated'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

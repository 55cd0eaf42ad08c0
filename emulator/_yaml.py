"""Reading a YAML file (emulator.yaml) into plain data, safely, with the line of every key.

A config file is small, so anything a config file never needs is refused with a message naming
the file and line, rather than allowed to hang or exhaust the process: a path that is not a
regular file (a FIFO would block the read forever), more than `MAX_BYTES`, nesting deeper than
`MAX_DEPTH`, an alias that contains itself, and aliases that expand to more than `MAX_EXPANDED`
values (the "billion laughs" file: a few hundred bytes that expand to 10^9 values).
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.errors import ConfigError

SECRET_KEYED = frozenset({"auth.tokens"})  # mappings whose keys never appear in messages

if TYPE_CHECKING:
    import yaml

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_EXPANDED", "read_yaml", "read_yaml_text"]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED = 100_000  # values reached again through aliases

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def read_yaml(
    path: Path, flag: str = "--config", *, limit: int = MAX_BYTES
) -> tuple[Any, dict[str, int]]:
    """The file's data (None when empty) and the line of every dotted key; files over `limit`
    bytes are refused."""
    return read_yaml_text(_read_text(path, flag, limit), str(path))


def read_yaml_text(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """YAML (or JSON) text's data and the line of every dotted key; errors name `source`."""
    loader = _loader_class()(text)
    loader.source = source
    try:
        import yaml

        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            lines: dict[str, int] = {}
            return _Plain(loader, source, lines).value(node, ""), lines
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def _read_text(path: Path, flag: str, limit: int) -> str:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot be read: {exc.strerror}") from None
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        what = _KINDS.get(kind, "a special file")
        raise ConfigError(f"{flag} {path}: is {what}, not a file: give the path of a YAML file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: cannot be read: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(
            f"{flag} {path}: larger than {limit // 1024 // 1024} MiB; a file of this kind needs "
            "far less (is this the right file?)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from None


@functools.cache
def _loader_class() -> type[Any]:
    import yaml  # only a config file needs it: keeps start-up without one fast

    class BoundedLoader(yaml.SafeLoader):
        """Refuses deep nesting while composing (PyYAML composes recursively: 5,000 levels
        would end in RecursionError)."""

        source = ""
        depth = 0

        def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                    raise ConfigError(
                        f"{self.source}:{line}: nested deeper than {MAX_DEPTH} levels; "
                        "a config file needs far less: flatten this value"
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedLoader


@dataclass
class _Plain:
    """YAML nodes → Python data. Aliases share nodes, so the walk tracks which nodes it is
    inside (a recursive alias) and how many it has reached more than once (alias expansion)."""

    loader: Any
    source: str
    lines: dict[str, int]
    inside: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    expanded: int = 0

    def value(self, node: yaml.Node, path: str) -> Any:
        import yaml

        line = node.start_mark.line + 1
        self.lines[path] = line
        key = path or "the file"
        if id(node) in self.inside:
            raise ConfigError(
                f"{self.source}:{line}: {key}: an alias refers to the value that contains it "
                "(a recursive alias); write the value out instead"
            )
        if id(node) in self.seen:
            self.expanded += 1
            if self.expanded > MAX_EXPANDED:
                top = re.split(r"[.\[]", path)[0]  # the key whose value uses the aliases
                raise ConfigError(
                    f"{self.source}:{self.lines.get(top, line)}: {top or key}: aliases expand to "
                    f"more than {MAX_EXPANDED} values; use fewer or smaller aliases"
                )
        self.seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node)
        self.inside.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            out: dict[str, Any] = {}
            for index, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: {key}: a key must be "
                        "a name, not a list or mapping"
                    )
                name = str(self.loader.construct_object(key_node))
                child = f"{path}.{name}" if path else name
                if name in out:
                    # A secret key (a static token) is named by its position, never shown.
                    shown = f"{path}[#{index + 1}]" if path in SECRET_KEYED else child
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: {shown}: duplicate key"
                    )
                out[name] = self.value(value_node, child)
                self.lines[child] = key_node.start_mark.line + 1
            return out
        finally:
            self.inside.discard(id(node))

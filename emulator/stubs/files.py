"""Stubs from where they are written: files and folders (`--stubs`), and emulator.yaml's `stubs:`
(paths, or stubs written inline). A folder gives every `.yaml`, `.yml` and `.json` file under it,
in path order; JSON is read by the same YAML reader, so its errors name lines too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emulator.contracts.model import Contracts
from emulator.errors import ConfigError
from emulator.stubs.build import Source, build_stubs
from emulator.stubs.model import Stub

__all__ = ["STUB_SUFFIXES", "load_stubs"]

STUB_SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 64 * 1024 * 1024  # recordings can be big; a config file is refused at 1 MiB


def load_stubs(
    entries: Sequence[Any],
    contracts: Contracts,
    *,
    source: str = "config",
    lines: Mapping[str, int] | None = None,
    origin: str = "config",
) -> list[Stub]:
    """Every stub of `entries`: paths (files or folders) and stub mappings written inline
    (`lines`: where each `stubs[i]` key was written, for config files)."""
    stubs: list[Stub] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str | Path):
            for path in _files(Path(entry), _named(source, lines or {}, index)):
                stubs.extend(load_file(path, contracts))
        elif isinstance(entry, Mapping):
            at = Source(source, lines or {}, "stubs", origin, first=index)
            stubs.extend(build_stubs([entry], contracts, at))
        else:
            raise ConfigError(
                f"{source}: stubs[{index}]: a path to a stub file or folder, or a stub "
                f"(a mapping with `method:`), got {type(entry).__name__}"
            )
    return stubs


def load_file(path: Path, contracts: Contracts) -> list[Stub]:
    from emulator._yaml import read_yaml

    data, lines = read_yaml(path, "--stubs", limit=MAX_FILE_BYTES)
    if data is None:
        return []  # an empty file: nothing stubbed yet
    return build_stubs(data, contracts, Source(str(path), lines, "", "file"))


def _named(source: str, lines: Mapping[str, int], index: int) -> str:
    """How a message names the entry: the flag or variable that gave it, or the key and line."""
    if source == "command line":
        return "--stubs"
    if source == "environment (EMULATOR_*)":
        return "environment variable EMULATOR_STUBS"
    from emulator._schema import where

    return f"{where(source, lines, f'stubs[{index}]')}: stubs[{index}]"


def _files(path: Path, where: str) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in STUB_SUFFIXES and p.is_file())
        return found
    if not path.exists():
        raise ConfigError(
            f"{where}: {path} does not exist: give a stub file (.yaml, .yml, .json) or a folder "
            "of them"
        )
    if path.suffix not in STUB_SUFFIXES:
        raise ConfigError(
            f"{where}: {path} is not a stub file: stub files end in .yaml, .yml or .json"
        )
    return [path]

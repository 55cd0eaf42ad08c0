"""`emulate init [DIR]`: a working emulator project in one command.

Writes an `emulator.yaml`, an example contract, a behaviour, a stub file, a pytest test with the
plugin's fixture, a compose file and a README, such that `emulate check` and `pytest` pass in
DIR at once. Never overwrites a file unless `--force` says so: it lists the ones in the way and
exits 2, having written nothing.

The files are package data (`init_template/`): Python ones end in `-tpl` there, so that neither
the emulator's own lint and type checks nor pytest take them for modules of the package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from emulator.errors import EmulatorError

__all__ = ["run"]

EXIT_CONFLICT = 2
_SUFFIX = "-tpl"
_ABOUT = (
    "Write a working project into DIR (default: the current folder): emulator.yaml, an example "
    "contract, a behaviour, a stub file, a pytest test, a compose file and a README; "
    "`emulate check` and `pytest` pass there at once."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emulate init", description=_ABOUT)
    parser.add_argument(
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the project's folder (default: the current one; made if missing)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite files that are there already"
    )
    return parser


def files() -> dict[str, bytes]:
    """What `init` writes: each path relative to DIR (with `/`), and its content."""
    root = resources.files("emulator.commands").joinpath("init_template")
    return {path: item.read_bytes() for path, item in sorted(_walk(root, ""))}


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for item in folder.iterdir():
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            yield from _walk(item, f"{prefix}{item.name}/")
        else:
            name = item.name.removesuffix(_SUFFIX)
            yield f"{prefix}{name}", item


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        raise EmulatorError(f"{target} is a file, not a folder: name a folder for the project")
    wanted = files()
    # All or nothing: a half-written project would fail `emulate check` in confusing ways.
    present = [path for path in wanted if (target / path).exists()]
    blocked = [path for path in present if not (target / path).is_file()]
    if blocked:
        raise EmulatorError(
            f"{target / blocked[0]} is a folder where emulate init writes a file: move it away"
        )
    if present and not args.force:
        listed = "\n".join(f"  {target / path}" for path in present)
        print(
            f"emulate init: error: {len(present)} file(s) of the project are in {target} "
            f"already; nothing was written:\n{listed}\n"
            "Move them away, init another folder, or pass --force to overwrite them.",
            file=sys.stderr,
        )
        return EXIT_CONFLICT
    for path, content in wanted.items():
        destination = target / path
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(content)
        except OSError as exc:
            raise EmulatorError(f"cannot write {destination}: {exc.strerror or exc}") from None
    shown = "." if str(target) == "." else str(target)
    overwritten = f" ({len(present)} overwritten)" if present else ""
    print(f"emulate init: wrote {len(wanted)} files into {shown}{overwritten}:")
    for path in wanted:
        print(f"  {path}")
    step = "" if shown == "." else f"cd {shown} && "
    print(f"Next: {step}emulate check && pytest   (then `emulate` serves it on 127.0.0.1:50051)")
    return 0

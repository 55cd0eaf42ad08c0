"""`emulate generate --proto PATH... [-I DIR] --out DIR`: typed Python for the contracts.

Writes, under DIR, the message modules protoc writes (`acme/shop/v1/catalog_pb2.py` and its
`.pyi` stub) and, per .proto file with services, `catalog_behaviors.py`: a typed base per service
(`CatalogBehavior`, `CatalogAsyncBehavior`) to subclass in a behaviour file. Files it wrote
before are overwritten (an unchanged one is left alone); any other file is never replaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2

__all__ = ["contracts_files", "contracts_parser", "count", "run"]

_ABOUT = (
    "Write typed Python for the contracts: message modules with .pyi stubs, and a typed "
    "behaviour base per service (CatalogBehavior, CatalogAsyncBehavior in "
    "<file>_behaviors.py), compiled as the emulator compiles them."
)


def contracts_parser(prog: str, about: str) -> argparse.ArgumentParser:
    """The contract flags `generate` and `scaffold` share, as `emulate lock` has them."""
    parser = argparse.ArgumentParser(prog=prog, description=about)
    parser.add_argument(
        "--proto",
        action="append",
        metavar="PATH",
        help="contracts, as `emulate --proto` takes them (default: `protos:` of --config)",
    )
    parser.add_argument(
        "-I", "--import-path", action="append", metavar="DIR", help="an extra import root"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="emulator.yaml: its protos and import_paths"
    )
    return parser


def contracts_files(args: argparse.Namespace) -> list[descriptor_pb2.FileDescriptorProto]:
    """The user's compiled files (imports included), loaded as the emulator loads them: what
    does not load for serving does not generate either."""
    from emulator.config import Config, load_config_file
    from emulator.contracts import load_contracts

    config = load_config_file(args.config) if args.config else Config()
    protos = args.proto or list(config.protos)
    if not protos:
        raise EmulatorError("no contracts: pass --proto PATH (or `protos:` in --config FILE)")
    contracts = load_contracts(protos, args.import_path or list(config.import_paths))
    return [contracts.file_protos[name] for name in contracts.user_files]


def run(argv: Sequence[str]) -> int:
    from emulator.codegen.generate import generate
    from emulator.codegen.output import write_all

    parser = contracts_parser("emulate generate", _ABOUT)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="where the modules go (put it on sys.path)"
    )
    args = parser.parse_args(list(argv))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EmulatorError(f"--out {out}: not a directory")
    generated = generate(contracts_files(args))
    result = write_all(out, generated.files)
    bases = sum(len(s) for s in generated.bases.values())
    summary = (
        f"{count(generated.message_modules, 'message module')}, "
        f"{count(len(generated.bases), 'behaviour module')} with {count(bases * 2, 'typed base')}"
    )
    if not result.written:
        print(f"{out}: up to date ({summary})")
        return 0
    unchanged = f"; {len(result.unchanged)} unchanged" if result.unchanged else ""
    print(f"wrote {count(len(result.written), 'file')} to {out} ({summary}{unchanged})")
    for path, services in generated.bases.items():
        names = ", ".join(f"{s.name}Behavior, {s.name}AsyncBehavior" for s in services)
        print(f"  {path}: {names}")
    return 0


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))

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

from emulator.commands.contract_flags import contracts_parser, count
from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2

__all__ = ["contracts_files", "run"]

_ABOUT = (
    "Write typed Python for the contracts: message modules with .pyi stubs, and a typed "
    "behaviour base per service (CatalogBehavior, CatalogAsyncBehavior in "
    "<file>_behaviors.py), compiled as the emulator compiles them."
)


def contracts_files(args: argparse.Namespace) -> list[descriptor_pb2.FileDescriptorProto]:
    """The user's compiled files (imports included), loaded as the emulator loads them: what
    does not load for serving does not generate either."""
    from emulator.commands.contract_flags import load, settings

    contracts = load(args, settings(args))
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))

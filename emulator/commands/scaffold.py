"""`emulate scaffold --proto PATH... --out behaviors/ [--typed GENERATED_DIR] [--async]`.

A behaviour file per service (`behaviors/catalog.py`), every method stubbed in its RPC kind's
shape and answering the default until edited. An existing file is never overwritten: it is
named as skipped, and the run still succeeds, so scaffolding again after adding a service
writes only the new service's file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from emulator.errors import EmulatorError

__all__ = ["run"]

_ABOUT = (
    "Write a behaviour file per service with every method stubbed (answering the default "
    "response until edited); existing files are never overwritten."
)


def run(argv: Sequence[str]) -> int:
    from emulator.codegen.generate import module_path
    from emulator.codegen.model import TypeIndex, module_of, services_of, snake
    from emulator.codegen.output import write_all
    from emulator.codegen.scaffold import render_scaffold
    from emulator.codegen.typed import behaviors_module
    from emulator.commands.contract_flags import contracts_parser, count
    from emulator.commands.generate import contracts_files

    parser = contracts_parser("emulate scaffold", _ABOUT)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="the behaviours folder (created if missing)"
    )
    parser.add_argument(
        "--typed",
        metavar="GENERATED_DIR",
        help="subclass the typed bases `emulate generate --out GENERATED_DIR` wrote, with "
        "annotations (mypy --strict with GENERATED_DIR on its path)",
    )
    parser.add_argument(
        "--async",
        dest="is_async",
        action="store_true",
        help="async def stubs (default: def)",
    )
    args = parser.parse_args(list(argv))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EmulatorError(f"--out {out}: not a directory")
    files = contracts_files(args)
    types = TypeIndex(files)
    services = [s for f in files for s in services_of(f, types)]
    if not services:
        raise EmulatorError("the contracts declare no services: nothing to scaffold")
    if args.typed:
        needed = {module_path(behaviors_module(module_of(s.file))) for s in services}
        missing = sorted(name for name in needed if not (Path(args.typed) / name).is_file())
        if missing:
            raise EmulatorError(
                f"--typed {args.typed}: {missing[0]} is not there: run `emulate generate "
                f"--proto ... --out {args.typed}` first"
            )
    # A file per service, named after it; two services of one name (in two packages) get
    # their package in the name too.
    short = [snake(s.name) for s in services]
    written = skipped = 0
    for service, name in zip(services, short, strict=True):
        stem = name if short.count(name) == 1 else snake(service.full_name.replace(".", "_"))
        target = out / f"{stem}.py"
        if target.exists():
            print(f"skipped {target}: it exists ({service.full_name}); scaffold never overwrites")
            skipped += 1
            continue
        text = render_scaffold(service, typed=bool(args.typed), is_async=args.is_async)
        write_all(out, {target.name: text})
        print(f"wrote {target}: {service.full_name} ({count(len(service.methods), 'method')})")
        written += 1
    if args.typed and written:
        print(
            f"{args.typed} must be on the path: PYTHONPATH={args.typed} to serve, "
            f"MYPYPATH={args.typed} for mypy"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))

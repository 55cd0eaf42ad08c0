"""`emulate diff --proto NEW --against OLD [--category FILE] [--format text|json]`.

Lists the changes in the contracts at NEW that break clients of OLD under one of buf's
categories (FILE, PACKAGE, WIRE_JSON, WIRE), one line each and a summary; exits 1 when there is
one, 0 when none, 2 on bad input (one line naming the path, file and line, or revision). OLD is a
folder, a .proto file, a descriptor set, or `git:REV`: the --proto paths at a git revision.
Needs buf: the `diff` extra (buf-bin) brings it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

__all__ = ["run"]

EXIT_BREAKING = 1

# Not imported from emulator.contracts.breaking: `emulate diff --help` compiles nothing.
_CATEGORIES = ("FILE", "PACKAGE", "WIRE_JSON", "WIRE")


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="emulate diff",
        description="List what in the contracts at --proto breaks clients of the contracts at "
        "--against, as `buf breaking` judges it; exit 1 when something does.",
    )
    parser.add_argument(
        "--proto",
        action="append",
        required=True,
        metavar="NEW",
        help="the new contracts: a directory of .proto files, one .proto file or a descriptor "
        "set (.pb/.binpb/.desc); repeatable",
    )
    parser.add_argument(
        "--against",
        action="append",
        required=True,
        metavar="OLD",
        help="the old contracts: the same kinds of path, or git:REV for the --proto paths at a "
        "git revision (git:HEAD~1, git:main); repeatable",
    )
    parser.add_argument(
        "-I",
        "--import-path",
        action="append",
        default=[],
        metavar="DIR",
        help="an extra import root, for both sides (read at REV too when in the repository); "
        "repeatable",
    )
    parser.add_argument(
        "--category",
        type=str.upper,
        choices=_CATEGORIES,
        default="FILE",
        help="what counts as breaking, strictest first: FILE (buf's default: generated code "
        "per file), PACKAGE (per package), WIRE_JSON (binary and JSON encoding), WIRE (binary "
        "only)",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output (default text)"
    )
    args = parser.parse_args(list(argv))
    from emulator.contracts.breaking import breaking_changes

    changes = breaking_changes(args.proto, args.against, args.import_path, args.category)
    if args.format == "json":
        print(
            json.dumps(
                {"category": args.category, "breaking": [asdict(c) for c in changes]}, indent=2
            )
        )
    else:
        for change in changes:
            print(change)
        count = f"{len(changes)} breaking change{'' if len(changes) == 1 else 's'}"
        print(f"{count if changes else 'no breaking changes'} ({args.category})")
    return EXIT_BREAKING if changes else 0

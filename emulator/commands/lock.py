"""`emulate lock --proto PATH... [--out emulator.lock]`: write the contracts' fingerprints.

The lock file is what `emulate check --locked` (and `locked:`) compare the served contracts
with; running this again after a reviewed change accepts it. An unchanged lock is left alone
(not even rewritten), and a changed one says what changed, as the check would have.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from emulator.errors import ConfigError, EmulatorError

__all__ = ["run"]

_ABOUT = (
    "Write the lock file: the contracts' fingerprints, overall and per file, service, method "
    "and message, for `emulate check --locked`."
)


def _parser() -> argparse.ArgumentParser:
    from emulator.commands.contract_flags import contracts_parser

    parser = contracts_parser(
        "emulate lock", _ABOUT, "emulator.yaml: its protos, import_paths and locked"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="the lock file (default: `locked:` of --config, else emulator.lock)",
    )
    return parser


def run(argv: Sequence[str]) -> int:
    from emulator.commands.contract_flags import count, load, settings
    from emulator.contracts.lock import LOCK_FILE, differences, read_lock, render

    args = _parser().parse_args(list(argv))
    config = settings(args)
    out = Path(args.out or config.locked or LOCK_FILE)
    prints = load(args, config).fingerprints
    # The command that bumps the lock is the one that wrote it, as typed.
    text = render(prints, shlex.join(["emulate", "lock", *argv]))
    before = None
    if out.is_file():
        try:
            before = read_lock(out)
        except ConfigError:
            before = None  # rewriting a damaged lock is how it gets fixed
    if before == prints and out.read_text(encoding="utf-8") == text:
        print(f"{out}: up to date (fingerprint {prints.fingerprint[:12]})")
        return 0
    _write(out, text)
    methods = sum(len(m) for m in prints.methods.values())
    print(
        f"wrote {out}: fingerprint {prints.fingerprint[:12]} ({count(len(prints.files), 'file')}, "
        f"{count(len(prints.services), 'service')}, {count(methods, 'method')})"
    )
    for line in differences(before, prints) if before is not None else []:
        print(f"  {line}")
    return 0


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a lock file cut short would fail every check after it."""
    from emulator._files import replace_file

    try:
        replace_file(path.resolve(), text)
    except OSError as exc:
        raise EmulatorError(f"--out {path}: cannot be written: {exc.strerror}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))

"""`emulate certs --out certs/ [--host NAME]... [--client NAME]... [--days N] [--force]`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from emulator.security.certs import write_certs

__all__ = ["run"]


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="emulate certs",
        description="Write a CA, a server certificate (SANs: localhost, 127.0.0.1, ::1 and every "
        "--host) and one client certificate per --client, as PEM files; keys are mode 0600.",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write into")
    parser.add_argument("--host", action="append", default=[], help="extra server name or IP")
    parser.add_argument("--client", action="append", default=[], help="client name (CN, DNS SAN)")
    parser.add_argument("--days", type=int, default=365, help="validity (default 365)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(list(argv))
    if args.days < 1:
        parser.error("--days must be at least 1")
    written = write_certs(
        args.out, hosts=args.host, clients=args.client, days=args.days, force=args.force
    )
    for path in written:
        print(path)
    return 0

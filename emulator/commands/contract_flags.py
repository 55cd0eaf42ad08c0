"""The contract flags of the subcommands that read contracts without serving them (`emulate
lock`, `generate`, `scaffold`): `--proto`, `-I` and `--config`, read as `emulate` reads them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from emulator.errors import EmulatorError

if TYPE_CHECKING:
    from emulator.config import Config
    from emulator.contracts import Contracts

__all__ = ["contracts_parser", "count", "load", "settings"]


def contracts_parser(
    prog: str, about: str, config_help: str = "emulator.yaml: its protos and import_paths"
) -> argparse.ArgumentParser:
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
    parser.add_argument("--config", metavar="FILE", help=config_help)
    return parser


def settings(args: argparse.Namespace) -> Config:
    """--config's emulator.yaml, or the defaults."""
    from emulator.config import Config, load_config_file

    return load_config_file(args.config) if args.config else Config()


def load(args: argparse.Namespace, config: Config) -> Contracts:
    """The contracts the flags (else the config) name, compiled as the emulator compiles them."""
    from emulator.contracts import load_contracts

    protos = args.proto or list(config.protos)
    if not protos:
        raise EmulatorError("no contracts: pass --proto PATH (or `protos:` in --config FILE)")
    return load_contracts(protos, args.import_path or list(config.import_paths))


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

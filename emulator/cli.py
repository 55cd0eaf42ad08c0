"""`emulate`: serve contracts, or check them without serving.

    emulate --proto protos/ --behaviors behaviors/ [--port 0] [--seed 7] [--config emulator.yaml]
    emulate check --proto protos/ --behaviors behaviors/

Setup errors print one message naming the file, line or key, and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from emulator.config import Config, load_config_file
from emulator.errors import EmulatorError

__all__ = ["main"]

EXIT_SETUP = 2

log = logging.getLogger("emulator")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proto",
        action="append",
        metavar="PATH",
        default=None,
        help="a directory of .proto files, one .proto file or a descriptor set "
        "(.pb/.binpb/.desc); repeatable",
    )
    parser.add_argument(
        "-I",
        "--import-path",
        action="append",
        metavar="DIR",
        default=None,
        help="an extra import root for .proto files; repeatable",
    )
    parser.add_argument(
        "--behaviors",
        action="append",
        metavar="PATH",
        default=None,
        help="a Python file or directory of Behavior classes; repeatable",
    )
    parser.add_argument("--config", metavar="FILE", help="emulator.yaml; flags override it")
    parser.add_argument("--seed", type=int, help="seed for default responses (default 0)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log line format")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emulate",
        description="Serve .proto contracts as a running gRPC emulator.",
        epilog="subcommands: `emulate check ...` validates everything and serves nothing.",
    )
    _common(parser)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port to listen on; 0 picks a free one (default 50051)"
    )
    parser.add_argument("--workers", type=int, help="threads for sync behaviour methods")
    parser.add_argument(
        "--stream-messages", type=int, help="messages in a default server stream (default 3)"
    )
    parser.add_argument("--grace-period", help="how long SIGTERM waits for in-flight calls (5s)")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emulate check",
        description="Compile the contracts, load the behaviours and config; serve nothing.",
    )
    _common(parser)
    return parser


def _config(args: argparse.Namespace) -> Config:
    config = load_config_file(args.config) if args.config else Config()
    overrides: dict[str, Any] = {}
    for flag, key in (
        ("proto", "protos"),
        ("import_path", "import_paths"),
        ("behaviors", "behaviors"),
        ("seed", "seed"),
        ("log_format", "log_format"),
        ("host", "server.host"),
        ("port", "server.port"),
        ("workers", "server.workers"),
        ("grace_period", "server.grace_period"),
        ("stream_messages", "defaults.stream_messages"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    config = config.with_overrides(overrides, source="command line")
    if not config.protos:
        raise EmulatorError("no contracts: pass --proto PATH (or `protos:` in --config FILE)")
    return config


def _setup_logging(fmt: str) -> None:
    from emulator.logs import configure

    configure(fmt)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = bool(argv) and argv[0] == "check"
    args = (_check_parser() if check else _parser()).parse_args(argv[1:] if check else argv)
    try:
        config = _config(args)
        _setup_logging(config.log_format)
        from emulator.runtime.server import EmulatorServer

        server = EmulatorServer(config)
    except EmulatorError as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    if check:
        described = server.contracts.describe()
        methods = sum(len(m) for m in described.values())
        shaped = len(list(server.registry))
        print(f"ok: {len(described)} services, {methods} methods, {shaped} with behaviours")
        return 0
    try:
        return asyncio.run(_serve(server))
    except EmulatorError as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_SETUP


async def _serve(server: Any) -> int:
    await server.start()
    print(f"emulator listening on {server.target}")
    for name, spec in server.contracts.services.items():
        shaped = [m for m in spec.methods if server.registry.get(f"/{name}/{m}")]
        note = f", behaviours: {', '.join(shaped)}" if shaped else ""
        print(f"  {name} ({len(spec.methods)} methods{note})")
    print("  grpc.health.v1.Health, grpc.reflection.v1.ServerReflection (+v1alpha)")
    sys.stdout.flush()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping: draining in-flight calls (grace %.1fs)", server.config.server.grace_period)
    await server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

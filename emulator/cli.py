"""`emulate`: serve contracts, or check them without serving.

    emulate --proto protos/ --behaviors behaviors/ [--port 0] [--seed 7] [--config emulator.yaml]
    emulate check --proto protos/ --behaviors behaviors/

Every config key one value can set has a flag named after it (`--server-grace-period`, derived
in `_flags`), some a shorter name too (`--grace-period`). Setup errors print one message naming
the file, line, flag or key, and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emulator._flags import Flag, add_setting_flags, given
from emulator.config import Config, load_config_file
from emulator.errors import ConfigError, ContractsChanged, EmulatorError, Interrupted

__all__ = ["main"]

EXIT_SETUP = 2
EXIT_DRIFT = 1  # the contracts differ from `locked:` (a lock file that cannot be read: 2)

# Subcommands that serve nothing, each in a module of its own; `emulate --help` lists them.
_TOOLS = {
    "certs": ("emulator.commands.certs", "write a test CA, server and client certificates"),
    "diff": ("emulator.commands.diff", "breaking changes between two versions of the contracts"),
    "generate": ("emulator.commands.generate", "typed Python: message modules, behaviour bases"),
    "health": ("emulator.commands.health", "exit 0 when a running emulator is SERVING"),
    "init": ("emulator.commands.init", "write a working project: contract, behaviour, stub, test"),
    "lock": ("emulator.commands.lock", "write emulator.lock: the contracts' fingerprints"),
    "report": ("emulator.commands.report", "a --journal-out journal as one HTML page; drift"),
    "scaffold": ("emulator.commands.scaffold", "a behaviour file per service, methods stubbed"),
    "token": ("emulator.commands.token", "mint valid (or deliberately broken) JWTs for tests"),
}
_CHECK = "compile the contracts, load the behaviours and config; serve nothing"

log = logging.getLogger("emulator")


def _port(text: str) -> int:
    from emulator._schema import parse_integer

    try:
        port = parse_integer(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"expected a port number 0 to 65535 (0 picks a free one), got {text!r}")
    return port


# Every config key text can set has a flag named after it (`--server-grace-period`, see
# `_flags`); these add the names the command line had before (kept working), metavars and help.
_FLAGS = {
    "protos": Flag(
        ("--proto",),
        "PATH",
        "a directory of .proto files, one .proto file or a descriptor set (.pb/.binpb/.desc); "
        "repeatable",
    ),
    "import_paths": Flag(
        ("-I", "--import-path"), "DIR", "an extra import root for .proto files; repeatable"
    ),
    "behaviors": Flag((), "PATH", "a Python file or directory of Behavior classes; repeatable"),
    "stubs": Flag(
        (), "PATH", "a stub file (.yaml, .yml, .json) or a directory of them; repeatable"
    ),
    "locked": Flag((), "FILE", const="emulator.lock"),
    "seed": Flag((), "N", "seed for default responses (default 0)"),
    "log_format": Flag(help="log line format (default text)"),
    "header_faults": Flag(
        help="honour x-emulator-fault and Envoy's x-envoy-fault-* request headers"
    ),
    "server.host": Flag(("--host",), "HOST", "address to listen on (default 127.0.0.1)"),
    "server.port": Flag(
        ("--port",), "PORT", "port to listen on; 0 picks a free one (default 50051)", _port
    ),
    "server.workers": Flag(("--workers",), "N", "threads for sync behaviour methods (default 16)"),
    "server.grace_period": Flag(
        ("--grace-period",), "DURATION", "how long SIGTERM waits for in-flight calls (5s)"
    ),
    "server.max_metadata_size": Flag(
        ("--max-metadata-size",),
        "SIZE",
        "largest request headers accepted (grpc's default is 8192: raise it for big JWTs)",
    ),
    "defaults.stream_messages": Flag(
        ("--stream-messages",), "N", "messages in a default server stream (default 3)"
    ),
    "journal.redact_headers": Flag(metavar="HEADER"),
    "journal.out": Flag(metavar="FILE"),
    "tls.cert": Flag((), "FILE", "server certificate (PEM)"),
    "tls.key": Flag((), "FILE", "server private key (PEM)"),
    "tls.client_ca": Flag(
        (), "FILE", "CA for client certificates: clients must present one (mTLS)"
    ),
    "tls.exempt": Flag(metavar="PATTERN"),
    "auth.exempt": Flag(metavar="PATTERN"),
    "auth.jwt.issuer": Flag(("--jwt-issuer",), "ISS", "required `iss` claim"),
    "auth.jwt.audience": Flag(("--jwt-audience",), "AUD", "an accepted `aud` claim; repeatable"),
    "auth.jwt.required_claims": Flag(metavar="CLAIM"),
    "proxy.upstream": Flag(
        ("--upstream",), "HOST:PORT", "forward the calls no stub or behaviour answers to it"
    ),
    "proxy.ca": Flag(("--upstream-ca",), "FILE", "CA of the upstream's certificate (TLS)"),
    "proxy.cert": Flag(("--upstream-cert",), "FILE", "client certificate for the upstream"),
    "proxy.key": Flag(("--upstream-key",), "FILE", "its private key"),
    "proxy.methods": Flag(metavar="PATTERN"),
    "record.ignore_fields": Flag(metavar="PATTERN"),
}
# `emulate record` also names the folder it writes as `--out`.
_RECORD_FLAGS = {**_FLAGS, "record.out": Flag(("--out",), "DIR", "where recordings go")}
_RECORD = "serve as a proxy of --upstream, writing every call as stubs under --out"
_TITLES = {"tls": "TLS"}

_USAGE = """emulate --proto PATH... [--behaviors PATH...] [--stubs PATH...] [--config FILE]
               [flags below]
       emulate check ...the same flags...
       emulate record --upstream HOST:PORT --out DIR ...the same flags... [--check]
       emulate init [DIR] [--force]
       emulate {certs,diff,generate,health,lock,report,scaffold,token} ...
               (see `emulate SUBCOMMAND --help`)"""


def _parser(prog: str = "emulate", description: str = "") -> argparse.ArgumentParser:
    """The flags of the server; `emulate check` takes them too, so a command line checks as is."""
    subcommands = {
        "check": _CHECK,
        "record": _RECORD,
        **{name: text for name, (_, text) in _TOOLS.items()},
    }
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=_USAGE if prog == "emulate" else _USAGE.splitlines()[0].replace("emulate", prog),
        description=description or "Serve .proto contracts as a running gRPC emulator.",
        epilog="subcommands:\n"
        + "\n".join(f"  emulate {name:<8} {text}" for name, text in subcommands.items())
        + "\n\nOrder: emulator.yaml (--config or EMULATOR_CONFIG), then EMULATOR_* variables, "
        "then flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    extras = _RECORD_FLAGS if prog == "emulate record" else _FLAGS
    auth = add_setting_flags(parser, Config, extras, _TITLES)["auth"]
    parser.add_argument("--config", metavar="FILE", help="emulator.yaml; flags override it")
    auth.add_argument(
        "--auth-token",
        action="append",
        metavar="TOKEN[=PRINCIPAL]",
        help="a static bearer token (and who it stands for); repeatable",
    )
    auth.add_argument(
        "--jwt-key",
        action="append",
        metavar="FILE",
        help="a PEM public key or JWKS file that verifies JWTs; repeatable",
    )
    auth.add_argument(
        "--jwt-secret-env",
        metavar="NAME",
        help="environment variable holding an HS256 secret for JWTs",
    )
    auth.add_argument("--authz-policy", metavar="FILE", help="gRFC A43 authorization policy (JSON)")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    return _parser("emulate check", _CHECK[0].upper() + _CHECK[1:] + ".")


def _record_parser() -> argparse.ArgumentParser:
    parser = _parser("emulate record", _RECORD[0].upper() + _RECORD[1:] + ".")
    parser.add_argument(
        "--check",
        action="store_true",
        help="once stopped, prove that no original value of a pseudonymized field is in the "
        "recordings (exit 1 if one is)",
    )
    return parser


def _config(args: argparse.Namespace) -> Config:
    from emulator.environment import CONFIG_VARIABLE, env_overrides, variables_for

    env = env_overrides(os.environ)  # the type of each value checked, naming its variable
    config_file = args.config or os.environ.get(CONFIG_VARIABLE) or _local_config(args, env)
    config = load_config_file(config_file) if config_file else Config()
    pending: dict[str, Any] = {}
    try:
        config = config.with_overrides(env, source="environment (EMULATOR_*)")
    except ConfigError:
        # A value out of range, or one the flags may complete (EMULATOR_AUTH_JWT_ISSUER with
        # --jwt-key, EMULATOR_TLS_CLIENT_CA with --tls-cert): judged with the flags below,
        # naming its variable if it still fails.
        pending = env
    flags = given(args)
    overrides: dict[str, Any] = {**pending, **{key: value for key, (_, value) in flags.items()}}
    flag_names = {key: flag for key, (flag, _) in flags.items()}
    security, named = _security_overrides(args, config)
    overrides.update(security)
    flag_names.update(named)
    source = "command line"
    if pending:
        names = ", ".join(variables_for(os.environ, pending))
        source = f"environment ({names})" + (" and command line" if overrides != pending else "")
    try:
        config = config.with_overrides(overrides, source=source)
    except ConfigError as exc:
        variables = {key: ", ".join(variables_for(os.environ, [key])) for key in pending}
        raise _named(exc, flag_names, variables) from None
    if not config.protos:
        raise EmulatorError("no contracts: pass --proto PATH (or `protos:` in --config FILE)")
    if getattr(args, "recording", False):
        if not config.proxy.upstream:
            raise EmulatorError(
                "emulate record: name the service to record: --upstream HOST:PORT (or "
                "`proxy.upstream:` in --config FILE)"
            )
        config = config.with_overrides({"proxy.record": True}, source="emulate record")
    return config


LOCAL_CONFIG = "emulator.yaml"


def _local_config(args: argparse.Namespace, env: dict[str, Any]) -> str | None:
    """`emulator.yaml` of the working folder, when nothing names the contracts (no --config,
    $EMULATOR_CONFIG, --proto or $EMULATOR_PROTOS): what `emulate init` writes, so that
    `emulate` and `emulate check` run in its folder with no flags. Only then, where there was
    an error before: a command line that names its contracts serves what it names."""
    if "protos" in given(args) or "protos" in env:
        return None
    return LOCAL_CONFIG if Path(LOCAL_CONFIG).is_file() else None


def _named(exc: ConfigError, flags: dict[str, str], variables: dict[str, str]) -> ConfigError:
    """The error, naming the flag or else the variable that set its key, when one did."""
    from emulator._schema import about

    for key, flag in flags.items():
        if about(exc.key, key):
            message = f"argument {flag}: {exc.key}: {exc.problem}"
            return ConfigError(message, key=exc.key, problem=exc.problem)
    for key, names in variables.items():
        if about(exc.key, key):
            message = f"environment variable {names} ({key}): {exc.problem}"
            return ConfigError(message, key=exc.key, problem=exc.problem)
    return exc


def _security_overrides(
    args: argparse.Namespace, config: Config
) -> tuple[dict[str, Any], dict[str, str]]:
    """Overrides from the flags that set maps and lists of objects, and the flag behind each."""
    overrides: dict[str, Any] = {}
    named: dict[str, str] = {}
    if getattr(args, "auth_token", None):
        tokens = {k: dataclasses.asdict(v) for k, v in config.auth.tokens.items()}
        for item in args.auth_token:
            token, _, principal = item.partition("=")
            if not token.strip():
                raise EmulatorError("--auth-token: the token is empty; give TOKEN[=PRINCIPAL]")
            tokens[token] = {"principal": principal or "token-user"}
        overrides["auth.tokens"], named["auth.tokens"] = tokens, "--auth-token"
    keys = [{"file": f} for f in getattr(args, "jwt_key", None) or []]
    if getattr(args, "jwt_secret_env", None):
        keys.append({"secret_env": args.jwt_secret_env})
    # Dotted keys, not a whole `auth.jwt`: settings from the environment stay unless a flag
    # sets the same one.
    if keys:
        known = [dataclasses.asdict(k) for k in config.auth.jwt.keys] if config.auth.jwt else []
        overrides["auth.jwt.keys"] = [*known, *keys]
    if getattr(args, "authz_policy", None):
        overrides["authorization"] = _json_file(args.authz_policy, "--authz-policy")
        named["authorization"] = f"--authz-policy {args.authz_policy}"
    return overrides, named


def _json_file(path: str, flag: str) -> Any:
    import json

    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise EmulatorError(f"{flag} {path}: cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise EmulatorError(f"{flag} {path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


def _setup_logging(config: Config) -> None:
    from emulator.logs import configure

    configure(config.log_format, config.log_stream)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _TOOLS:
        module = importlib.import_module(_TOOLS[argv[0]][0])
        try:
            code: int = module.run(argv[1:])
        except EmulatorError as exc:
            print(f"emulate {argv[0]}: error: {exc}", file=sys.stderr)
            return EXIT_SETUP
        return code
    check = bool(argv) and argv[0] == "check"
    record = bool(argv) and argv[0] == "record"
    if record:
        args = _record_parser().parse_args(argv[1:])
    else:
        args = (_check_parser() if check else _parser()).parse_args(argv[1:] if check else argv)
    args.recording = record
    try:
        return _run(args, check)
    except Interrupted as stop:
        # Compiling contracts or importing behaviours can take a while: a stop asked for then
        # ends the start-up at once, with the status a signal gives (128 + its number).
        name = signal.Signals(stop.signum).name
        print(f"emulate: stopped by {name} while starting", file=sys.stderr)
        return 128 + stop.signum


def _run(args: argparse.Namespace, check: bool) -> int:
    _starting_signals()
    try:
        config = _config(args)
        _setup_logging(config)
        from emulator.admin.serve import attach_admin
        from emulator.control import ControlPlane
        from emulator.runtime.server import EmulatorServer

        server = EmulatorServer(config)
        control = ControlPlane(server)
        attach_admin(control)
        from emulator.environment import CONFIG_VARIABLE
        from emulator.runtime.reload import attach_reload

        # A reload reads the config as this start did: the file, the variables, the flags.
        config_file = args.config or os.environ.get(CONFIG_VARIABLE)
        attach_reload(control, lambda: _config(args), config_file)
        journal_out = None
        if not check:  # check serves nothing, so it writes (and creates) no file either
            from emulator.journal_out import attach_journal_out

            journal_out = attach_journal_out(server)
    except ContractsChanged as exc:  # a drift from the lock: 1, as a check that found one
        print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_DRIFT
    except EmulatorError as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    if check:
        described = server.contracts.describe()
        methods = sum(len(m) for m in described.values())
        shaped = len(list(server.registry))
        stubs = _stubs_by_method(server)
        on = f" on {_count(len(stubs), 'method')}" if stubs else ""
        for warning in server.snapshot.warnings:
            print(f"emulate check: warning: {warning}", file=sys.stderr)
        print(
            f"ok: {_count(len(described), 'service')}, {_count(methods, 'method')}, "
            f"{shaped} with behaviours, {_count(len(server.snapshot.stubs), 'stub')}{on}"
            + (f"; contracts as locked in {server.config.locked}" if server.config.locked else "")
        )
        return 0
    try:
        code = asyncio.run(_serve(server))
    except EmulatorError as exc:
        print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    finally:
        if journal_out is not None:
            journal_out.close()  # after the drain: calls that finished in it are in the file
    if getattr(args, "recording", False):
        code = _recorded(server, code, check=args.check)
    if _behaviours_still_running():
        # A sync behaviour still running past the grace period would hold the interpreter
        # open (its thread cannot be cancelled): the grace period is the promise, so leave now.
        log.warning("sync behaviours still running after the grace period: exiting anyway")
        _exit_now(code)
    return code


def _recorded(server: Any, code: int, *, check: bool) -> int:
    """What `emulate record` wrote, said once it has stopped; with --check, the leak check."""
    proxy = server.proxy
    files = proxy.files
    paths = files.paths
    print(
        f"recorded {_count(files.recorded, 'call')} in {_count(len(paths), 'file')} under "
        f"{files.out}",
        file=sys.stderr,
    )
    if files.unwritten:  # (the reason was logged when the last write failed)
        names = ", ".join(str(path) for path in files.unwritten)
        print(
            f"emulate record: error: {_count(len(files.unwritten), 'file')} could not be "
            f"written, their calls are lost: {names}",
            file=sys.stderr,
        )
        code = code or 1
    if not check:
        return code
    if proxy.pseudonymizer is None:
        print(
            "emulate record --check: no record.pseudonymize rules: nothing to check",
            file=sys.stderr,
        )
        return code
    from emulator.record.pseudonyms import leaks

    found = leaks(paths, proxy.pseudonymizer.labels)  # (the field of each, never the value)
    for place in found:
        print(f"emulate record --check: {place}", file=sys.stderr)
    if found:
        return 1
    print(
        f"emulate record --check: no original value of a pseudonymized field in "
        f"{_count(len(paths), 'file')}",
        file=sys.stderr,
    )
    return code


def _starting_signals() -> None:
    """Until the server's loop takes them over: SIGINT/SIGTERM stop the start-up, SIGHUP (whose
    default would end the process without a word) is noted and ignored."""

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    def hangup(signum: int, frame: object) -> None:
        print(
            "emulate: SIGHUP while starting: ignored (once serving, SIGHUP reloads)",
            file=sys.stderr,
        )

    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (main() run in a test)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, hangup)


def _behaviours_still_running(settle: float = 0.5) -> bool:
    """Idle worker threads end by themselves once the pool is shut down, a moment after the
    server stopped: wait that moment, so that only a thread running a behaviour counts."""
    from emulator.runtime.server import WORKER_THREADS  # loaded already: it served

    deadline = time.monotonic() + settle
    workers = [t for t in threading.enumerate() if t.name.startswith(WORKER_THREADS)]
    for thread in workers:
        thread.join(max(0.0, deadline - time.monotonic()))
    return any(thread.is_alive() for thread in workers)


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stubs_by_method(server: Any) -> dict[str, int]:
    """Method path → how many stubs may answer it (a stub with a method pattern counts for each
    method it names)."""
    counts: dict[str, int] = {}
    for stub in server.snapshot.stubs:
        for spec in stub.methods:
            counts[spec.path] = counts.get(spec.path, 0) + 1
    return counts


def _banner(server: Any) -> None:
    print(f"emulator listening on {server.target}")
    unimplemented = server.snapshot.unimplemented
    stubs = _stubs_by_method(server)
    for name, spec in server.contracts.services.items():
        paths = {m: f"/{name}/{m}" for m in spec.methods}
        missing = [m for m, path in paths.items() if path in unimplemented.messages]
        shaped = [m for m, path in paths.items() if server.registry.get(path) and m not in missing]
        note = f", behaviours: {', '.join(shaped)}" if shaped else ""
        stubbed = [f"{m} ({stubs[p]})" for m, p in paths.items() if p in stubs and m not in missing]
        note += f"; stubs: {', '.join(stubbed)}" if stubbed else ""  # after a list: ; not ,
        if missing:
            hidden = name in unimplemented.hidden_services
            note += ", unimplemented" + (" and hidden" if hidden else "")
            note += "" if len(missing) == len(paths) else f": {', '.join(missing)}"
        print(f"  {name} ({_count(len(spec.methods), 'method')}{note})")
    admin = server.admin
    if admin is not None:
        host = server.config.admin.host or server.host
        where = f"port {admin.port}" if admin.port is not None else "this port"
        http = (
            f", JSON over HTTP at http://{host}:{admin.http_port}/admin/v1"
            if admin.http_port is not None
            else ""
        )
        print(f"  admin: emulator.admin.v1.Admin on {where}{http}")
    proxy = getattr(server, "proxy", None)
    if proxy is not None:
        methods = ", ".join(proxy.methods)
        to = f", recording to {proxy.files.out}" if proxy.files is not None else ""
        where = proxy.upstream.target
        print(f"  proxy: what nothing else answers of {methods} goes to {where}{to}")
    # Last, as scripts that read the banner wait for it.
    print("  grpc.health.v1.Health, grpc.reflection.v1.ServerReflection (+v1alpha)")
    sys.stdout.flush()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


async def _serve(server: Any) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        if not stopping.is_set():
            stopping.set()
            return
        # A second signal while draining means "now": exit as a shell reports a process
        # ended by that signal (128 + its number: 130 for SIGINT, 143 for SIGTERM).
        log.warning("second %s: exiting now, without waiting for in-flight calls", sig.name)
        _exit_now(128 + sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    hangup = getattr(signal, "SIGHUP", None)
    reloads: set[asyncio.Task[Any]] = set()

    def reload() -> None:
        # As daemons do: SIGHUP reloads (its default action would end the process).
        task = loop.create_task(server.reloader.reload("SIGHUP"))
        reloads.add(task)  # (a reference, or the task may be collected mid-way)
        task.add_done_callback(reloads.discard)

    if hangup is not None:
        loop.add_signal_handler(hangup, reload)
    await server.start(on_listening=lambda: _banner(server))
    await stopping.wait()
    log.info("stopping: draining in-flight calls (grace %.1fs)", server.config.server.grace_period)
    await server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

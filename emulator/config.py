"""One validated configuration, from emulator.yaml, command-line flags or keyword arguments.

Every source becomes a plain mapping first; `Config.from_mapping` then checks it against the
dataclasses below (with `_schema`), so the file, the flags and `Emulator(**kwargs)` share one set
of rules and one set of messages. Unknown keys and wrong types are errors that name the key (and,
for a file, the line). Features add their own sections as further dataclasses.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from emulator._schema import ByteSize, Duration, build, invalid, parse_duration, where
from emulator.admin.config import AdminConfig
from emulator.errors import ConfigError
from emulator.faults.checks import check_faults
from emulator.faults.config import FaultConfig, RateLimitConfig
from emulator.record.config import ProxyConfig, RecordConfig, ReplayConfig
from emulator.security.config import (
    BUILTIN_EXEMPT,
    AuthConfig,
    JwtConfig,
    JwtKeyConfig,
    StaticTokenConfig,
    TlsConfig,
    check_security,
)
from emulator.telemetry.config import LogConfig, TelemetryConfig
from emulator.validation.config import ValidationConfig

__all__ = [
    "BUILTIN_EXEMPT",
    "AdminConfig",
    "AuthConfig",
    "Config",
    "DefaultsConfig",
    "JournalConfig",
    "JwtConfig",
    "JwtKeyConfig",
    "ServerConfig",
    "StaticTokenConfig",
    "TlsConfig",
    "ValidationConfig",
    "load_config_file",
    "parse_duration",
]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """The gRPC server: where it listens, its threads and its connection limits."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to listen on; an IPv6 address may be written `::1` or `[::1]`"},
    )
    port: int = field(default=50051, metadata={"help": "port to listen on; 0 picks a free one"})
    grace_period: Duration = field(
        default=5.0, metadata={"help": "how long SIGTERM and SIGINT wait for in-flight calls"}
    )
    workers: int = field(default=16, metadata={"help": "threads that run sync behaviour methods"})
    # Connection-level faults grpc can express: GOAWAY after this age, streams per connection.
    max_connection_age: Duration | None = field(
        default=None,
        metadata={"help": "connections older than this get a GOAWAY and clients reconnect"},
    )
    max_concurrent_streams: int | None = field(
        default=None, metadata={"help": "calls in flight at once on one connection"}
    )
    # An async behaviour that never awaits freezes every call: say so after this long (0: never).
    loop_block_warning: Duration = field(
        default=1.0,
        metadata={
            "help": "log an async behaviour that holds the event loop this long, naming its "
            "line; `0s` turns it off"
        },
    )
    # Request headers grpc accepts, in bytes (grpc's default is 8 KiB: too small for big JWTs).
    max_metadata_size: ByteSize | None = field(
        default=None,
        metadata={
            "help": "largest request headers accepted, 1KiB to 16MiB (unset: grpc's 8 KiB); "
            "raise it for big JWTs"
        },
    )
    # Response compression of every call unless a behaviour says otherwise (ctx.set_compression).
    compression: Literal["none", "identity", "gzip", "deflate"] = field(
        default="none",
        metadata={
            "help": "response compression of the contract's methods (health and reflection stay "
            "uncompressed); a behaviour may choose otherwise with `ctx.set_compression()`"
        },
    )


@dataclass(frozen=True, kw_only=True)
class DefaultsConfig:
    """Default responses: what a method without a behaviour answers."""

    stream_messages: int = field(
        default=3, metadata={"help": "messages in a default server stream, 0 to 10000"}
    )
    # Enum fields: the first declared value other than 0 in every response, or one drawn per
    # request from the seeded generator (which follows the request bytes, uuids and all).
    enums: Literal["first", "seeded"] = field(
        default="first",
        metadata={
            "help": "enum fields of defaults: `first` declared value other than 0, or `seeded` "
            "(drawn per request)"
        },
    )
    # Checked against the contracts when the emulator starts (emulator.behavior.pins).
    fields: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "`full.message.Name.field` → its value in every default response"},
    )


@dataclass(frozen=True, kw_only=True)
class JournalConfig:
    """The record of every call, bounded so long runs do not grow the emulator's memory."""

    limit: int = field(default=10_000, metadata={"help": "calls kept; the oldest are dropped"})
    max_bytes: ByteSize = field(
        default=64 * 1024 * 1024,
        metadata={
            "help": "request and response bytes all kept calls may hold; the oldest calls are "
            "dropped beyond it, the newest is always kept"
        },
    )
    keep_messages: int = field(
        default=100,
        metadata={
            "help": "a stream keeps its first and last this many messages in each direction "
            "and counts the rest"
        },
    )
    redact_headers: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "more headers shown as redacted (besides authorization, cookies and API keys)"
        },
    )
    # A CI artifact that outlives the process: lines are flushed as they are written.
    out: str | None = field(
        default=None,
        metadata={
            "help": "append every finished call to this file as one JSON line (the admin API's "
            "CallRecord, redacted), flushed as it goes so a killed emulator still leaves it"
        },
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `emulate` and `Emulator(...)` take, as emulator.yaml writes it."""

    protos: tuple[str, ...] = field(
        default=(),
        metadata={"help": "contracts: directories of .proto files, .proto files, descriptor sets"},
    )
    import_paths: tuple[str, ...] = field(
        default=(), metadata={"help": "extra import roots for .proto files"}
    )
    behaviors: tuple[str, ...] = field(
        default=(), metadata={"help": "Python files or directories of Behavior classes"}
    )
    locked: str = field(
        default="",
        metadata={
            "help": "the lock file `emulate lock` wrote (`--locked` alone: emulator.lock): "
            "contracts that differ from it stop the start-up, exit 1"
        },
    )
    stubs: tuple[str | dict[str, Any], ...] = field(
        default=(),
        metadata={
            "help": "declarative stubs: stub files, folders of them (.yaml, .yml, .json), or "
            "stubs written inline"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of default responses and `ctx.rng`"})
    server: ServerConfig = field(default_factory=ServerConfig, metadata={"help": "the server"})
    defaults: DefaultsConfig = field(
        default_factory=DefaultsConfig, metadata={"help": "default responses"}
    )
    journal: JournalConfig = field(
        default_factory=JournalConfig, metadata={"help": "the call journal"}
    )
    tls: TlsConfig = field(default_factory=TlsConfig, metadata={"help": "TLS and mutual TLS"})
    auth: AuthConfig = field(default_factory=AuthConfig, metadata={"help": "bearer tokens"})
    authorization: dict[str, Any] | None = field(
        default=None, metadata={"help": "a gRFC A43 authorization policy"}
    )
    faults: tuple[FaultConfig, ...] = field(
        default=(), metadata={"help": "fault rules: which calls, when, and what goes wrong"}
    )
    rate_limits: tuple[RateLimitConfig, ...] = field(
        default=(), metadata={"help": "token-bucket limits; over one: RESOURCE_EXHAUSTED"}
    )
    header_faults: bool = field(
        default=False,
        metadata={"help": "honour `x-emulator-fault` and Envoy's `x-envoy-fault-*` headers"},
    )
    reload: bool = field(
        default=False,
        metadata={
            "help": "watch contracts, behaviours, stubs and emulator.yaml; reload on change "
            "(SIGHUP and the admin API's Reload reload without it)"
        },
    )
    max_active_faults: int | None = field(
        default=None, metadata={"help": "injected faults in flight at once (unset: no limit)"}
    )
    max_duration: dict[str, Duration] = field(
        default_factory=dict,
        metadata={"help": "method pattern → longest a call may run; slower: DEADLINE_EXCEEDED"},
    )
    validation: ValidationConfig = field(
        default_factory=ValidationConfig,
        metadata={
            "help": "requests, and responses of behaviours and stubs, checked against "
            "buf.validate rules and field_behavior"
        },
    )
    unimplemented: tuple[str, ...] = field(
        default=(), metadata={"help": "method patterns answered `UNIMPLEMENTED`"}
    )
    unimplemented_hidden: tuple[str, ...] = field(
        default=(),
        metadata={"help": "method patterns answered `UNIMPLEMENTED` and left out of reflection"},
    )
    admin: AdminConfig = field(
        default_factory=AdminConfig,
        metadata={"help": "the admin API: drive a running emulator from tests in any language"},
    )
    proxy: ProxyConfig = field(
        default_factory=ProxyConfig,
        metadata={"help": "forward the calls no stub or behaviour answers to a real service"},
    )
    record: RecordConfig = field(
        default_factory=RecordConfig,
        metadata={"help": "recordings of what the proxy forwards: where, and pseudonymized how"},
    )
    replay: ReplayConfig = field(
        default_factory=ReplayConfig,
        metadata={"help": "recordings loaded as stubs: the timings they keep"},
    )
    telemetry: TelemetryConfig = field(
        default_factory=TelemetryConfig,
        metadata={"help": "traces (OpenTelemetry), metrics (Prometheus) and request ids"},
    )
    log: LogConfig = field(default_factory=LogConfig, metadata={"help": "per-call logging"})
    log_format: Literal["text", "json"] = field(
        default="text", metadata={"help": "log lines as text or one JSON object per line"}
    )
    log_stream: Literal["stderr", "stdout"] = field(
        default="stderr",
        metadata={"help": "where log records go (the container image sets stdout)"},
    )
    # Where each key was set (`file:line` by dotted key) and the source of the rest: set by
    # from_mapping and with_overrides, not a key itself.
    _origin: ClassVar[tuple[str, Mapping[str, str]]] = ("config", {})

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "config",
        lines: Mapping[str, int] | None = None,
    ) -> Config:
        """Validate `data` (nested mappings keyed as in emulator.yaml)."""
        result: Config = build(cls, data, "", source, lines or {})
        host = result.server.host
        if host.startswith("[") and host.endswith("]"):  # `[::1]`, as in a URL, is `::1`
            server = dataclasses.replace(result.server, host=host[1:-1])
            result = dataclasses.replace(result, server=server)
        _check_values(result, source, lines or {})
        located = {key: f"{source}:{line}" for key, line in (lines or {}).items()}
        object.__setattr__(result, "_origin", (source, located))
        return result

    def method_patterns(self) -> list[tuple[str, str]]:
        """Every method pattern of this config, with the key that holds it (for error messages),
        to be checked against the contracts once they are loaded."""
        patterns: list[tuple[str, str]] = []
        patterns += [(p, f"auth.exempt[{i}]") for i, p in enumerate(self.auth.exempt)]
        patterns += [(p, "auth.scopes") for p in self.auth.scopes]
        allowed = self.tls.allowed_clients
        if isinstance(allowed, dict):
            patterns += [(p, "tls.allowed_clients") for p in allowed]
        patterns += [(p, f"tls.exempt[{i}]") for i, p in enumerate(self.tls.exempt)]
        for i, rule in enumerate(self.faults):
            patterns.append((rule.match.method, f"faults[{i}] ({rule.name}).match.method"))
        for i, limit in enumerate(self.rate_limits):
            named = f" ({limit.name})" if limit.name else ""
            patterns.append((limit.match.method, f"rate_limits[{i}]{named}.match.method"))
        patterns += [(p, "max_duration") for p in self.max_duration]
        patterns += [(p, f"unimplemented[{i}]") for i, p in enumerate(self.unimplemented)]
        hidden = self.unimplemented_hidden
        patterns += [(p, f"unimplemented_hidden[{i}]") for i, p in enumerate(hidden)]
        if self.proxy.upstream:
            patterns += [(p, f"proxy.methods[{i}]") for i, p in enumerate(self.proxy.methods)]
        return patterns

    def where(self, key: str) -> str:
        """Where a dotted key was set, for the checks that need the contracts: `file:line` when
        a config file set it, else the config's source (`Emulator(...)`, `command line`)."""
        source, located = self._origin
        probe = key
        while probe:
            if probe in located:
                return located[probe]
            probe = probe.rpartition(".")[0]
        return source

    def file_lines(self, prefix: str) -> tuple[str, dict[str, int]]:
        """The config file and the line of each key under `prefix` it set (`stubs[0].match`),
        for the checks that read those keys' values themselves."""
        source, located = self._origin
        lines = {}
        for key, at in located.items():
            if key == prefix or key.startswith((f"{prefix}.", f"{prefix}[")):
                name, _, line = at.rpartition(":")
                if line.isdigit():
                    source, lines[key] = name, int(line)
                else:
                    source = at  # set without lines: the environment, the command line
        return source, lines

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "flags") -> Config:
        """A copy with dotted keys (`server.port`) replaced; used for CLI flags over the file."""
        data = dataclasses.asdict(self)
        for dotted, value in overrides.items():
            *parents, last = dotted.split(".")
            target = data
            for part in parents:
                if target.get(part) is None:  # an optional section not set yet (auth.jwt)
                    target[part] = {}
                target = target[part]
            target[last] = value
        result = Config.from_mapping(data, source=source)
        kept = {
            key: at
            for key, at in self._origin[1].items()
            if not any(key == d or key.startswith((f"{d}.", f"{d}[")) for d in overrides)
        }
        # Each key set here is this source's (no line), so a later round of overrides (the
        # flags after the environment) does not claim the keys it left alone.
        kept.update(dict.fromkeys(overrides, source))
        object.__setattr__(result, "_origin", (source, kept))
        return result


def load_config_file(path: str | Path) -> Config:
    """Read and validate emulator.yaml; relative paths in it are relative to the file."""
    from emulator._yaml import read_yaml

    path = Path(path)
    data, lines = read_yaml(path)
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: the file must be a mapping of keys such as protos, seed, server"
        )
    base = path.parent
    if isinstance(data.get("locked"), str) and data["locked"]:
        data["locked"] = str(base / data["locked"])
    for key in ("protos", "import_paths", "behaviors", "stubs"):
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            data[key] = [str(base / v) if isinstance(v, str) else v for v in value]
    for section, keys in (("tls", ("cert", "key", "client_ca")), ("journal", ("out",))):
        values = data.get(section)
        if isinstance(values, dict):
            for key in keys:
                value = values.get(key)
                # Inline PEM is the certificate itself, never a path relative to the file.
                if isinstance(value, str) and value and not _inline_pem(value):
                    values[key] = str(base / value)
    jwt = data.get("auth", {}).get("jwt") if isinstance(data.get("auth"), dict) else None
    if isinstance(jwt, dict) and isinstance(jwt.get("keys"), list):
        for entry in jwt["keys"]:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                entry["file"] = str(base / entry["file"])
    return Config.from_mapping(data, source=str(path), lines=lines)


def _inline_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


def _check_values(config: Config, source: str, lines: Mapping[str, int]) -> None:
    def bad(key: str, message: str) -> ConfigError:
        # `faults[0] (name).when` names the rule; its line is recorded under `faults[0].when`.
        line_key = re.sub(r"^(\w+\[\d+\]) \(.*\)(?=\.|$)", r"\1", key)
        return invalid(where(source, lines, line_key), key, message)

    if not 0 <= config.server.port <= 65535:
        raise bad("server.port", f"must be 0 (any free port) to 65535, got {config.server.port}")
    size = config.server.max_metadata_size
    if size is not None and not 1024 <= size <= 16 * 1024 * 1024:
        raise bad("server.max_metadata_size", f"must be 1024 to 16777216 (bytes), got {size}")
    if config.server.workers < 1:
        raise bad("server.workers", f"must be at least 1, got {config.server.workers}")
    if not 0 <= config.defaults.stream_messages <= 10_000:
        raise bad(
            "defaults.stream_messages", f"must be 0 to 10000, got {config.defaults.stream_messages}"
        )
    if config.journal.limit < 1:
        raise bad("journal.limit", f"must be at least 1, got {config.journal.limit}")
    if config.journal.keep_messages < 1:
        raise bad(
            "journal.keep_messages", f"must be at least 1, got {config.journal.keep_messages}"
        )
    check_security(config.tls, config.auth, bad)
    check_faults(config.faults, config.rate_limits, config.max_active_faults, bad)
    _check_host(config.server.host, bad)
    _check_admin(config, bad)
    _check_telemetry(config, bad)
    _check_proxy(config, bad)


def _check_proxy(config: Config, bad: Any) -> None:
    scale = config.replay.scale
    if not scale >= 0:  # (a wait scaled below zero is no wait; nan is no number)
        raise bad("replay.scale", f"must be 0 or more (0.5: twice as fast), got {scale}")
    upstream = config.proxy.upstream
    if upstream:
        problem = _upstream_problem(upstream)
        if problem:
            raise bad("proxy.upstream", problem)


def _upstream_problem(target: str) -> str | None:
    """What is wrong with a proxy.upstream value, if anything: HOST:PORT, `[v6]:PORT`, or a
    gRPC `dns:///HOST:PORT` target."""
    import ipaddress

    expected = f"expected HOST:PORT (as catalog.internal:443 or [::1]:50051), got {target!r}"
    if re.match(r"^[a-z][a-z0-9+.-]*://", target, re.IGNORECASE) and not target.startswith(
        "dns:///"
    ):
        scheme = target.split("://", 1)[0]
        return (
            f"{expected}: leave out {scheme}://, gRPC names the host and port alone "
            "(--upstream-ca speaks TLS)"
        )
    host, _, port = target.removeprefix("dns:///").rpartition(":")
    if not host or not port.isdigit() or re.search(r"\s", target):
        return expected
    if not 1 <= int(port) <= 65535:
        return f"{expected}: the port must be 1 to 65535"
    if ":" in host:  # an IPv6 address, which needs its brackets to tell it from the port
        try:
            ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return expected
        if not (host.startswith("[") and host.endswith("]")):
            return f"{expected}: write an IPv6 address in brackets, as [::1]:50051"
    return None


def _check_telemetry(config: Config, bad: Any) -> None:
    telemetry = config.telemetry
    port = telemetry.metrics.port
    if port is not None and not 0 <= port <= 65535:
        raise bad("telemetry.metrics.port", f"must be 0 (any free port) to 65535, got {port}")
    if port and port in (config.server.port, config.admin.port, config.admin.http_port):
        raise bad("telemetry.metrics.port", f"{port} is taken by the emulator or its admin API")
    if not telemetry.metrics.path.startswith("/"):
        raise bad("telemetry.metrics.path", f"must start with /, got {telemetry.metrics.path!r}")
    if telemetry.metrics.host:
        _check_host(telemetry.metrics.host, bad, "telemetry.metrics.host")
    if telemetry.traces.keep < 0:
        raise bad("telemetry.traces.keep", f"must be 0 or more, got {telemetry.traces.keep}")
    _check_header_name(telemetry.request_id_header, bad, "telemetry.request_id_header")


def _check_admin(config: Config, bad: Any) -> None:
    admin = config.admin
    for key in ("port", "http_port"):
        port = getattr(admin, key)
        if port is not None and not 0 <= port <= 65535:
            raise bad(f"admin.{key}", f"must be 0 (any free port) to 65535, got {port}")
        if port and port == config.server.port:
            raise bad(
                f"admin.{key}",
                f"{port} is server.port already: leave admin.port unset to serve the admin API "
                "on the emulator's port, or choose another",
            )
    if admin.port and admin.port == admin.http_port:
        raise bad("admin.http_port", f"{admin.port} is admin.port already: choose another")
    if admin.host:
        _check_host(admin.host, bad, "admin.host")
    _check_header_name(admin.session_header, bad, "admin.session_header")


def _check_header_name(header: str, bad: Any, key: str) -> None:
    """A header the emulator reads or sends itself: gRPC's lower-case text header names."""
    if not re.fullmatch(r"[0-9a-z_.-]+", header) or header.endswith("-bin"):
        raise bad(
            key,
            f"{header!r} is not a header name: lower-case letters, digits, '-', '_' and '.', "
            "not ending in -bin",
        )


def _check_host(host: str, bad: Any, key: str = "server.host") -> None:
    import ipaddress

    if not host:
        raise bad(key, "must not be empty")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(
                key,
                f"{host!r} is not a host name or IP address; an IPv6 address may be written "
                "::1 or [::1], and the port goes in server.port (--port)",
            ) from None
    elif any(c.isspace() or c in "[]/" for c in host):
        raise bad(key, f"{host!r} is not a host name or IP address")

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
from typing import Any, Literal

from emulator._schema import ByteSize, Duration, build, invalid, parse_duration, where
from emulator.errors import ConfigError
from emulator.faults.config import FaultConfig, RateLimitConfig

__all__ = [
    "AuthConfig",
    "Config",
    "DefaultsConfig",
    "JournalConfig",
    "JwtConfig",
    "JwtKeyConfig",
    "ServerConfig",
    "StaticTokenConfig",
    "TlsConfig",
    "load_config_file",
    "parse_duration",
]

BUILTIN_EXEMPT = (
    "grpc.health.v1.Health/*",
    "grpc.reflection.v1.ServerReflection/*",
    "grpc.reflection.v1alpha.ServerReflection/*",
)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    grace_period: Duration = 5.0  # how long SIGTERM waits for in-flight calls
    workers: int = 16  # threads for sync behaviour methods
    # Connection-level faults grpc can express: GOAWAY after this age, streams per connection.
    max_connection_age: Duration | None = None
    max_concurrent_streams: int | None = None
    # An async behaviour that never awaits freezes every call: say so after this long (0: never).
    loop_block_warning: Duration = 1.0
    # Request headers grpc accepts, in bytes (grpc's default is 8 KiB: too small for big JWTs).
    max_metadata_size: ByteSize | None = None
    # Response compression of every call unless a behaviour says otherwise (ctx.set_compression).
    compression: Literal["none", "gzip", "deflate"] = "none"


@dataclass(frozen=True, kw_only=True)
class DefaultsConfig:
    stream_messages: int = 3  # messages in a default server stream


@dataclass(frozen=True, kw_only=True)
class JournalConfig:
    limit: int = 10_000  # calls kept; the oldest are dropped
    # Message bytes the kept calls may hold in all; the oldest calls are dropped beyond it.
    max_bytes: ByteSize = 64 * 1024 * 1024
    keep_messages: int = 100  # per stream direction: the first and last this many are kept
    redact_headers: tuple[str, ...] = ()  # secret headers besides authorization, cookie, ...


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    cert: str = ""  # server certificate chain (PEM)
    key: str = ""  # its private key (PEM)
    client_ca: str = ""  # set: clients must present a certificate this CA issued (mTLS)
    # SAN or CN identities allowed to call: a list for every method, or method pattern → list.
    allowed_clients: tuple[str, ...] | dict[str, tuple[str, ...]] = ()
    exempt: tuple[str, ...] = ()  # method patterns allowed_clients does not cover

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True, kw_only=True)
class StaticTokenConfig:
    principal: str
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class JwtKeyConfig:
    file: str = ""  # PEM public key or JWKS
    secret_env: str = ""  # environment variable holding an HMAC secret
    alg: str = ""  # pinned algorithm; default from the key (RS256, ES256, ...) or HS256
    kid: str = ""


@dataclass(frozen=True, kw_only=True)
class JwtConfig:
    keys: tuple[JwtKeyConfig, ...] = ()
    issuer: str = ""
    audience: tuple[str, ...] = ()
    leeway: Duration = 0.0
    required_claims: tuple[str, ...] = ("exp",)


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    tokens: dict[str, StaticTokenConfig] = field(default_factory=dict)
    jwt: JwtConfig | None = None
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # method → required
    exempt: tuple[str, ...] = BUILTIN_EXEMPT  # method patterns that need no token

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.jwt)


@dataclass(frozen=True, kw_only=True)
class Config:
    protos: tuple[str, ...] = ()
    import_paths: tuple[str, ...] = ()
    behaviors: tuple[str, ...] = ()
    seed: int = 0
    server: ServerConfig = field(default_factory=ServerConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    authorization: dict[str, Any] | None = None  # a gRFC A43 policy
    faults: tuple[FaultConfig, ...] = ()
    rate_limits: tuple[RateLimitConfig, ...] = ()
    header_faults: bool = False  # honour x-emulator-fault and Envoy's x-envoy-fault-* headers
    max_active_faults: int | None = None
    max_duration: dict[str, Duration] = field(default_factory=dict)  # method pattern → limit
    unimplemented: tuple[str, ...] = ()  # method patterns answered UNIMPLEMENTED
    unimplemented_hidden: tuple[str, ...] = ()  # the same, and left out of reflection
    log_format: Literal["text", "json"] = "text"
    log_stream: Literal["stderr", "stdout"] = "stderr"  # containers log to stdout

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
        return patterns

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
        return Config.from_mapping(data, source=source)


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
    for key in ("protos", "import_paths", "behaviors"):
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            data[key] = [str(base / v) if isinstance(v, str) else v for v in value]
    for section, keys in (("tls", ("cert", "key", "client_ca")),):
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
    tls = config.tls
    if bool(tls.cert) != bool(tls.key):
        raise bad("tls.cert" if not tls.cert else "tls.key", "tls needs both cert and key")
    if (tls.client_ca or tls.allowed_clients) and not tls.cert:
        key = "tls.client_ca" if tls.client_ca else "tls.allowed_clients"
        raise bad(key, "client certificates need TLS: set tls.cert and tls.key")
    if tls.allowed_clients and not tls.client_ca:
        raise bad("tls.allowed_clients", "an allowlist needs client certificates: set client_ca")
    for i, token in enumerate(config.auth.tokens):
        if not token.strip() or token != token.strip():
            problem = "a static token must not be empty nor start or end with a space"
            raise bad(f"auth.tokens[#{i + 1}]", problem)
    if config.auth.jwt is not None and not config.auth.jwt.keys:
        raise bad(
            "auth.jwt.keys",
            "JWT settings need at least one key: list auth.jwt.keys (file or secret_env) "
            "in the config file, or pass --jwt-key FILE or --jwt-secret-env NAME",
        )
    _check_faults(config, bad)
    _check_host(config.server.host, bad)


def _check_host(host: str, bad: Any) -> None:
    import ipaddress

    if not host:
        raise bad("server.host", "must not be empty")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(
                "server.host",
                f"{host!r} is not a host name or IP address; an IPv6 address may be written "
                "::1 or [::1], and the port goes in server.port (--port)",
            ) from None
    elif any(c.isspace() or c in "[]/" for c in host):
        raise bad("server.host", f"{host!r} is not a host name or IP address")


_STATUS_NAMES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def _check_faults(config: Config, bad: Any) -> None:
    names: set[str] = set()
    for i, rule in enumerate(config.faults):
        at = f"faults[{i}]"
        if not rule.name:
            raise bad(f"{at}.name", "every fault needs a name (for logs, journal and counters)")
        if rule.name in names:
            raise bad(f"{at}.name", f"{rule.name!r} is used by another fault")
        names.add(rule.name)
        at = f"faults[{i}] ({rule.name})"
        when = rule.when
        if not 0 <= when.probability <= 1:
            raise bad(f"{at}.when.probability", f"must be 0 to 1, got {when.probability}")
        if any(n < 1 for n in when.calls) or when.after_calls < 0:
            raise bad(f"{at}.when", "calls count from 1 and after_calls from 0")
        if rule.abort is not None and rule.abort.code.upper() not in _STATUS_NAMES:
            raise bad(
                f"{at}.abort.code",
                f"unknown status code {rule.abort.code!r}; use one of "
                f"{', '.join(sorted(_STATUS_NAMES))}",
            )
        if rule.abort is not None and rule.abort.details:
            from emulator.faults.rules import compile_abort  # grpc and protobuf: only when needed

            try:
                compile_abort(rule.abort, f"{at}.abort")
            except ConfigError as exc:  # add the file and line
                raise bad(exc.key or f"{at}.abort", exc.problem) from None
        if rule.delay is not None:
            delay = rule.delay
            kinds = [
                delay.fixed is not None,
                bool(delay.uniform),
                delay.normal is not None,
                delay.lognormal is not None,
            ]
            if sum(kinds) != 1:
                raise bad(f"{at}.delay", "give exactly one of fixed, uniform, normal, lognormal")
            if delay.uniform and (len(delay.uniform) != 2 or delay.uniform[0] > delay.uniform[1]):
                raise bad(f"{at}.delay.uniform", "expected [low, high] with low <= high")
            if delay.lognormal is not None and delay.lognormal.sigma < 0:
                raise bad(f"{at}.delay.lognormal.sigma", "must not be negative")
            if delay.lognormal is not None and delay.lognormal.median <= 0:
                raise bad(f"{at}.delay.lognormal.median", "must be positive")
        if rule.stream is not None and (rule.stream.abort_after or 0) < 0:
            raise bad(f"{at}.stream.abort_after", "must not be negative")
        effects = [rule.abort, rule.delay, rule.stream, rule.deadline, rule.health]
        if all(e is None for e in effects):
            raise bad(at, "a fault needs abort, delay, stream, deadline or health")
    for i, limit in enumerate(config.rate_limits):
        at = f"rate_limits[{i}]" + (f" ({limit.name})" if limit.name else "")
        if limit.rps <= 0:
            raise bad(f"{at}.rps", f"must be positive, got {limit.rps}")
        if limit.burst < 1:
            raise bad(f"{at}.burst", f"must be at least 1, got {limit.burst}")
    if config.max_active_faults is not None and config.max_active_faults < 0:
        raise bad("max_active_faults", "must not be negative")

"""The `tls` and `auth` sections of the configuration: server certificates, mutual TLS and its
allowlist, static tokens and JWTs. Checked like every section by `emulator._schema`; turned into
credentials and interceptors by `emulator.security.setup`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emulator._schema import Duration

__all__ = [
    "BUILTIN_EXEMPT",
    "AuthConfig",
    "JwtConfig",
    "JwtKeyConfig",
    "StaticTokenConfig",
    "TlsConfig",
    "check_security",
]

BUILTIN_EXEMPT = (
    "grpc.health.v1.Health/*",
    "grpc.reflection.v1.ServerReflection/*",
    "grpc.reflection.v1alpha.ServerReflection/*",
)


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS and mutual TLS; PEM values are file paths or inline PEM text."""

    cert: str = field(default="", metadata={"help": "server certificate chain (PEM); turns TLS on"})
    key: str = field(default="", metadata={"help": "the server certificate's private key (PEM)"})
    client_ca: str = field(
        default="",
        metadata={"help": "clients must present a certificate this CA issued (mutual TLS)"},
    )
    allowed_clients: tuple[str, ...] | dict[str, tuple[str, ...]] = field(
        default=(),
        metadata={
            "help": "client identities (SAN or CN) allowed to call: a list for every method, "
            "or method pattern → list"
        },
    )
    exempt: tuple[str, ...] = field(
        default=(), metadata={"help": "method patterns `allowed_clients` does not cover"}
    )

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True, kw_only=True)
class StaticTokenConfig:
    """What a static bearer token stands for."""

    principal: str = field(metadata={"help": "who the token stands for (`ctx.principal`)"})
    scopes: tuple[str, ...] = field(default=(), metadata={"help": "scopes the token grants"})


@dataclass(frozen=True, kw_only=True)
class JwtKeyConfig:
    """One key that verifies JWTs: a file or a secret from the environment."""

    file: str = field(default="", metadata={"help": "a PEM public key or a JWKS file"})
    secret_env: str = field(
        default="", metadata={"help": "environment variable holding an HMAC secret"}
    )
    alg: str = field(
        default="",
        metadata={"help": "the algorithm pinned to this key; default from the key, or HS256"},
    )
    kid: str = field(default="", metadata={"help": "key id; a token's `kid` selects its key"})


@dataclass(frozen=True, kw_only=True)
class JwtConfig:
    """JSON Web Tokens: their keys and the claims every token must carry."""

    keys: tuple[JwtKeyConfig, ...] = field(
        default=(), metadata={"help": "keys that verify tokens (at least one)"}
    )
    issuer: str = field(default="", metadata={"help": "required `iss` claim"})
    audience: tuple[str, ...] = field(
        default=(), metadata={"help": "accepted `aud` values; a token must name one"}
    )
    leeway: Duration = field(
        default=0.0, metadata={"help": "clock skew allowed on `exp` and `nbf`"}
    )
    required_claims: tuple[str, ...] = field(
        default=("exp",), metadata={"help": "claims every token must carry"}
    )


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Bearer tokens: static ones and JWTs, and the scopes methods require."""

    tokens: dict[str, StaticTokenConfig] = field(
        default_factory=dict, metadata={"help": "static tokens: token → principal and scopes"}
    )
    jwt: JwtConfig | None = field(default=None, metadata={"help": "JWT verification"})
    scopes: dict[str, tuple[str, ...]] = field(
        default_factory=dict, metadata={"help": "method pattern → scopes a caller needs"}
    )
    exempt: tuple[str, ...] = field(
        default=BUILTIN_EXEMPT,
        metadata={
            "help": "method patterns that need no token; replaces the default (health and "
            "reflection), so list them too to keep them open"
        },
    )

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.jwt)


def check_security(tls: TlsConfig, auth: AuthConfig, bad: Callable[[str, str], Exception]) -> None:
    """The `tls` and `auth` keys that go together; `bad(key, problem)` makes the error (with
    the file and line of the key)."""
    if bool(tls.cert) != bool(tls.key):
        raise bad("tls.cert" if not tls.cert else "tls.key", "tls needs both cert and key")
    if (tls.client_ca or tls.allowed_clients) and not tls.cert:
        key = "tls.client_ca" if tls.client_ca else "tls.allowed_clients"
        raise bad(key, "client certificates need TLS: set tls.cert and tls.key")
    if tls.allowed_clients and not tls.client_ca:
        raise bad("tls.allowed_clients", "an allowlist needs client certificates: set client_ca")
    for i, token in enumerate(auth.tokens):
        if not token.strip() or token != token.strip():
            problem = "a static token must not be empty nor start or end with a space"
            raise bad(f"auth.tokens[#{i + 1}]", problem)
    if auth.jwt is not None and not auth.jwt.keys:
        raise bad(
            "auth.jwt.keys",
            "JWT settings need at least one key: list auth.jwt.keys (file or secret_env) "
            "in the config file, or pass --jwt-key FILE or --jwt-secret-env NAME",
        )

"""Turn the tls, auth and authorization settings into server credentials and interceptors."""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from emulator.chain import Interceptor
from emulator.config import Config
from emulator.contracts.patterns import method_matches, served_paths
from emulator.errors import ConfigError, RpcAbort
from emulator.security.authz import Policy

if TYPE_CHECKING:
    from emulator.contracts import Contracts
    from emulator.security.auth import AuthInterceptor
    from emulator.security.identity import IdentityInterceptor
    from emulator.security.tokens import TokenVerifier

__all__ = [
    "BuiltinGuard",
    "Security",
    "build_security",
    "check_policy",
    "loopback",
    "pem",
    "warn_if_exposed",
]

log = logging.getLogger("emulator")
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@dataclass
class Security:
    credentials: grpc.ServerCredentials | None = None
    interceptors: list[Interceptor] = field(default_factory=list)
    identity: IdentityInterceptor | None = None
    auth: AuthInterceptor | None = None


def pem(value: str, key: str) -> bytes:
    """PEM material from a file path, or given inline (a value starting with -----BEGIN)."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    # Only something that looks like a path is shown: inline key material never is.
    shown = value if len(value) < 256 and "\n" not in value else "(inline value)"
    try:
        data = Path(value).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: {shown}: cannot be read: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{key}: {shown}: not a PEM file")
    return data


def build_security(config: Config) -> Security:
    # Imports stay inside the branches: an emulator without TLS or tokens never loads
    # cryptography or PyJWT (some 150 ms of start-up).
    security = Security()
    tls = config.tls
    if tls.enabled:
        ca = pem(tls.client_ca, "tls.client_ca") if tls.client_ca else None
        cert, key = pem(tls.cert, "tls.cert"), pem(tls.key, "tls.key")
        _check_pair(cert, key)
        if ca is not None:
            _check_ca(ca)
        try:
            security.credentials = grpc.ssl_server_credentials(
                [(key, cert)],
                root_certificates=ca,
                require_client_auth=ca is not None,
            )
        except (RuntimeError, ValueError) as exc:  # pragma: no cover - grpc checks lazily
            raise ConfigError(f"tls: the certificate or key is not usable: {exc}") from None
        if ca is not None:
            from emulator.security.identity import IdentityInterceptor

            allowed = tls.allowed_clients
            per_method = (
                allowed if isinstance(allowed, dict) else ({"*": allowed} if allowed else {})
            )
            security.identity = IdentityInterceptor(per_method, tls.exempt)
            security.interceptors.append(security.identity)
        if tls.exempt and not tls.allowed_clients:
            raise ConfigError(
                "tls.exempt: exempts methods from tls.allowed_clients, which is not set",
                key="tls.exempt",
            )
    auth = config.auth
    if auth.enabled or config.authorization is not None or auth.scopes:
        from emulator.security.auth import AuthInterceptor
        from emulator.security.authz import ScopeRules

        policy = Policy(config.authorization) if config.authorization is not None else None
        scopes = ScopeRules(auth.scopes) if auth.scopes else None
        security.auth = AuthInterceptor(
            _verifier(config), policy=policy, scopes=scopes, exempt=auth.exempt
        )
        security.interceptors.append(security.auth)
    return security


def check_policy(config: Config, contracts: Contracts) -> None:
    """A43 paths are checked as A43 writes them, with their leading `/`."""
    if config.authorization is not None:
        Policy(config.authorization).check_paths(served_paths(contracts))


def _check_pair(cert: bytes, key: bytes) -> None:
    """grpc only fails at bind time, with a message about the port: check the pair here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert)
    except ValueError:
        raise ConfigError("tls.cert: not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ConfigError("tls.key: not an unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.PEM
    if certificate.public_key().public_bytes(encoding, public) != private.public_key().public_bytes(
        encoding, public
    ):
        raise ConfigError(
            "tls.key does not belong to tls.cert: give the key the certificate was made for"
        )


def _check_ca(ca: bytes) -> None:
    """A bad client CA would also only fail at bind time, as "cannot listen": check it here."""
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(ca)
    except ValueError:
        raise ConfigError(
            "tls.client_ca: not PEM certificates: give the CA certificate(s) that sign the "
            "clients' certificates (`emulate certs` writes ca.pem)"
        ) from None


def _verifier(config: Config) -> TokenVerifier:
    from emulator.security.tokens import Identity, JwtKey, TokenVerifier, load_keys

    auth = config.auth
    static = {
        token: Identity(entry.principal, frozenset(entry.scopes))
        for token, entry in auth.tokens.items()
    }
    keys: list[JwtKey] = []
    jwt = auth.jwt
    if jwt is not None:
        for index, key in enumerate(jwt.keys):
            keys.extend(
                load_keys(
                    file=key.file,
                    secret_env=key.secret_env,
                    alg=key.alg,
                    kid=key.kid,
                    where=f"auth.jwt.keys[{index}]",
                )
            )
    return TokenVerifier(
        static=static,
        keys=keys,
        issuer=jwt.issuer if jwt else "",
        audience=jwt.audience if jwt else (),
        leeway=jwt.leeway if jwt else 0.0,
        required_claims=jwt.required_claims if jwt else (),
    )


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: Config) -> None:
    auth = config.auth
    if auth.enabled and not any(method_matches(p, _HEALTH_CHECK) for p in auth.exempt):
        # `auth.exempt` (the file's list, --auth-exempt, EMULATOR_AUTH_EXEMPT) replaces the
        # default list: a probe that sends no token then fails, with nothing else to say why.
        log.warning(
            "grpc.health.v1.Health needs a token: auth.exempt no longer lists it, so health "
            "probes without one are refused; add grpc.health.v1.Health/* (and the reflection "
            "services, for grpcurl) to auth.exempt to keep them open"
        )
    host = config.server.host
    if loopback(host) or config.tls.enabled:
        return
    log.warning("serving on %s without TLS: anyone on the network can call it", host)
    if config.auth.enabled:
        log.warning("bearer tokens travel in plaintext to %s: configure tls.cert and tls.key", host)


class BuiltinGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Applies the client allowlist and token auth to health and reflection, which grpcio's own
    handlers serve outside the emulator's chain: the same `IdentityInterceptor.admit()` and
    `AuthInterceptor.authorize()`, with the certificate's names as A43 principals."""

    def __init__(self, identity: IdentityInterceptor | None, auth: AuthInterceptor | None) -> None:
        self._identity = identity
        self._auth = auth

    async def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        path = details.method
        if not path.startswith(("/grpc.health.", "/grpc.reflection.")):
            return await continuation(details)
        auth = self._auth if self._auth is not None and not self._auth.exempt(path) else None
        handler = await continuation(details)
        if handler is None or (self._identity is None and auth is None):
            return handler
        metadata = tuple(details.invocation_metadata or ())
        identity = self._identity

        async def admit(context: grpc.aio.ServicerContext) -> None:
            # The certificate is only known to the call's context, hence a check per handler.
            identities: tuple[str, ...] = ()
            try:
                if identity is not None:
                    from emulator.security.identity import names_in_certificate

                    pem = context.auth_context().get("x509_pem_cert")
                    identities = names_in_certificate(pem[0]) if pem else ()
                    identity.admit(path, identities)
                if auth is not None:
                    auth.authorize(path, metadata, identities)
            except RpcAbort as refusal:
                await context.abort(refusal.code, refusal.message)

        return _guarded(handler, admit)


def _guarded(handler: Any, admit: Callable[[Any], Any]) -> Any:
    """`handler` with `admit(context)` run before its behaviour, whatever the RPC kind."""
    kind = ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary"
    )
    behaviour = getattr(handler, kind)
    if inspect.isasyncgenfunction(behaviour):

        async def streaming(request: Any, context: Any) -> Any:
            await admit(context)
            async for response in behaviour(request, context):
                yield response

        return handler._replace(**{kind: streaming})

    async def plain(request: Any, context: Any) -> Any:
        await admit(context)
        result = behaviour(request, context)
        return await result if inspect.isawaitable(result) else result

    return handler._replace(**{kind: plain})

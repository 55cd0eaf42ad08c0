"""Turn the tls, auth and authorization settings into server credentials and interceptors."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from emulator.chain import Interceptor
from emulator.config import Config
from emulator.errors import ConfigError, RpcAbort

if TYPE_CHECKING:
    from emulator.chain.auth import AuthInterceptor
    from emulator.security.tokens import TokenVerifier

__all__ = ["Security", "build_security", "pem", "warn_if_exposed"]

log = logging.getLogger("emulator")


@dataclass
class Security:
    credentials: grpc.ServerCredentials | None = None
    interceptors: list[Interceptor] = field(default_factory=list)
    client_certs: bool = False
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
        try:
            security.credentials = grpc.ssl_server_credentials(
                [(key, cert)],
                root_certificates=ca,
                require_client_auth=ca is not None,
            )
        except (RuntimeError, ValueError) as exc:  # pragma: no cover - grpc checks lazily
            raise ConfigError(f"tls: the certificate or key is not usable: {exc}") from None
        if ca is not None:
            from emulator.chain.identity import IdentityInterceptor

            allowed = tls.allowed_clients
            per_method = (
                allowed if isinstance(allowed, dict) else ({"*": allowed} if allowed else {})
            )
            security.client_certs = True
            security.interceptors.append(IdentityInterceptor(per_method))
    auth = config.auth
    if auth.enabled or config.authorization is not None or auth.scopes:
        from emulator.chain.auth import AuthInterceptor
        from emulator.security.authz import Policy, ScopeRules

        policy = Policy(config.authorization) if config.authorization is not None else None
        scopes = ScopeRules(auth.scopes) if auth.scopes else None
        security.auth = AuthInterceptor(
            _verifier(config), policy=policy, scopes=scopes, exempt=auth.exempt
        )
        security.interceptors.append(security.auth)
    return security


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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(config: Config) -> None:
    host = config.server.host
    if _loopback(host) or config.tls.enabled:
        return
    log.warning("serving on %s without TLS: anyone on the network can call it", host)
    if config.auth.enabled:
        log.warning("bearer tokens travel in plaintext to %s: configure tls.cert and tls.key", host)


class BuiltinGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Applies token auth to health and reflection when `auth.exempt` no longer covers them
    (they are served by grpcio's own handlers, outside the emulator's chain)."""

    def __init__(self, auth: AuthInterceptor) -> None:
        self._auth = auth

    async def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        path = details.method
        if self._auth.exempt(path) or not path.startswith(("/grpc.health.", "/grpc.reflection.")):
            return await continuation(details)
        try:
            self._auth.authorize(path, tuple(details.invocation_metadata or ()), ())
        except RpcAbort as refusal:
            return _refusing(refusal)
        return await continuation(details)


def _refusing(refusal: RpcAbort) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: Any) -> None:
        await context.abort(refusal.code, refusal.message)

    # Any handler shape can refuse: the status ends the call before a message is read.
    return grpc.stream_stream_rpc_method_handler(abort)

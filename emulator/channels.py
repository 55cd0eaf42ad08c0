"""Client channels to an in-process emulator: plaintext, or TLS when the emulator serves TLS.

    Emulator(protos=..., tls={"cert": "certs/server.pem", "key": "certs/server-key.pem",
                              "client_ca": "certs/ca.pem"},
             client_tls={"ca": "certs/ca.pem", "cert": "certs/ci.pem", "key": "certs/ci-key.pem"})

With TLS, `emu.channel()` trusts `client_tls["ca"]` (by default the server certificate's own
chain, when it ends in a self-signed certificate) and, for mutual TLS, presents the client
certificate `client_tls["cert"]` / `["key"]`. Values are PEM text or bytes, or file paths.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from emulator.config import Config
from emulator.errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["ClientTls", "channel_security"]

_KEYS = ("ca", "cert", "key", "server_name")

PemValue = str | bytes


@dataclass(frozen=True)
class ClientTls:
    """What `emu.channel()` needs to speak TLS to the emulator."""

    root_certificates: bytes | None  # None: the CA is unknown, channel() says what to pass
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_name: str | None = None  # the name checked in the server certificate, if not the host

    def credentials(
        self, client_cert: PemValue | None = None, client_key: PemValue | None = None
    ) -> grpc.ChannelCredentials:
        if self.root_certificates is None:
            raise ConfigError(
                "the emulator serves TLS with a certificate that is not self-signed: give the CA "
                "that issued it, Emulator(..., client_tls={'ca': 'certs/ca.pem'})",
                key="client_tls.ca",
            )
        key, chain = self.private_key, self.certificate_chain
        if client_cert is not None or client_key is not None:
            key, chain = _identity(
                client_cert, client_key, "channel(client_cert=..., client_key=...)"
            )
        return grpc.ssl_channel_credentials(self.root_certificates, key, chain)

    def options(self) -> list[tuple[str, Any]]:
        # A subchannel of its own: grpc would otherwise reuse a connection that another
        # channel opened to the same address with another client certificate.
        options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options


def channel_security(config: Config, given: Mapping[str, Any] | None) -> ClientTls | None:
    """The client side of the emulator's `tls`, or None when it serves plaintext. Bad keys and
    unreadable files fail here, when the Emulator is made."""
    if given is not None and not isinstance(given, Mapping):
        raise ConfigError(
            f"client_tls must be a mapping of {', '.join(_KEYS)}, not {type(given).__name__}",
            key="client_tls",
        )
    given = dict(given or {})
    unknown = sorted(set(given) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"client_tls: unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}",
            key=f"client_tls.{unknown[0]}",
        )
    if not config.tls.enabled:
        if given:
            raise ConfigError(
                "client_tls needs the emulator to serve TLS: set tls={'cert': ..., 'key': ...}",
                key="client_tls",
            )
        return None
    from emulator.security.setup import pem

    server_chain = pem(config.tls.cert, "tls.cert")
    ca = _pem(given["ca"], "client_tls.ca") if given.get("ca") else _self_signed_root(server_chain)
    key, chain = (None, None)
    if given.get("cert") or given.get("key"):
        key, chain = _identity(given.get("cert"), given.get("key"), "client_tls")
    server_name = given.get("server_name") or _server_name(server_chain, config.server.host)
    if server_name is not None and not isinstance(server_name, str):
        raise ConfigError(
            "client_tls.server_name must be a host name", key="client_tls.server_name"
        )
    return ClientTls(ca, key, chain, server_name)


def _identity(cert: PemValue | None, key: PemValue | None, where: str) -> tuple[bytes, bytes]:
    if not cert or not key:
        missing = "key" if cert else "cert"
        raise ConfigError(
            f"{where}: a client certificate needs both cert and key; {missing} is missing",
            key=f"client_tls.{missing}",
        )
    return _pem(key, "client_tls.key"), _pem(cert, "client_tls.cert")


def _pem(value: Any, key: str) -> bytes:
    from emulator.security.setup import pem

    if isinstance(value, bytes):
        if b"-----BEGIN" not in value:
            raise ConfigError(f"{key}: not PEM data", key=key)
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: give PEM text or bytes, or a file path", key=key)
    return pem(value, key)


def _certificates(chain: bytes) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return list(x509.load_pem_x509_certificates(chain))
    except ValueError:
        return []


def _self_signed_root(chain: bytes) -> bytes | None:
    """The server chain, as roots, when it ends in a self-signed certificate: trusting it then
    verifies the server. Otherwise the CA must be given."""
    from cryptography.hazmat.primitives import serialization

    certs = _certificates(chain)
    if not certs or certs[-1].issuer != certs[-1].subject:
        return None
    return certs[-1].public_bytes(serialization.Encoding.PEM)


def _server_name(chain: bytes, host: str) -> str | None:
    """The name to check in the server certificate when it does not name `host` itself (a
    certificate for "localhost" served on 127.0.0.1): "localhost" if it names that, else its
    first DNS name. None when the host matches or the certificate names nothing."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certs = _certificates(chain)
    if not certs:
        return None
    leaf = certs[0]
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = list(sans.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        ipaddress.ip_address(host)
        if host in ips:
            return None
    except ValueError:
        if host in dns:
            return None
    if "localhost" in dns:
        return "localhost"
    plain = [str(d) for d in dns if not d.startswith("*")]  # a wildcard names no host
    if plain:
        return plain[0]
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None

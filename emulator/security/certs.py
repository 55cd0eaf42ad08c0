"""Certificates for TLS and mutual TLS, made with the cryptography library.

    ca = CertificateAuthority()
    server = ca.issue("localhost", hosts=["api.test"])           # SANs: localhost, 127.0.0.1, ::1
    client = ca.issue("ci-client", client=True, uris=["spiffe://acme/ci"])
    server.cert_pem, server.key_pem, ca.cert_pem                  # bytes, in memory

`emulate certs --out certs/` writes the same material to files (keys mode 0600).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.errors import ConfigError

__all__ = ["CertificateAuthority", "IssuedCert", "write_certs"]

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    name: str
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str], uris: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    entries.extend(x509.UniformResourceIdentifier(uri) for uri in uris)
    return x509.SubjectAlternativeName(entries)


class CertificateAuthority:
    """A throwaway CA (ECDSA P-256) that issues server and client certificates."""

    def __init__(self, name: str = "grpc-emulator test CA", days: int = 365) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = _key_pem(self._key)

    def issue(
        self,
        name: str,
        *,
        hosts: Sequence[str] = (),
        uris: Sequence[str] = (),
        client: bool = False,
        days: int = 365,
        not_before: datetime.datetime | None = None,
    ) -> IssuedCert:
        """A server certificate (SANs: localhost, 127.0.0.1, ::1 and `hosts`) or, with
        `client=True`, a client certificate (EKU clientAuth) whose CN and DNS SAN are `name`.
        `not_before` and `days` let a test make an expired or not-yet-valid certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        names = [name, *hosts] if client else [*LOCAL_NAMES, name, *hosts]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(names, uris), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCert(name, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_certs(
    out: Path,
    *,
    hosts: Sequence[str] = (),
    clients: Sequence[str] = (),
    days: int = 365,
    force: bool = False,
) -> list[Path]:
    """Write ca.pem, server.pem, server-key.pem and CLIENT.pem / CLIENT-key.pem per client."""
    for name in clients:
        if not name or Path(name).name != name:
            raise ConfigError(f"--client {name!r}: a client name must be a plain file name")
    ca = CertificateAuthority(days=days)
    server = ca.issue("localhost", hosts=hosts, days=days)
    files: dict[str, bytes] = {
        "ca.pem": ca.cert_pem,
        "ca-key.pem": ca.key_pem,
        "server.pem": server.cert_pem,
        "server-key.pem": server.key_pem,
    }
    for name in dict.fromkeys(clients):
        clash = {f"{name}.pem", f"{name}-key.pem"} & set(files)
        if clash:
            raise ConfigError(
                f"--client {name!r}: its files would replace {', '.join(sorted(clash))}"
            )
        issued = ca.issue(name, client=True, days=days)
        files[f"{name}.pem"] = issued.cert_pem
        files[f"{name}-key.pem"] = issued.key_pem
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        raise ConfigError(
            f"{out}: {', '.join(existing)} already exist; pass --force to overwrite them"
        )
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = out / name
            private = name.endswith("-key.pem")
            # Keys are created 0600 from the start, never world-readable even for a moment.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(path, 0o600 if private else 0o644)
            written.append(path)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write certificates: {exc.strerror}") from None
    return written

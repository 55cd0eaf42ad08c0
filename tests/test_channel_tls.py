"""`emu.channel()`, `aio_channel()` and `stub()` speak TLS when the emulator serves TLS: they
trust `client_tls["ca"]` (or a self-signed server certificate) and, for mutual TLS, present the
client identity of `client_tls` or of `channel(client_cert=..., client_key=...)`."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator import ConfigError, Emulator, EmulatorError
from emulator.security import CertificateAuthority, IssuedCert
from tests.conftest import PROTOS

CATALOG = "acme.shop.v1.Catalog"
GET_PRODUCT = f"/{CATALOG}/GetProduct"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def server(ca: CertificateAuthority) -> IssuedCert:
    return ca.issue("emulator")  # SANs localhost, 127.0.0.1, ::1 and "emulator"


@pytest.fixture(scope="module")
def ci(ca: CertificateAuthority) -> IssuedCert:
    return ca.issue("ci", client=True)


@pytest.fixture(scope="module")
def bob(ca: CertificateAuthority) -> IssuedCert:
    return ca.issue("bob", client=True)


def tls(server: IssuedCert, **extra: Any) -> dict[str, Any]:
    return {"cert": server.cert_pem.decode(), "key": server.key_pem.decode(), **extra}


def self_signed_for_localhost() -> IssuedCert:
    """A self-signed server certificate naming only "localhost", not 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return IssuedCert("localhost", cert.public_bytes(serialization.Encoding.PEM), key_pem)


@pytest.fixture(scope="module")
def mtls_emu(ca: CertificateAuthority, server: IssuedCert, ci: IssuedCert) -> Iterator[Emulator]:
    config = tls(server, client_ca=ca.cert_pem.decode(), allowed_clients=["ci"])
    client = {"ca": ca.cert_pem, "cert": ci.cert_pem, "key": ci.key_pem}
    with Emulator(protos=PROTOS, tls=config, client_tls=client) as emu:
        yield emu


def test_channel_and_stub_trust_the_given_ca(ca: CertificateAuthority, server: IssuedCert) -> None:
    with Emulator(protos=PROTOS, tls=tls(server), client_tls={"ca": ca.cert_pem}) as emu:
        reply = emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        assert reply.product_id
        assert emu.channel().unary_unary(GET_PRODUCT)(b"", timeout=10)
        assert [r.code for r in emu.calls()] == [grpc.StatusCode.OK] * 2


def test_the_ca_may_be_a_file(ca: CertificateAuthority, server: IssuedCert, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    client = {"ca": str(tmp_path / "ca.pem")}
    with Emulator(protos=PROTOS, tls=tls(server), client_tls=client) as emu:
        assert emu.stub(CATALOG).GetProduct({}).product_id


async def test_aio_channel_and_async_stub_speak_tls(
    ca: CertificateAuthority, server: IssuedCert
) -> None:
    async with Emulator(protos=PROTOS, tls=tls(server), client_tls={"ca": ca.cert_pem}) as emu:
        assert (await emu.stub(CATALOG).GetProduct({"product_id": "p1"})).product_id
        async with emu.aio_channel() as channel:
            assert await channel.unary_unary(GET_PRODUCT)(b"", timeout=10)


def test_a_self_signed_certificate_for_localhost_needs_no_client_tls() -> None:
    """It is its own CA; and it names localhost while the emulator listens on 127.0.0.1."""
    cert = self_signed_for_localhost()
    with Emulator(protos=PROTOS, tls=tls(cert)) as emu:
        assert emu.target.startswith("127.0.0.1:")
        assert emu.stub(CATALOG).GetProduct({}).product_id


def test_without_the_ca_channel_says_what_to_pass(server: IssuedCert) -> None:
    with Emulator(protos=PROTOS, tls=tls(server)) as emu:
        with pytest.raises(ConfigError) as missing:
            emu.channel()
        assert "client_tls={'ca': 'certs/ca.pem'}" in str(missing.value)
        assert missing.value.key == "client_tls.ca"


def test_mutual_tls_presents_the_client_identity(mtls_emu: Emulator) -> None:
    mtls_emu.reset()
    assert mtls_emu.stub(CATALOG).GetProduct({}).product_id
    assert mtls_emu.calls().last.ok  # type: ignore[union-attr]


def test_a_channel_may_present_another_identity(mtls_emu: Emulator, bob: IssuedCert) -> None:
    mtls_emu.reset()
    channel = mtls_emu.channel(client_cert=bob.cert_pem, client_key=bob.key_pem)
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(GET_PRODUCT)(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # bob is not allowed
    assert "bob" in (refused.value.details() or "")
    assert mtls_emu.channel().unary_unary(GET_PRODUCT)(b"", timeout=10)  # ci still is


def test_mutual_tls_without_a_client_identity_is_refused(
    ca: CertificateAuthority, server: IssuedCert
) -> None:
    config = tls(server, client_ca=ca.cert_pem.decode())
    with Emulator(protos=PROTOS, tls=config, client_tls={"ca": ca.cert_pem}) as emu:
        with pytest.raises(grpc.RpcError) as refused:
            emu.channel().unary_unary(GET_PRODUCT)(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails


@pytest.mark.parametrize(
    ("config", "client_tls", "message"),
    [
        (False, {"ca": "x"}, "client_tls needs the emulator to serve TLS"),
        (True, {"root": "x"}, "client_tls: unknown key 'root'; the keys are ca, cert, key, serv"),
        (True, {"cert": "x"}, "client_tls: a client certificate needs both cert and key; key is"),
        (True, {"ca": b"not pem"}, "client_tls.ca: not PEM data"),
        (True, {"ca": "/nonexistent/ca.pem"}, "client_tls.ca: /nonexistent/ca.pem: cannot be read"),
        (True, "ca.pem", "client_tls must be a mapping of ca, cert, key, server_name, not str"),
    ],
)
def test_bad_client_tls_is_refused_when_the_emulator_is_made(
    server: IssuedCert, config: bool, client_tls: Any, message: str
) -> None:
    extra = {"tls": tls(server)} if config else {}
    with pytest.raises(ConfigError) as bad:
        Emulator(protos=PROTOS, client_tls=client_tls, **extra)
    assert str(bad.value).startswith(message)


def test_a_client_certificate_needs_tls() -> None:
    with Emulator(protos=PROTOS) as emu, pytest.raises(EmulatorError, match="need an emulator"):
        emu.channel(client_cert=b"-----BEGIN", client_key=b"-----BEGIN")

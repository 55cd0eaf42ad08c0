"""Security against bad input: real grpcio clients over real sockets, TLS and mTLS with
certificates made for this session, bearer tokens and JWTs minted here, A43 policies and scopes.

Every refusal asserts the exact status code and that the behaviour never ran; every
UNAUTHENTICATED says what failed without echoing the token.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from emulator import Behavior, ConfigError, Emulator
from emulator.cli import main
from emulator.security import CertificateAuthority, IssuedCert, mint
from tests.conftest import PROTOS, EmulateProcess, emulate, wait_until

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
GET_PRODUCT = f"/{CATALOG}/GetProduct"
UPDATE_PRODUCT = f"/{CATALOG}/UpdateProduct"
CREATE_ORDER = f"/{ORDERS}/CreateOrder"
PING = f"/{ORDERS}/Ping"

ISSUER = "https://issuer.test"
AUDIENCE = "grpc-emulator"
HS_ENV = "GRPC_EMULATOR_TEST_HS_SECRET"
HS_SECRET = "hs-secret-for-this-test-session-only-0123456789"
STATIC_TOKEN = "static-token-4f1c9a7e2b"

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


# -- material made for this session ----------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    server: IssuedCert
    ci: IssuedCert  # URI SAN spiffe://acme/ci, CN and DNS SAN "ci"
    ci_cn_only: IssuedCert  # the same CN, but no SPIFFE id
    bob: IssuedCert
    expired: IssuedCert
    stranger: IssuedCert  # issued by another CA


@dataclass(frozen=True)
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    forger: rsa.RSAPrivateKey  # signs tokens no configured key verifies
    rsa_public_pem: bytes
    rsa_public: Path
    rsa_private: Path
    jwks: Path


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = CertificateAuthority()
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    return Pki(
        ca=ca,
        server=ca.issue("localhost"),
        ci=ca.issue("ci", client=True, uris=["spiffe://acme/ci"]),
        ci_cn_only=ca.issue("ci", client=True),
        bob=ca.issue("bob", client=True),
        expired=ca.issue("late", client=True, not_before=past, days=1),
        stranger=CertificateAuthority("another CA").issue(
            "ci", client=True, uris=["spiffe://acme/ci"]
        ),
    )


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("jwt-keys")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "rsa-public.pem").write_bytes(public_pem)
    (folder / "rsa-private.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "ec-1", "use": "sig"}]}))
    return Keys(
        rsa=private,
        ec=ec_key,
        forger=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa_public_pem=public_pem,
        rsa_public=folder / "rsa-public.pem",
        rsa_private=folder / "rsa-private.pem",
        jwks=folder / "jwks.json",
    )


def tls_config(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"cert": pki.server.cert_pem.decode(), "key": pki.server.key_pem.decode(), **extra}


def mtls_config(pki: Pki, **extra: Any) -> dict[str, Any]:
    return tls_config(pki, client_ca=pki.ca.cert_pem.decode(), **extra)


def client_creds(pki: Pki, cert: IssuedCert | None = None) -> grpc.ChannelCredentials:
    if cert is None:
        return grpc.ssl_channel_credentials(pki.ca.cert_pem)
    return grpc.ssl_channel_credentials(pki.ca.cert_pem, cert.key_pem, cert.cert_pem)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT HMAC-signed without PyJWT, which refuses PEM bytes as an HMAC secret."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def good_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **extra}


# -- behaviours that record every call they answer -------------------------------------------


class CatalogRecorder(Behavior):
    service = CATALOG

    def __init__(self, ran: list[tuple[Any, ...]]) -> None:
        self.ran = ran

    def GetProduct(self, request, ctx):
        self.ran.append(("GetProduct", ctx.principal, dict(ctx.claims), ctx.peer_identity))
        return {"product_id": request.product_id, "name": "ran"}

    def UpdateProduct(self, request, ctx):
        self.ran.append(("UpdateProduct", ctx.principal))
        return {"name": "updated"}


class OrdersRecorder(Behavior):
    service = ORDERS

    def __init__(self, ran: list[tuple[Any, ...]]) -> None:
        self.ran = ran

    def CreateOrder(self, request, ctx):
        self.ran.append(("CreateOrder", ctx.principal))
        return {"order_id": "o1"}

    def Ping(self, request, ctx):
        self.ran.append(("Ping", ctx.principal))
        return {}


@dataclass
class Served:
    emu: Emulator
    ran: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.emu.target

    def fresh(self) -> Served:
        self.emu.reset()
        self.ran.clear()
        return self


@contextmanager
def serve(**config: Any) -> Iterator[Served]:
    ran: list[tuple[Any, ...]] = []
    behaviors = [CatalogRecorder(ran), OrdersRecorder(ran)]
    with Emulator(protos=PROTOS, behaviors=behaviors, **config) as emu:
        yield Served(emu, ran)


# -- real clients ------------------------------------------------------------------------------


@contextmanager
def channel(target: str, creds: grpc.ChannelCredentials | None = None) -> Iterator[grpc.Channel]:
    options = [("grpc.use_local_subchannel_pool", 1)]  # no connection shared across credentials
    if creds is None:
        made = grpc.insecure_channel(target, options=options)
    else:
        made = grpc.secure_channel(target, creds, options=options)
    with made:
        yield made


def call(
    target: str,
    method: str = GET_PRODUCT,
    *,
    creds: grpc.ChannelCredentials | None = None,
    token: str | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One unary call with an empty request (valid for every message type); raw bytes back."""
    headers = [*metadata, *([("authorization", f"Bearer {token}")] if token is not None else [])]
    with channel(target, creds) as ch:
        reply: bytes = ch.unary_unary(method)(b"", metadata=headers, timeout=10)
        return reply


def refused(
    served: Served,
    code: grpc.StatusCode,
    attempt: Callable[[], object],
    fragment: str = "",
    *,
    reached: bool = True,
) -> str:
    """The call fails with exactly `code`, no behaviour ran, and the journal agrees: the refused
    call is recorded when the server got that far, absent when the handshake already failed.
    (A refused call's status can reach the client just before the journal records it.)"""
    before = served.emu.calls().count
    with pytest.raises(grpc.RpcError) as caught:
        attempt()
    error: Any = caught.value
    details = error.details() or ""
    assert error.code() == code, details
    assert fragment in details
    assert served.ran == []
    if reached:
        last = wait_until(lambda: served.emu.calls()[before:].last)
        assert (last.code, last.details) == (code, details)
    else:
        assert served.emu.calls().count == before
    return details


def health_check(target: str, token: str | None = None) -> int:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = stub.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)
        return int(reply.status)


def reflected_services(target: str, token: str | None = None) -> list[str]:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with channel(target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)
        return [s.name for r in replies for s in r.list_services_response.service]


# -- TLS and mutual TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _tls_served(pki: Pki) -> Iterator[Served]:
    with serve(tls=tls_config(pki)) as served:
        yield served


@pytest.fixture
def tls_served(_tls_served: Served) -> Served:
    return _tls_served.fresh()


@pytest.fixture(scope="module")
def _mtls_served(pki: Pki) -> Iterator[Served]:
    allowed = {f"{CATALOG}/GetProduct": ["spiffe://acme/ci"], f"{CATALOG}/UpdateProduct": ["bob"]}
    with serve(tls=mtls_config(pki, allowed_clients=allowed)) as served:
        yield served


@pytest.fixture
def mtls_served(_mtls_served: Served) -> Served:
    return _mtls_served.fresh()


def test_plaintext_client_to_a_tls_port_is_unavailable(tls_served: Served, pki: Pki) -> None:
    refused(tls_served, UNAVAILABLE, lambda: call(tls_served.target), reached=False)
    call(tls_served.target, creds=client_creds(pki))  # the same port over TLS answers
    assert tls_served.ran == [("GetProduct", None, {}, None)]


@pytest.mark.parametrize(
    "client",
    [None, "stranger", "expired"],
    ids=["no-client-certificate", "certificate-from-another-ca", "expired-certificate"],
)
def test_mtls_handshake_refusals_are_unavailable(
    mtls_served: Served, pki: Pki, client: str | None
) -> None:
    cert = getattr(pki, client) if client else None
    attempt = lambda: call(mtls_served.target, creds=client_creds(pki, cert))  # noqa: E731
    refused(mtls_served, UNAVAILABLE, attempt, reached=False)


def test_mtls_allowlist_per_method(mtls_served: Served, pki: Pki) -> None:
    target = mtls_served.target
    details = refused(
        mtls_served,
        PERMISSION_DENIED,
        lambda: call(target, creds=client_creds(pki, pki.bob)),
        "client 'bob' is not allowed to call acme.shop.v1.Catalog/GetProduct",
    )
    assert "spiffe" not in details
    refused(
        mtls_served,
        PERMISSION_DENIED,
        lambda: call(target, UPDATE_PRODUCT, creds=client_creds(pki, pki.ci)),
        "is not allowed to call acme.shop.v1.Catalog/UpdateProduct",
    )
    call(target, UPDATE_PRODUCT, creds=client_creds(pki, pki.bob))
    call(target, creds=client_creds(pki, pki.ci))
    call(target, PING, creds=client_creds(pki, pki.bob))  # no pattern covers Ping: any client
    assert [r[0] for r in mtls_served.ran] == ["UpdateProduct", "GetProduct", "Ping"]
    assert mtls_served.ran[1][3] == "spiffe://acme/ci"


def test_mtls_allowlist_for_every_method_matches_the_spiffe_id_not_the_cn(pki: Pki) -> None:
    with serve(tls=mtls_config(pki, allowed_clients=["spiffe://acme/ci"])) as served:
        for cert in (pki.ci_cn_only, pki.bob):
            refused(
                served,
                PERMISSION_DENIED,
                lambda cert=cert: call(served.target, PING, creds=client_creds(pki, cert)),
                f"client {cert.name!r} is not allowed to call acme.shop.v1.Orders/Ping",
            )
        call(served.target, creds=client_creds(pki, pki.ci))
        assert served.ran == [("GetProduct", None, {}, "spiffe://acme/ci")]


# -- bearer tokens and JWTs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def _jwt_served(keys: Keys) -> Iterator[Served]:
    auth = {
        "tokens": {STATIC_TOKEN: {"principal": "ci-bot", "scopes": ["catalog.read"]}},
        "jwt": {
            "keys": [
                {"file": str(keys.rsa_public), "alg": "RS256", "kid": "rsa-1"},
                {"secret_env": HS_ENV, "alg": "HS256", "kid": "hs-1"},
                {"file": str(keys.jwks)},
            ],
            "issuer": ISSUER,
            "audience": [AUDIENCE, "another-audience"],
            "leeway": "30s",
        },
        "scopes": {f"{CATALOG}/UpdateProduct": ["catalog.write"]},
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv(HS_ENV, HS_SECRET)  # read once, when the emulator is built
        with serve(auth=auth) as served:
            yield served


@pytest.fixture
def jwt_served(_jwt_served: Served) -> Served:
    return _jwt_served.fresh()


def rs256(keys: Keys, **kwargs: Any) -> str:
    return mint(keys.rsa, "RS256", issuer=ISSUER, audience=AUDIENCE, **kwargs)


# Each case: the `authorization` value (None: no header), and what the details must name.
BAD_CREDENTIALS: dict[str, tuple[Callable[[Keys], str | None], str]] = {
    "no-token": (lambda k: None, "missing `authorization` metadata"),
    "bearer-without-token": (lambda k: "Bearer ", "empty bearer token"),
    "not-bearer": (lambda k: "Basic Y2k6aHVudGVyMg==", "must be `Bearer <token>`"),
    "garbage": (lambda k: "Bearer garbage-0xdeadbeef-not-a-jwt", "malformed token"),
    "header-with-non-string-kid": (
        lambda k: "Bearer " + hs256_by_hand({"alg": "HS256", "kid": 7}, good_claims(), b"x"),
        "malformed token",
    ),
    "expired": (lambda k: "Bearer " + rs256(k, expires_in=-3600), "token has expired (exp)"),
    "not-yet-valid": (lambda k: "Bearer " + rs256(k, not_before_in=3600), "not yet valid (nbf"),
    "wrong-issuer": (
        lambda k: "Bearer " + mint(k.rsa, "RS256", issuer="https://evil.test", audience=AUDIENCE),
        "wrong issuer (iss)",
    ),
    "no-issuer": (
        lambda k: "Bearer " + mint(k.rsa, "RS256", audience=AUDIENCE),
        "missing required claim 'iss'",
    ),
    "wrong-audience": (
        lambda k: "Bearer " + mint(k.rsa, "RS256", issuer=ISSUER, audience="someone-else"),
        "wrong audience (aud)",
    ),
    "alg-none": (
        lambda k: "Bearer " + mint(None, "none", issuer=ISSUER, audience=AUDIENCE),
        "algorithm 'none' is not accepted",
    ),
    "unknown-kid": (lambda k: "Bearer " + rs256(k, kid="rotated-away"), "unknown key id (kid)"),
    "signed-by-another-key": (
        lambda k: "Bearer " + mint(k.forger, "RS256", issuer=ISSUER, audience=AUDIENCE),
        "signature does not verify",
    ),
    # Key confusion: HS256 "signed" with the RSA public key's PEM bytes as the HMAC secret.
    "hs256-keyed-with-rsa-public-pem": (
        lambda k: "Bearer " + hs256_by_hand({"alg": "HS256"}, good_claims(), k.rsa_public_pem),
        "signature does not verify",
    ),
    "hs256-keyed-with-rsa-public-pem-and-rsa-kid": (
        lambda k: (
            "Bearer "
            + hs256_by_hand({"alg": "HS256", "kid": "rsa-1"}, good_claims(), k.rsa_public_pem)
        ),
        "token algorithm 'HS256' is not accepted",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
def test_bad_credentials_are_unauthenticated(jwt_served: Served, keys: Keys, case: str) -> None:
    make, fragment = BAD_CREDENTIALS[case]
    value = make(keys)
    metadata = [("authorization", value)] if value is not None else []
    details = refused(
        jwt_served,
        UNAUTHENTICATED,
        lambda: call(jwt_served.target, metadata=metadata),
        fragment,
    )
    token = (value or "").partition(" ")[2]
    if token:
        assert token not in details
        assert token not in repr(jwt_served.emu.calls().last.metadata)


def test_hs256_keyed_with_the_rsa_pem_against_an_rsa_only_config(keys: Keys) -> None:
    jwt_config = {
        "keys": [{"file": str(keys.rsa_public)}],
        "issuer": ISSUER,
        "audience": [AUDIENCE],
    }
    with serve(auth={"jwt": jwt_config}) as served:
        forged = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, good_claims(), keys.rsa_public_pem)
        details = refused(
            served,
            UNAUTHENTICATED,
            lambda: call(served.target, token=forged),
            "token algorithm 'HS256' is not accepted (accepted: RS256)",
        )
        assert forged not in details
        call(served.target, token=rs256(keys))  # the RSA key itself still verifies
        assert served.ran[0][1] == "test-user"


def test_missing_scope_is_permission_denied(jwt_served: Served, keys: Keys) -> None:
    for token in (STATIC_TOKEN, rs256(keys, scopes=["catalog.read"])):
        refused(
            jwt_served,
            PERMISSION_DENIED,
            lambda token=token: call(jwt_served.target, UPDATE_PRODUCT, token=token),
            "acme.shop.v1.Catalog/UpdateProduct requires scope catalog.write",
        )
    call(jwt_served.target, UPDATE_PRODUCT, token=rs256(keys, scopes=["catalog.write"]))
    assert jwt_served.ran == [("UpdateProduct", "test-user")]


GOOD_CREDENTIALS: dict[str, tuple[Callable[[Keys], str], str]] = {
    "static-token": (lambda k: STATIC_TOKEN, "ci-bot"),
    "hs256-from-secret-env": (
        lambda k: mint(HS_SECRET.encode(), "HS256", subject="hs", issuer=ISSUER, audience=AUDIENCE),
        "hs",
    ),
    "rs256-from-pem-file": (lambda k: rs256(k, subject="rs"), "rs"),
    "rs256-with-its-kid": (lambda k: rs256(k, subject="rs-kid", kid="rsa-1"), "rs-kid"),
    "es256-from-jwks": (
        lambda k: mint(k.ec, "ES256", subject="es", issuer=ISSUER, audience="another-audience"),
        "es",
    ),
    "es256-from-jwks-with-kid": (
        lambda k: mint(
            k.ec, "ES256", subject="es-kid", issuer=ISSUER, audience=AUDIENCE, kid="ec-1"
        ),
        "es-kid",
    ),
    "expired-within-leeway": (lambda k: rs256(k, subject="late", expires_in=-10), "late"),
}


@pytest.mark.parametrize("case", list(GOOD_CREDENTIALS))
def test_valid_credentials_reach_the_behaviour(jwt_served: Served, keys: Keys, case: str) -> None:
    make, principal = GOOD_CREDENTIALS[case]
    call(jwt_served.target, token=make(keys))
    assert [r[:2] for r in jwt_served.ran] == [("GetProduct", principal)]
    assert jwt_served.emu.calls().last.ok


def test_principal_claims_and_peer_identity_reach_the_behaviour(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HS_ENV, HS_SECRET)
    auth = {
        "tokens": {STATIC_TOKEN: {"principal": "ci-bot"}},
        "jwt": {"keys": [{"secret_env": HS_ENV}], "audience": [AUDIENCE]},
    }
    with serve(tls=mtls_config(pki), auth=auth) as served:
        token = mint(
            HS_SECRET.encode(),
            "HS256",
            subject="alice",
            scopes=["catalog.read"],
            audience=AUDIENCE,
            extra={"tenant": "acme"},
        )
        call(served.target, creds=client_creds(pki, pki.ci), token=token)
        call(served.target, creds=client_creds(pki, pki.bob), token=STATIC_TOKEN)
        (_, principal, claims, peer), static = served.ran
        assert (principal, peer) == ("alice", "spiffe://acme/ci")
        assert claims["sub"] == "alice" and claims["tenant"] == "acme"
        assert claims["scope"] == "catalog.read" and claims["aud"] == AUDIENCE
        assert static == ("GetProduct", "ci-bot", {}, "bob")
        # A verified certificate is no credential: the token is still required.
        served.ran.clear()
        refused_details = refused(
            served,
            UNAUTHENTICATED,
            lambda: call(served.target, creds=client_creds(pki, pki.ci)),
            "missing `authorization` metadata",
        )
        assert "alice" not in refused_details


# -- health and reflection ---------------------------------------------------------------------


def test_health_and_reflection_need_no_token_by_default(jwt_served: Served) -> None:
    assert health_check(jwt_served.target) == health_pb2.HealthCheckResponse.SERVING
    assert CATALOG in reflected_services(jwt_served.target)
    assert jwt_served.ran == []


def test_health_and_reflection_need_a_token_when_nothing_is_exempt() -> None:
    with serve(auth={"tokens": {STATIC_TOKEN: {"principal": "ci"}}, "exempt": []}) as served:
        for attempt in (
            lambda: health_check(served.target),
            lambda: reflected_services(served.target),
            lambda: health_check(served.target, token="not-the-token"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                attempt()
            error: Any = caught.value
            assert error.code() == UNAUTHENTICATED, error.details()
            assert "not-the-token" not in error.details()
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health_check(served.target, token=STATIC_TOKEN) == serving
        assert ORDERS in reflected_services(served.target, token=STATIC_TOKEN)
        refused(served, UNAUTHENTICATED, lambda: call(served.target), "missing `authorization`")


# -- authorization: gRFC A43 policies ----------------------------------------------------------

POLICY = {
    "name": "shop",
    "deny_rules": [
        {
            "name": "no-ci-updates",
            "source": {"principals": ["ci"]},
            "request": {"paths": [f"/{CATALOG}/UpdateProduct"]},
        }
    ],
    "allow_rules": [
        {"name": "catalog", "request": {"paths": [f"/{CATALOG}/*"]}},
        {
            "name": "acme-orders",
            "request": {
                "paths": [f"/{ORDERS}/CreateOrder"],
                "headers": [{"key": "x-tenant", "values": ["acme"]}],
            },
        },
    ],
}
CI_TOKEN = "authz-ci-token-93b1"
OPS_TOKEN = "authz-ops-token-5d07"


@pytest.fixture(scope="module")
def _authz_served() -> Iterator[Served]:
    tokens = {CI_TOKEN: {"principal": "ci"}, OPS_TOKEN: {"principal": "ops"}}
    with serve(auth={"tokens": tokens}, authorization=POLICY) as served:
        yield served


@pytest.fixture
def authz_served(_authz_served: Served) -> Served:
    return _authz_served.fresh()


@pytest.mark.parametrize(
    ("method", "token", "headers", "fragment"),
    [
        (UPDATE_PRODUCT, CI_TOKEN, [], "denied by rule 'no-ci-updates' of policy 'shop'"),
        (PING, OPS_TOKEN, [], "no allow rule of policy 'shop' matches /acme.shop.v1.Orders/Ping"),
        (CREATE_ORDER, CI_TOKEN, [("x-tenant", "globex")], "no allow rule of policy 'shop'"),
        (CREATE_ORDER, CI_TOKEN, [], "no allow rule of policy 'shop'"),
    ],
    ids=["deny-rule", "path-not-allowed", "header-mismatch", "header-missing"],
)
def test_policy_refusals_are_permission_denied(
    authz_served: Served, method: str, token: str, headers: list[tuple[str, str]], fragment: str
) -> None:
    attempt = lambda: call(authz_served.target, method, token=token, metadata=headers)  # noqa: E731
    details = refused(authz_served, PERMISSION_DENIED, attempt, fragment)
    assert token not in details


def test_policy_allows_what_its_rules_allow(authz_served: Served) -> None:
    target = authz_served.target
    call(target, UPDATE_PRODUCT, token=OPS_TOKEN)  # the deny rule names ci only
    call(target, GET_PRODUCT, token=CI_TOKEN)
    call(target, CREATE_ORDER, token=CI_TOKEN, metadata=[("x-tenant", "acme")])
    assert [r[:2] for r in authz_served.ran] == [
        ("UpdateProduct", "ops"),
        ("GetProduct", "ci"),
        ("CreateOrder", "ci"),
    ]
    # Credentials come before the policy: no token is UNAUTHENTICATED, not PERMISSION_DENIED.
    authz_served.fresh()
    refused(authz_served, UNAUTHENTICATED, lambda: call(target), "missing `authorization`")


# -- secrets stay out of the journal and the logs ----------------------------------------------


def test_tokens_are_redacted_in_the_journal_and_absent_from_logs(
    jwt_served: Served, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    jwt_token = rs256(keys)
    expired = rs256(keys, expires_in=-3600)
    secrets = [STATIC_TOKEN, jwt_token, expired, "garbage-8c1e"]
    with caplog.at_level(logging.DEBUG):
        call(jwt_served.target, token=STATIC_TOKEN)
        call(jwt_served.target, token=jwt_token)
        for bad in secrets[2:]:
            with pytest.raises(grpc.RpcError):
                call(jwt_served.target, token=bad)
        calls = wait_until(lambda: (c := jwt_served.emu.calls()).count == 4 and c)
        assert [r.code for r in calls] == [grpc.StatusCode.OK] * 2 + [UNAUTHENTICATED] * 2
        texts = [repr(calls), calls.describe()]
        for record in calls:
            assert record.header("authorization") == "[redacted]"
            texts += [repr(record), record.summary(), repr(record.metadata), record.details]
    texts.append(caplog.text)
    for secret in secrets:
        assert not any(secret in text for text in texts), secret


def test_serving_tokens_on_all_interfaces_without_tls_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="emulator"):
        auth = {"tokens": {STATIC_TOKEN: {"principal": "ci"}}}
        admin = {"enabled": False}  # (unguarded on 0.0.0.0 it would refuse to start)
        with serve(server={"host": "0.0.0.0"}, auth=auth, admin=admin) as served:
            call(f"127.0.0.1:{served.emu.server.port}", token=STATIC_TOKEN)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("serving on 0.0.0.0 without TLS" in w for w in warnings), warnings
    assert any("bearer tokens travel in plaintext to 0.0.0.0" in w for w in warnings), warnings
    assert STATIC_TOKEN not in caplog.text


# -- the command line: certs, token, serving ---------------------------------------------------


def test_emulate_certs_writes_usable_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--client", "ci", "--host", "api.test"]) == 0
    names = {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "ci.pem", "ci-key.pem"}
    assert {p.name for p in out.iterdir()} == names
    for name in names:
        mode = stat.S_IMODE((out / name).stat().st_mode)
        expected = 0o600 if name.endswith("-key.pem") else 0o644
        assert mode == expected, (name, oct(mode))
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "api.test"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    client = x509.load_pem_x509_certificate((out / "ci.pem").read_bytes())
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    for cert in (server, client):
        cert.verify_directly_issued_by(ca)
    capsys.readouterr()

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["certs", "--out", str(out), "--client", "ci"]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and "server-key.pem" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert main(["certs", "--out", str(out), "--client", "ci", "--force"]) == 0
    assert (out / "ca.pem").read_bytes() != before["ca.pem"]
    assert stat.S_IMODE((out / "ci-key.pem").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--client", "ca"], "--client 'ca': its files would replace ca-key.pem, ca.pem"),
        (["--client", "server-key"], "its files would replace server-key.pem"),
        (["--client", "../escape"], "a client name must be a plain file name"),
        (["--out-is-a-file"], "cannot write certificates"),
    ],
)
def test_emulate_certs_refuses_names_that_would_clobber_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "certs"
    if flags == ["--out-is-a-file"]:
        out.write_text("not a folder")
        flags = []
    assert main(["certs", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "escape.pem").exists()
    assert out.is_file() or not out.exists()


def test_emulate_token_picks_the_algorithm_from_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, alg in (
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ):
        path = tmp_path / f"{alg}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        token = mint_with_cli(capsys, "--key", str(path))
        assert jwt.get_unverified_header(token)["alg"] == alg
        jwt.decode(token, key.public_key(), algorithms=[alg])  # type: ignore[arg-type]
    assert main(["token", "--key", str(tmp_path / "ES384.pem"), "--alg", "ES256"]) == 2
    assert "cannot sign ES256 with this key" in capsys.readouterr().err


def mint_with_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_emulate_token_mints_tokens_the_emulator_judges(
    jwt_served: Served,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HS_ENV, HS_SECRET)
    common = ["--issuer", ISSUER, "--audience", AUDIENCE]
    hs = mint_with_cli(capsys, "--secret-env", HS_ENV, "--sub", "cli-hs", *common)
    rs = mint_with_cli(
        capsys,
        "--key",
        str(keys.rsa_private),
        "--sub",
        "cli-rs",
        "--scope",
        "catalog.write",
        *common,
    )
    expired = mint_with_cli(capsys, "--key", str(keys.rsa_private), "--expired", *common)
    call(jwt_served.target, token=hs)
    call(jwt_served.target, UPDATE_PRODUCT, token=rs)
    assert [r[:2] for r in jwt_served.ran] == [
        ("GetProduct", "cli-hs"),
        ("UpdateProduct", "cli-rs"),
    ]
    jwt_served.fresh()
    details = refused(
        jwt_served,
        UNAUTHENTICATED,
        lambda: call(jwt_served.target, token=expired),
        "token has expired (exp)",
    )
    assert expired not in details


def test_served_cli_with_mtls_and_a_token_works_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = tmp_path / "certs"
    assert main(["certs", "--out", str(certs), "--client", "ci"]) == 0
    token = "cli-served-token-1d2f"
    args = [
        "--proto",
        str(PROTOS),
        "--tls-cert",
        str(certs / "server.pem"),
        "--tls-key",
        str(certs / "server-key.pem"),
        "--tls-client-ca",
        str(certs / "ca.pem"),
        "--auth-token",
        f"{token}=ci",
    ]
    ca = (certs / "ca.pem").read_bytes()
    ci = grpc.ssl_channel_credentials(
        ca, (certs / "ci-key.pem").read_bytes(), (certs / "ci.pem").read_bytes()
    )
    with EmulateProcess(*args) as served:
        call(served.target, creds=ci, token=token)
        for creds, code in ((ci, UNAUTHENTICATED), (grpc.ssl_channel_credentials(ca), UNAVAILABLE)):
            with pytest.raises(grpc.RpcError) as caught:
                call(served.target, creds=creds)
            assert caught.value.code() == code  # type: ignore[attr-defined]

        grpcurl = str(Path(sys.executable).parent / "grpcurl")
        tls = ["-cacert", str(certs / "ca.pem"), "-cert", str(certs / "ci.pem")]
        tls += ["-key", str(certs / "ci-key.pem")]
        auth = ["-H", f"authorization: Bearer {token}"]

        def run(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [grpcurl, *tls, *extra], capture_output=True, text=True, timeout=30, check=False
            )

        listed = run(*auth, served.target, "list")
        assert listed.returncode == 0, listed.stderr
        assert CATALOG in listed.stdout.split()
        called = run(*auth, "-d", '{"productId": "p1"}', served.target, f"{CATALOG}/GetProduct")
        assert called.returncode == 0, called.stderr
        assert isinstance(json.loads(called.stdout), dict)
        anonymous = run("-d", "{}", served.target, f"{CATALOG}/GetProduct")
        assert anonymous.returncode != 0
        assert "Unauthenticated" in anonymous.stderr and token not in anonymous.stderr
        code, out, err = served.stop()
    assert code == 0, err
    assert token not in out and token not in err


# -- bad configuration -------------------------------------------------------------------------

BAD_CONFIGS: dict[str, tuple[Callable[[Pki, Keys, Path], dict[str, Any]], str]] = {
    "cert-without-key": (
        lambda p, k, t: {"tls": {"cert": p.server.cert_pem.decode()}},
        r"tls\.key: tls needs both cert and key",
    ),
    "allowlist-without-client-ca": (
        lambda p, k, t: {"tls": tls_config(p, allowed_clients=["ci"])},
        r"tls\.allowed_clients: an allowlist needs client certificates",
    ),
    "unreadable-cert-file": (
        lambda p, k, t: {"tls": {"cert": str(t / "missing.pem"), "key": str(t / "missing.pem")}},
        r"tls\.(cert|key): .*missing\.pem: cannot be read",
    ),
    "jwt-key-file-is-a-private-key": (
        lambda p, k, t: {"auth": {"jwt": {"keys": [{"file": str(k.rsa_private)}]}}},
        r"auth\.jwt\.keys\[0\]: .*private key does not belong",
    ),
    "secret-env-not-set": (
        lambda p, k, t: {"auth": {"jwt": {"keys": [{"secret_env": "GRPC_EMULATOR_TEST_UNSET"}]}}},
        r"auth\.jwt\.keys\[0\]: environment variable GRPC_EMULATOR_TEST_UNSET is not set",
    ),
    "policy-unknown-key": (
        lambda p, k, t: {"authorization": {"allow_rules": [], "deny": []}},
        r"authorization: unknown key 'deny'",
    ),
    "policy-rule-without-name": (
        lambda p, k, t: {"authorization": {"allow_rules": [{"request": {"paths": ["*"]}}]}},
        r"authorization\.allow_rules\[0\]: every rule needs a name",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_security_config_is_a_config_error(
    pki: Pki, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.delenv("GRPC_EMULATOR_TEST_UNSET", raising=False)
    make, message = BAD_CONFIGS[case]
    with pytest.raises(ConfigError, match=message):
        Emulator(protos=PROTOS, **make(pki, keys, tmp_path))


def test_emulate_check_refuses_bad_security_config(tmp_path: Path, pki: Pki) -> None:
    cert = tmp_path / "server.pem"
    cert.write_bytes(pki.server.cert_pem)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"allow_rules": [{"request": {"paths": ["*"]}}]}))
    for flags, message in (
        (["--tls-cert", str(cert)], "tls.key: tls needs both cert and key"),
        (["--authz-policy", str(policy)], "authorization.allow_rules[0]: every rule needs a name"),
        (["--jwt-secret-env", "GRPC_EMULATOR_TEST_UNSET"], "GRPC_EMULATOR_TEST_UNSET is not set"),
    ):
        result = emulate("check", "--proto", str(PROTOS), *flags)
        assert result.returncode == 2, result.stdout
        assert message in result.stderr


def test_a_key_without_kid_verifies_tokens_that_carry_one(keys: Keys) -> None:
    """Providers stamp a kid on every token; a config with one PEM key and no kid still works."""
    auth = {
        "jwt": {"keys": [{"file": str(keys.rsa_public)}], "issuer": ISSUER, "audience": [AUDIENCE]}
    }
    with serve(auth=auth) as served:
        call(served.target, token=rs256(keys, subject="kid-less", kid="provider-key-7"))
        assert [r[:2] for r in served.ran] == [("GetProduct", "kid-less")]


def test_a_remembered_token_is_still_refused_once_it_expires(keys: Keys) -> None:
    """Verified tokens are remembered to skip the signature check, never the time window."""
    from emulator.security import tokens

    verifier = tokens.TokenVerifier(
        keys=tokens.load_keys(file=str(keys.rsa_public)), required_claims=("exp",)
    )
    token = mint(keys.rsa, "RS256", subject="soon-gone", expires_in=1)
    assert verifier.verify(token).principal == "soon-gone"
    assert verifier.verify(token).principal == "soon-gone"  # from memory

    def refused() -> bool:
        try:
            verifier.verify(token)
        except tokens.TokenError as exc:
            return "expired" in str(exc)
        return False

    wait_until(refused, timeout=5)

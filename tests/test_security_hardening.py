"""Security holes closed after review, each against a real server and real grpcio clients:
JWT times that are not numbers, the mTLS allowlist on health and reflection, repeated headers in
A43 rules, method patterns that match nothing, secrets and empty tokens in config, unknown kids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from emulator import ConfigError, Emulator, EmulatorError
from emulator.config import load_config_file
from emulator.security import mint
from tests import test_security
from tests.conftest import PROTOS, emulate
from tests.test_security import (
    AUDIENCE,
    CATALOG,
    CREATE_ORDER,
    GET_PRODUCT,
    HS_ENV,
    HS_SECRET,
    ISSUER,
    ORDERS,
    PERMISSION_DENIED,
    PING,
    UNAUTHENTICATED,
    Keys,
    Pki,
    Served,
    call,
    channel,
    client_creds,
    mtls_config,
    refused,
    rs256,
    serve,
)

# The session's certificates and keys, shared with test_security.
pki = test_security.pki
keys = test_security.keys

SERVING = health_pb2.HealthCheckResponse.SERVING
CI = "spiffe://acme/ci"


def hs256(**extra: Any) -> str:
    return mint(HS_SECRET.encode(), "HS256", subject="alice", audience=AUDIENCE, extra=extra)


def rpc_error(attempt: Any) -> Any:
    with pytest.raises(grpc.RpcError) as caught:
        attempt()
    return caught.value


def health(target: str, creds: grpc.ChannelCredentials, token: str | None = None) -> int:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with channel(target, creds) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int(
            stub.Check(health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10).status
        )


def watch_first(target: str, creds: grpc.ChannelCredentials) -> int:
    """The first status of a health Watch (a server stream grpcio answers with context.write)."""
    with channel(target, creds) as ch:
        replies = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        status = int(next(replies).status)
        replies.cancel()
        return status


def listed(target: str, creds: grpc.ChannelCredentials) -> list[str]:
    with channel(target, creds) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = stub.ServerReflectionInfo(iter([request]), timeout=10)
        return [s.name for r in replies for s in r.list_services_response.service]


# -- 11: JWT times must be NumericDates --------------------------------------------------------


@pytest.fixture(scope="module")
def _hs_served() -> Iterator[Served]:
    auth = {"jwt": {"keys": [{"secret_env": HS_ENV}], "audience": [AUDIENCE]}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(HS_ENV, HS_SECRET)
        with serve(auth=auth) as served:
            yield served


@pytest.fixture
def hs_served(_hs_served: Served) -> Served:
    return _hs_served.fresh()


@pytest.mark.parametrize(
    ("claim", "value", "kind"),
    [
        ("exp", lambda now: str(now + 300), "a string"),
        ("exp", lambda now: str(now - 3600), "a string"),
        ("nbf", lambda now: str(now - 60), "a string"),
        ("iat", str, "a string"),
        ("exp", lambda now: True, "a boolean"),
        ("exp", lambda now: None, "null"),
    ],
    ids=["exp-string", "expired-exp-string", "nbf-string", "iat-string", "exp-true", "exp-null"],
)
def test_jwt_times_that_are_not_numbers_are_unauthenticated(
    hs_served: Served, claim: str, value: Any, kind: str
) -> None:
    """PyJWT reads `"exp": "1700000000"` as a number; a remembered token's window re-check did
    not, so such a token kept working after it expired. RFC 7519 NumericDates are numbers."""
    token = hs256(**{claim: value(int(time.time()))})
    details = refused(
        hs_served,
        UNAUTHENTICATED,
        lambda: call(hs_served.target, token=token),
        f"claim {claim!r} must be a NumericDate (seconds since the epoch), got {kind}",
    )
    assert token not in details
    call(hs_served.target, token=hs256())  # numbers still verify
    assert [r[:2] for r in hs_served.ran] == [("GetProduct", "alice")]


# -- 12: the mTLS allowlist covers health and reflection ----------------------------------------


def test_the_mtls_allowlist_covers_health_and_reflection(pki: Pki) -> None:
    with serve(tls=mtls_config(pki, allowed_clients=[CI])) as served:
        target, bob, ci = served.target, client_creds(pki, pki.bob), client_creds(pki, pki.ci)
        for attempt, method in (
            (lambda: health(target, bob), "grpc.health.v1.Health/Check"),
            (lambda: watch_first(target, bob), "grpc.health.v1.Health/Watch"),
            (lambda: listed(target, bob), "grpc.reflection.v1alpha.ServerReflection/"),
        ):
            error = rpc_error(attempt)
            assert error.code() == PERMISSION_DENIED, error.details()
            assert f"client 'bob' is not allowed to call {method}" in error.details()
        assert health(target, ci) == SERVING
        assert watch_first(target, ci) == SERVING
        assert CATALOG in listed(target, ci)


def test_tls_exempt_opens_chosen_methods_to_any_verified_client(pki: Pki) -> None:
    tls = mtls_config(pki, allowed_clients=[CI], exempt=["grpc.health.v1.Health/*", PING])
    with serve(tls=tls) as served:
        target, bob = served.target, client_creds(pki, pki.bob)
        assert health(target, bob) == SERVING  # a load balancer's probe with its own cert
        call(target, PING, creds=bob)
        assert rpc_error(lambda: listed(target, bob)).code() == PERMISSION_DENIED
        refused(
            served.fresh(),
            PERMISSION_DENIED,
            lambda: call(target, GET_PRODUCT, creds=bob),
            "client 'bob' is not allowed to call acme.shop.v1.Catalog/GetProduct",
        )


def test_tls_exempt_without_an_allowlist_is_refused(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"tls\.exempt: exempts methods from tls\.allowed"):
        Emulator(protos=PROTOS, tls=mtls_config(pki, exempt=["grpc.health.v1.Health/*"]))


def test_a43_sees_certificate_principals_on_health_and_reflection(pki: Pki) -> None:
    """With nothing exempt from auth, health and reflection get the same A43 principals as
    every other method: the token's subject and the certificate's names."""
    policy = {
        "name": "probes",
        "allow_rules": [
            {
                "name": "ci-probes",
                "source": {"principals": [CI]},
                "request": {"paths": ["/grpc.health.v1.Health/*"]},
            }
        ],
    }
    auth = {"tokens": {"probe-token-71c2": {"principal": "probe"}}, "exempt": []}
    with serve(tls=mtls_config(pki), auth=auth, authorization=policy) as served:
        target = served.target
        assert health(target, client_creds(pki, pki.ci), "probe-token-71c2") == SERVING
        error = rpc_error(lambda: health(target, client_creds(pki, pki.bob), "probe-token-71c2"))
        assert error.code() == PERMISSION_DENIED
        assert "no allow rule of policy 'probes'" in error.details()
        error = rpc_error(lambda: health(target, client_creds(pki, pki.ci)))
        assert error.code() == UNAUTHENTICATED  # the certificate is no token


# -- 13: A43 header rules see every value of a repeated header ----------------------------------

TENANT_POLICY = {
    "name": "tenants",
    "deny_rules": [
        {"name": "no-evil", "request": {"headers": [{"key": "x-tenant", "values": ["evil"]}]}}
    ],
    "allow_rules": [
        {
            "name": "acme-orders",
            "request": {
                "paths": [CREATE_ORDER],
                "headers": [{"key": "x-tenant", "values": ["acme"]}],
            },
        },
        {"name": "catalog", "request": {"paths": [f"/{CATALOG}/*"]}},
    ],
}


@pytest.mark.parametrize(
    ("method", "tenants", "fragment"),
    [
        (GET_PRODUCT, ["acme", "evil"], "denied by rule 'no-evil' of policy 'tenants'"),
        (GET_PRODUCT, ["evil", "acme"], "denied by rule 'no-evil' of policy 'tenants'"),
        (GET_PRODUCT, ["acme,evil"], "denied by rule 'no-evil' of policy 'tenants'"),
        (CREATE_ORDER, ["acme", "globex"], "no allow rule of policy 'tenants'"),
    ],
    ids=[
        "deny-rule-on-the-second-value",
        "deny-rule-on-the-first-value",
        "deny-rule-on-one-of-joined-values",
        "allow-rule-on-the-first-value-only",
    ],
)
def test_a43_matches_a_repeated_header_by_all_its_values(
    method: str, tenants: list[str], fragment: str
) -> None:
    with serve(auth={"tokens": {"t-9f2a": {"principal": "ci"}}}, authorization=TENANT_POLICY) as s:
        headers = [("x-tenant", t) for t in tenants]
        refused(
            s,
            PERMISSION_DENIED,
            lambda: call(s.target, method, token="t-9f2a", metadata=headers),
            fragment,
        )
        call(s.target, CREATE_ORDER, token="t-9f2a", metadata=[("x-tenant", "acme")])
        call(s.target, GET_PRODUCT, token="t-9f2a", metadata=[("x-tenant", "acme")])
        assert [r[0] for r in s.ran] == ["CreateOrder", "GetProduct"]


# -- 14: method patterns must match a method ---------------------------------------------------

RATE = {"rps": 5}
ABORT = {"abort": {"code": "UNAVAILABLE"}}
MISSPELT: dict[str, tuple[dict[str, Any], str]] = {
    "auth-scopes": (
        {"auth": {"scopes": {f"{ORDERS}/CreateOrdr": ["orders.write"]}}},
        f'auth.scopes: "{ORDERS}/CreateOrdr" matches no method; '
        f'did you mean "{ORDERS}/CreateOrder"?',
    ),
    "auth-exempt": (
        {"auth": {"tokens": {"t-1": {"principal": "a"}}, "exempt": ["grpc.health.v1.Helth/*"]}},
        'auth.exempt[0]: "grpc.health.v1.Helth/*" matches no method; did you mean '
        '"grpc.health.v1.Health/*"',
    ),
    "tls-allowed-clients": (
        {"tls": {"allowed_clients": {f"{CATALOG}/UpdateProdcut": ["bob"]}}},
        f'tls.allowed_clients: "{CATALOG}/UpdateProdcut" matches no method; did you mean '
        f'"{CATALOG}/UpdateProduct"',
    ),
    "tls-exempt": (
        {"tls": {"allowed_clients": ["ci"], "exempt": ["grpc.health.v1.Health/Chek"]}},
        'tls.exempt[0]: "grpc.health.v1.Health/Chek" matches no method; did you mean '
        '"grpc.health.v1.Health/Check"',
    ),
    "fault-method": (
        {"faults": [{"name": "down", "match": {"method": "acme.shop.v1.Order/*"}, **ABORT}]},
        'faults[0] (down).match.method: "acme.shop.v1.Order/*" matches no method; did you mean '
        f'"{ORDERS}/*"',
    ),
    "rate-limit-method": (
        {"rate_limits": [{"match": {"method": f"{ORDERS}/ping"}, **RATE}]},
        f'rate_limits[0].match.method: "{ORDERS}/ping" matches no method; did you mean '
        f'"{ORDERS}/Ping"',
    ),
    "max-duration": (
        {"max_duration": {f"{CATALOG}/ListProduct": "2s"}},
        f'max_duration: "{CATALOG}/ListProduct" matches no method; did you mean '
        f'"{CATALOG}/ListProducts"',
    ),
    "a43-path-without-slash": (
        {"authorization": {"allow_rules": [{"name": "r", "request": {"paths": [f"{ORDERS}/*"]}}]}},
        f'authorization.allow_rules[0].request.paths[0]: "{ORDERS}/*" never matches: A43 paths '
        f'start with "/" (did you mean "/{ORDERS}/*"?)',
    ),
    "a43-misspelt-path": (
        {
            "authorization": {
                "deny_rules": [{"name": "d", "request": {"paths": [f"/{ORDERS}/Refund"]}}],
                "allow_rules": [],
            }
        },
        f'authorization.deny_rules[0].request.paths[0]: "/{ORDERS}/Refund" matches no method',
    ),
    "nothing-close": (
        {"auth": {"scopes": {"billing.v1.Invoices/*": ["x"]}}},
        'auth.scopes: "billing.v1.Invoices/*" matches no method; write pkg.Service/Method, '
        "pkg.Service/* or *; services: acme.shop.v1.Catalog, acme.shop.v1.Orders, grpc.health",
    ),
}


def with_tls(pki: Pki, config: dict[str, Any]) -> dict[str, Any]:
    if "tls" in config:
        return {**config, "tls": mtls_config(pki, **config["tls"])}
    return config


@pytest.mark.parametrize("case", list(MISSPELT))
def test_a_method_pattern_that_matches_nothing_is_refused(pki: Pki, case: str) -> None:
    config, message = MISSPELT[case]
    with pytest.raises(ConfigError) as caught:
        Emulator(protos=PROTOS, **with_tls(pki, config))
    assert message in str(caught.value)


def test_patterns_that_match_are_accepted(pki: Pki) -> None:
    config = {
        "auth": {
            "scopes": {"grpc.health.v1.Health/Check": ["probe"], f"/{ORDERS}/Ping": ["x"]},
            "exempt": ["grpc.health.v1.Health/Watch", "*Ping"],
        },
        "tls": mtls_config(pki, allowed_clients={"*": [CI]}, exempt=["grpc.reflection.*"]),
        "authorization": {
            "allow_rules": [{"name": "r", "request": {"paths": ["*", "/acme.*", "*Refresh*"]}}]
        },
    }
    # `*Refresh*` is neither prefix nor suffix A43 knows: it must end with `Refresh*`.
    with pytest.raises(ConfigError, match=r'paths\[2\]: "\*Refresh\*" matches no method'):
        Emulator(protos=PROTOS, **config)
    config["authorization"]["allow_rules"][0]["request"]["paths"].pop()
    with serve(**config) as served:
        assert served.emu.target


def test_emulate_check_refuses_a_misspelt_pattern(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        f"protos: [{PROTOS}]\n"
        "auth:\n"
        "  scopes:\n"
        '    "acme.shop.v1.Orders/CreateOrdr": [orders.write]\n'
    )
    result = emulate("check", "--config", str(path))
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("emulate: error: auth.scopes: ")
    assert 'did you mean "acme.shop.v1.Orders/CreateOrder"?' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_runtime_fault_on_a_misspelt_method_is_refused() -> None:
    with serve() as served:
        with pytest.raises(
            EmulatorError, match=r'fault f: match.method: "acme.shop.v1.Orders/Pin" '
        ):
            served.emu.fault(name="f", match={"method": f"{ORDERS}/Pin"}, **ABORT)
        with served.emu.fault(name="g", match={"method": "*/Ping"}, **ABORT):  # a suffix
            assert (
                rpc_error(lambda: call(served.target, PING)).code() == grpc.StatusCode.UNAVAILABLE
            )


# -- 15: static tokens never printed, never empty ----------------------------------------------


def test_a_duplicated_static_token_in_yaml_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(
        "auth:\n"
        "  tokens:\n"
        "    dup-secret-4e7a: {principal: a}\n"
        "    other-secret-11b0: {principal: b}\n"
        "    dup-secret-4e7a: {principal: c}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(caught.value) == f"{path}:5: auth.tokens[#3]: duplicate key"


@pytest.mark.parametrize("token", ["", "  ", " padded "])
def test_an_empty_static_token_is_refused(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Emulator(protos=PROTOS, auth={"tokens": {token: {"principal": "ci"}}})
    message = str(caught.value)
    assert "auth.tokens[#1]: a static token must not be empty" in message
    assert token.strip() == "" or token.strip() not in message


def test_emulate_refuses_an_empty_auth_token_flag() -> None:
    result = emulate("check", "--proto", str(PROTOS), "--auth-token", "=ci")
    assert result.returncode == 2, result.stdout
    assert (
        result.stderr.strip()
        == "emulate: error: --auth-token: the token is empty; give TOKEN[=PRINCIPAL]"
    )


# -- 23: kid ------------------------------------------------------------------------------------


@contextmanager
def mixed_kids(keys: Keys) -> Iterator[Served]:
    """An RSA key with a kid beside an HMAC secret without one."""
    auth = {
        "jwt": {
            "keys": [
                {"file": str(keys.rsa_public), "kid": "rsa-1"},
                {"secret_env": HS_ENV, "alg": "HS256"},
            ],
            "issuer": ISSUER,
            "audience": [AUDIENCE],
        }
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv(HS_ENV, HS_SECRET)
        with serve(auth=auth) as served:
            yield served


def test_a_kid_no_key_carries_is_refused_unless_a_kid_less_key_verifies_it(keys: Keys) -> None:
    with mixed_kids(keys) as served:
        target = served.target
        # RS256 with a kid no key carries: the only kid-less key is HMAC, so nothing can verify.
        refused(
            served,
            UNAUTHENTICATED,
            lambda: call(target, token=rs256(keys, kid="rotated-away")),
            "unknown key id (kid) 'rotated-away'",
        )
        # HS256 signed by another secret, with an unknown kid: the kid-less key tries, and fails.
        forged = mint(b"x" * 32, "HS256", issuer=ISSUER, audience=AUDIENCE, kid="rotated-away")
        refused(
            served,
            UNAUTHENTICATED,
            lambda: call(target, token=forged),
            "unknown key id (kid) 'rotated-away', and no key without a kid verifies its signature",
        )
        # The kid-less secret verifies its own tokens, whatever kid a provider stamped on them.
        good = mint(
            HS_SECRET.encode(), "HS256", subject="hs", issuer=ISSUER, audience=AUDIENCE, kid="p-7"
        )
        call(target, token=good)
        call(target, token=rs256(keys, subject="rs", kid="rsa-1"))
        assert [r[:2] for r in served.ran] == [("GetProduct", "hs"), ("GetProduct", "rs")]


def test_an_auth_exempt_list_without_health_warns_that_probes_need_a_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("emulator")
    logger.addHandler(caplog.handler)
    try:
        auth = {"tokens": {"s3cret": {"principal": "ci"}}}
        with Emulator(protos=PROTOS, auth={**auth, "exempt": ["acme.shop.v1.Catalog/*"]}):
            pass
        assert "grpc.health.v1.Health needs a token" in caplog.text
        caplog.clear()
        with Emulator(protos=PROTOS, auth=auth):  # the default list keeps health open
            pass
        assert "needs a token" not in caplog.text
    finally:
        logger.removeHandler(caplog.handler)

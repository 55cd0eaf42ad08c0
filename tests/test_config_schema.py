"""The config checker: missing keys, durations, numbers — one message naming the key."""

from __future__ import annotations

import grpc
import pytest

from emulator import ConfigError, RpcAbort
from emulator.config import Config


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"rate_limits": [{"match": {"method": "*"}}]},
            "missing required key 'rate_limits[0].rps'",
        ),
        (
            {"auth": {"tokens": {"s3cr3t-TOKEN": {"scopes": ["a"]}}}},
            "missing required key 'auth.tokens[#1].principal'",
        ),
        ({"server": {"grace_period": "-5ms"}}, "cannot be negative"),
        ({"server": {"grace_period": float("inf")}}, "must be finite"),
        (
            {
                "faults": [
                    {"name": "x", "delay": {"fixed": "1s"}, "when": {"probability": float("nan")}}
                ]
            },
            "finite number",
        ),
    ],
    ids=["missing-rps", "missing-principal", "negative-duration", "infinite-duration", "nan"],
)
def test_bad_values_name_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_mapping(data)
    assert expected in str(error.value)
    assert "s3cr3t-TOKEN" not in str(error.value)  # token keys are secrets: named by position


def test_rpc_abort_refuses_ok() -> None:
    with pytest.raises(ValueError, match="return normally for OK"):
        RpcAbort(grpc.StatusCode.OK, "fine")


def test_a43_policies_of_the_wrong_shape_are_config_errors() -> None:
    from emulator.security.authz import Policy

    for rule, key in (
        ({"name": "r", "source": [{"principals": ["ci"]}]}, "allow_rules[0].source"),
        ({"name": "r", "request": ["x"]}, "allow_rules[0].request"),
        ({"name": "r", "request": {"headers": {"key": "x"}}}, "allow_rules[0].request.headers"),
    ):
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            Policy({"allow_rules": [rule]})


def test_tls_key_that_does_not_belong_to_the_cert() -> None:
    from emulator import Emulator
    from emulator.security import CertificateAuthority
    from tests.conftest import PROTOS

    ca = CertificateAuthority()
    one, other = ca.issue("localhost"), ca.issue("localhost")
    with pytest.raises(ConfigError, match=r"tls\.key does not belong to tls\.cert"):
        Emulator(protos=PROTOS, tls={"cert": one.cert_pem.decode(), "key": other.key_pem.decode()})
    with pytest.raises(ConfigError, match=r"tls\.cert: not a PEM certificate"):
        Emulator(protos=PROTOS, tls={"cert": one.key_pem.decode(), "key": one.key_pem.decode()})


def test_a_client_ca_that_is_not_a_certificate_is_refused_at_load() -> None:
    from emulator import Emulator
    from emulator.security import CertificateAuthority
    from tests.conftest import PROTOS

    ca = CertificateAuthority()
    server = ca.issue("localhost")
    garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    for bad in (garbage, server.key_pem.decode()):
        tls = {"cert": server.cert_pem.decode(), "key": server.key_pem.decode(), "client_ca": bad}
        with pytest.raises(ConfigError, match=r"tls\.client_ca: not PEM certificates"):
            Emulator(protos=PROTOS, tls=tls)


def test_a_misspelt_request_field_in_a_fault_is_refused() -> None:
    from emulator import Emulator
    from tests.conftest import PROTOS

    fault = {
        "name": "typo",
        "match": {"method": "acme.shop.v1.Catalog/GetProduct", "request": {"prodct_id": "p1"}},
        "abort": {"code": "UNAVAILABLE"},
    }
    with pytest.raises(ConfigError, match=r"faults\[0\] \(typo\)\.match\.request: prodct_id"):
        Emulator(protos=PROTOS, faults=[fault])


def test_every_optional_setting_has_an_environment_variable() -> None:
    from emulator.environment import env_overrides

    overrides = env_overrides(
        {"EMULATOR_MAX_ACTIVE_FAULTS": "3", "EMULATOR_SERVER_MAX_CONNECTION_AGE": "30s"}
    )
    assert overrides == {"max_active_faults": "3", "server.max_connection_age": "30s"}
    config = Config().with_overrides(overrides)
    assert (config.max_active_faults, config.server.max_connection_age) == (3, 30.0)


def test_named_values_are_case_insensitive_and_compression_takes_identity() -> None:
    config = Config.from_mapping(
        {"server": {"compression": "GZIP"}, "defaults": {"enums": "Seeded"}, "log_format": "JSON"}
    )
    assert (config.server.compression, config.defaults.enums, config.log_format) == (
        "gzip",
        "seeded",
        "json",
    )
    assert Config.from_mapping({"server": {"compression": "identity"}}).server.compression == (
        "identity"
    )
    with pytest.raises(ConfigError, match=r"server\.compression: expected one of"):
        Config.from_mapping({"server": {"compression": "zip"}})

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
            {"auth": {"tokens": {"t": {"scopes": ["a"]}}}},
            "missing required key 'auth.tokens.t.principal'",
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
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        Config.from_mapping(data)


def test_rpc_abort_refuses_ok() -> None:
    with pytest.raises(ValueError, match="return normally for OK"):
        RpcAbort(grpc.StatusCode.OK, "fine")

"""Default responses keep the contracts' validation rules (buf.validate, field_behavior REQUIRED),
judged by protovalidate itself (through the emulator's `Rules.check`); contracts without rules get
the same bytes as before rules were read."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from emulator import Emulator
from emulator.behavior import textrules
from emulator.behavior.defaults import DefaultResponses, fill
from emulator.behavior.pins import Pins
from emulator.contracts import load_contracts
from emulator.contracts.model import Contracts
from emulator.validation.rules import Rules
from tests.conftest import PROTOS, TEST_PROTOS

RULES = TEST_PROTOS / "constrained"
SIGNUP = TEST_PROTOS / "validation"
REQUESTS = (
    b"",
    b"\n\x02p1",
    b"\x12\x03Ann\x18\x05",
    b"\n$3f6c1c0e-a5b1-4c5e-9d1b-0a7e6c2f9b11",
    b'"\x03p-9',  # pager: a member of a `(buf.validate.message).oneof` group other than its first
)


def _rules(contracts: Contracts) -> Rules:
    specs = contracts.methods.values()
    roots = [s.output_class.DESCRIPTOR for s in specs] + [s.input_class.DESCRIPTOR for s in specs]
    return Rules(contracts, roots)


def _broken(contracts: Contracts, defaults: DefaultResponses) -> dict[str, list[str]]:
    """Every violation of every default response (server streams: three messages each)."""
    rules = _rules(contracts)
    found: dict[str, list[str]] = {}
    for spec in contracts.methods.values():
        for request in REQUESTS:
            for index in range(3):
                message = defaults.response(spec, request, index)
                broken = [v.at("response") for v in rules.check(message)]
                if broken:
                    found.setdefault(spec.name, []).extend(broken)
    return found


@pytest.mark.parametrize("protos", [RULES, SIGNUP], ids=["every-family", "signup"])
@pytest.mark.parametrize("seed", [0, 7, 12345])
@pytest.mark.parametrize("enums", ["first", "seeded"])
def test_default_responses_keep_every_rule(protos: Any, seed: int, enums: str) -> None:
    contracts = load_contracts([protos])
    defaults = DefaultResponses(contracts, seed, pins=Pins(enums=enums))  # type: ignore[arg-type]
    assert _broken(contracts, defaults) == {}


def test_without_reading_the_rules_the_defaults_break_them() -> None:
    # What makes the test above mean something: realistic values alone break these rules.
    contracts = load_contracts([RULES])
    defaults = DefaultResponses(contracts, 7)
    defaults.constraints = None
    broken = _broken(contracts, defaults)["rules.v1.Profiles/GetProfile"]
    for rule in ("response.age:", "response.code:", "response.name:", "response.tags:"):
        assert any(v.startswith(rule) for v in broken), (rule, broken)


def test_a_served_default_keeps_the_rules_and_stays_realistic() -> None:
    with Emulator(protos=RULES, seed=7) as emu:
        profile = emu.stub("rules.v1.Profiles").GetProfile({"id": "p1", "age": 5}, timeout=10)
        assert _rules(emu.server.contracts).check(profile) == []
        assert 200 <= profile.age < 300  # the request's age breaks the response's rule: not echoed
        assert profile.id != "p1" and len(profile.id) == 36  # nor its id (not a uuid)
        assert profile.contact.endswith("@example.com")  # a realistic value that already keeps it
        assert profile.host.endswith(".example.com")
        assert profile.region in ("eu-west-1", "us-east-2")
        assert len(profile.tags) >= 5 and len(set(profile.tags)) == len(profile.tags)
        assert len(profile.badges) >= 3 and len(set(profile.badges)) == len(profile.badges)
        assert profile.WhichOneof("channel") is not None
        assert bool(profile.phone) != bool(profile.pager)  # a message oneof rule: exactly one


def test_a_default_request_keeps_the_request_rules_too() -> None:
    contracts = load_contracts([SIGNUP])
    defaults = DefaultResponses(contracts, 7)
    request = contracts.message_class_by_name("shop.v1.RegisterRequest")()
    fill(request, random.Random(3), constraints=defaults.constraints)
    assert _rules(contracts).check(request) == []
    assert request.sku[3] == "-" and request.sku[:3].isupper()  # from its pattern


# SHA-256 of the default responses of every method (two requests, two stream indexes, seed 7),
# computed before the generator read any rule: contracts without rules must not change at all.
BEFORE = {
    (str(PROTOS), "first"): "77b82da755b04b9b",
    (str(PROTOS), "seeded"): "ff84c7c6b0033c03",
    (str(TEST_PROTOS / "payments"), "first"): "d345cdd1e96087b8",
    (str(TEST_PROTOS / "payments"), "seeded"): "eea6ea47ba17f955",
    (str(TEST_PROTOS / "contracts" / "syntaxes"), "first"): "f66238e14c1b8a11",
    (str(TEST_PROTOS / "contracts" / "wkt"), "first"): "6f066c917505312e",
    (str(TEST_PROTOS / "interop"), "first"): "345fa1bc0ae55b3d",
}


@pytest.mark.parametrize(("protos", "enums"), list(BEFORE))
def test_contracts_without_rules_give_the_same_bytes_as_before(protos: str, enums: str) -> None:
    contracts = load_contracts([protos])
    defaults = DefaultResponses(contracts, 7, pins=Pins(enums=enums))  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for spec in sorted(contracts.methods.values(), key=lambda s: s.name):
        for request in (b"", b"\n\x02p1"):
            for index in range(2):
                digest.update(defaults.response_bytes(spec, request, index))
    assert digest.hexdigest()[:16] == BEFORE[(protos, enums)]


def test_a_method_without_rules_beside_ones_with_rules_is_unchanged() -> None:
    contracts = load_contracts([RULES])
    ping = contracts.methods["/rules.v1.Profiles/Ping"]
    reading, ignoring = DefaultResponses(contracts, 7), DefaultResponses(contracts, 7)
    ignoring.constraints = None
    assert reading.constraints is not None
    for request in REQUESTS:
        assert reading.response_bytes(ping, request) == ignoring.response_bytes(ping, request)


@pytest.mark.parametrize(
    "pattern",
    [r"^[A-Z]{3}-[0-9]{4}$", r"^(eu|us)-[a-z]+-\d$", r"^v[0-9]+(\.[0-9]+){2}$", r"^\w{3,5}[^x]$"],
)
def test_simple_patterns_are_generated(pattern: str) -> None:
    import re

    rng = random.Random(1)
    for stretch in range(3):
        text = textrules.generate(pattern, rng, stretch)
        assert text is not None and re.search(pattern, text), text
    assert textrules.generate(r"^(?=a)b$", rng) is None  # a look-ahead: not generated

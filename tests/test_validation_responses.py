"""Response validation (`validation.responses`): what behaviours and stubs answer, checked
against the response type's rules (shop.v1.Account: a uuid id, a name of 2 characters or more,
an age from 18 to 129, a REQUIRED email), with real grpcio clients. Default responses and what a
real upstream answers through the proxy are not checked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from emulator import Behavior, BehaviorFailedError, Emulator
from emulator.validation.responses import InvalidResponse
from tests.conftest import PROTOS, TEST_PROTOS

SIGNUP = TEST_PROTOS / "validation"
LOOKUP = "shop.v1.Signup/Lookup"
WATCH = "shop.v1.Signup/Watch"
SYNC = "shop.v1.Signup/Sync"

GOOD: dict[str, Any] = {
    "id": "3f0c8f3e-3b0e-4c8e-9f4e-2d1f6f0a9b1c",
    "name": "Ann Lee",
    "age": 41,
    "email": "ann@example.com",
}
SHORT_NAME = "response.name: must be at least 2 characters"


def account(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


class Signup(Behavior):
    """Lookup answers what the request's id asks for: "bad" a name too short."""

    service = "shop.v1.Signup"

    def Lookup(self, request, ctx):
        return account(name="A") if request.id == "bad" else account()

    def Watch(self, request, ctx):
        yield account()
        yield account(name="A")  # message 1 breaks a rule
        yield account()

    async def Sync(self, requests, ctx):
        async for request in requests:
            yield account(age=7) if request.id == "young" else account()


LOOKUP_LINE = Signup.Lookup.__code__.co_firstlineno


@pytest.fixture(scope="module")
def enforcing() -> Iterator[Emulator]:
    with Emulator(protos=SIGNUP, behaviors=Signup, validation={"responses": "enforce"}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def reporting() -> Iterator[Emulator]:
    with Emulator(protos=SIGNUP, behaviors=Signup) as emulator:  # report: the default
        yield emulator


def failed(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def take_errors(emu: Emulator) -> list[tuple[str, BaseException]]:
    """The behaviour errors the test collected, taken off (so the fixture's exit is clean)."""
    errors = emu.behavior_errors
    with pytest.raises(BehaviorFailedError):
        emu.check_behavior_errors()
    return errors


def test_the_default_is_report(reporting: Emulator) -> None:
    assert reporting.server.config.validation.responses == "report"
    assert reporting.server.config.validation.requests == "enforce"


def test_a_valid_response_is_untouched(enforcing: Emulator) -> None:
    enforcing.reset()
    answer = enforcing.stub("shop.v1.Signup").Lookup({"id": "good"}, timeout=10)
    assert answer.name == "Ann Lee"
    record = enforcing.calls(LOOKUP).last
    assert record is not None and record.ok and record.violations == ()
    assert enforcing.behavior_errors == []


def test_enforce_fails_a_unary_call_naming_the_behaviour_and_the_rule(
    enforcing: Emulator,
) -> None:
    enforcing.reset()
    error = failed(lambda: enforcing.stub("shop.v1.Signup").Lookup({"id": "bad"}, timeout=10))
    assert error.code() is grpc.StatusCode.INTERNAL
    where = f"tests/test_validation_responses.py:{LOOKUP_LINE}"
    assert error.details() == (
        f"response of {LOOKUP} from behaviour Signup.Lookup at {where} breaks the contract's "
        f"rules: {SHORT_NAME} (validation.responses: enforce); fix what it answers"
    )
    record = enforcing.calls(LOOKUP).last
    assert record is not None and record.code is grpc.StatusCode.INTERNAL
    assert record.violations == (SHORT_NAME,)
    assert record.answered_by.startswith("behaviour Signup.Lookup")
    # The in-process test fails, as for a behaviour that returns the wrong type.
    [(method, exc)] = take_errors(enforcing)
    assert method == LOOKUP and isinstance(exc, InvalidResponse)


def test_enforce_ends_a_server_stream_at_the_message_that_breaks_a_rule(
    enforcing: Emulator,
) -> None:
    enforcing.reset()
    got: list[Any] = []

    def watch() -> None:
        for message in enforcing.stub("shop.v1.Signup").Watch({"id": "x"}, timeout=10):
            got.append(message)

    error = failed(watch)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert [m.name for m in got] == ["Ann Lee"]  # the message before it went out
    assert "response[1].name: must be at least 2 characters" in error.details()
    record = enforcing.calls(WATCH).last
    assert record is not None and record.violations == (
        "response[1].name: must be at least 2 characters",
    )
    assert len(take_errors(enforcing)) == 1


def test_report_sends_the_response_logs_and_journals(
    reporting: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    reporting.reset()
    caplog.set_level(logging.WARNING, logger="emulator")
    answer = reporting.stub("shop.v1.Signup").Lookup({"id": "bad"}, timeout=10)
    assert answer.name == "A"  # what the behaviour answered, as it is
    record = reporting.calls(LOOKUP).last
    assert record is not None and record.ok and record.violations == (SHORT_NAME,)
    where = f"tests/test_validation_responses.py:{LOOKUP_LINE}"
    assert (
        f"{LOOKUP}: invalid response from behaviour Signup.Lookup at {where} "
        f"(validation.responses: report): {SHORT_NAME}"
    ) in caplog.text
    assert reporting.behavior_errors == []  # report: the test goes on


def test_report_names_each_message_of_a_stream(reporting: Emulator) -> None:
    reporting.reset()
    names = [m.name for m in reporting.stub("shop.v1.Signup").Watch({"id": "x"}, timeout=10)]
    assert names == ["Ann Lee", "A", "Ann Lee"]
    record = reporting.calls(WATCH).last
    assert record is not None and record.violations == (
        "response[1].name: must be at least 2 characters",
    )
    out = reporting.stub("shop.v1.Signup").Sync(
        [{"id": "a"}, {"id": "young"}, {"id": "young"}], timeout=10
    )
    assert [m.age for m in out] == [41, 7, 7]
    record = reporting.calls(SYNC).last
    assert record is not None and record.violations == (
        "response[1].age: must be greater than or equal to 18 and less than 130",
        "response[2].age: must be greater than or equal to 18 and less than 130",
    )


def test_a_test_override_is_checked(enforcing: Emulator) -> None:
    enforcing.reset()
    with enforcing.override(LOOKUP, lambda request, ctx: account(email="")):
        error = failed(lambda: enforcing.stub("shop.v1.Signup").Lookup({"id": "x"}, timeout=10))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert f"response of {LOOKUP} from override " in error.details()
    assert "breaks the contract's rules: response.email: is required" in error.details()
    assert len(take_errors(enforcing)) == 1


def test_a_stub_that_breaks_a_rule_is_named_with_its_source(enforcing: Emulator) -> None:
    enforcing.reset()
    enforcing.stubs.add(
        {"name": "kid", "method": LOOKUP, "respond": {"message": {"age": 9}}},
        source="signup-stubs.yaml:3",
    )
    error = failed(lambda: enforcing.stub("shop.v1.Signup").Lookup({"id": "x"}, timeout=10))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == (
        f"response of {LOOKUP} from stub kid (signup-stubs.yaml:3 stubs[0]) breaks the contract's "
        "rules: response.age: must be greater than or equal to 18 and less than 130 "
        "(validation.responses: enforce); fix what it answers"
    )
    record = enforcing.calls(LOOKUP).last
    assert record is not None and record.answered_by == "stub kid"
    assert len(take_errors(enforcing)) == 1


def test_a_merged_stub_answers_for_its_fields_a_replacing_one_for_all() -> None:
    # The default's age breaks its rule (pinned): a stub merged onto it is not to blame.
    with Emulator(protos=SIGNUP, defaults={"fields": {"shop.v1.Account.age": 5}}) as emu:
        stream = [{"message": GOOD}, {"message": {"name": "X"}}, {"message": {"name": "Bo"}}]
        emu.stubs.add(
            {"name": "bo", "method": LOOKUP, "respond": {"message": {"name": "Bo"}}},
            {"name": "sparse", "method": WATCH, "respond": {"stream": stream}},
            {
                "name": "only-name",
                "method": SYNC,
                "respond": {"message": {"name": "Bo"}, "replace": True},
            },
        )
        stub = emu.stub("shop.v1.Signup")
        answer = stub.Lookup({"id": "x"}, timeout=10)
        assert (answer.name, answer.age) == ("Bo", 5)
        record = emu.calls(LOOKUP).last
        assert record is not None and record.violations == ()
        assert [m.name for m in stub.Watch({"id": "x"}, timeout=10)] == ["Ann Lee", "X", "Bo"]
        record = emu.calls(WATCH).last
        assert record is not None and record.violations == (
            "response[1].name: must be at least 2 characters",
        )
        # `replace`: only the name is sent, so the REQUIRED email is missing and the id empty.
        assert [m.name for m in stub.Sync([{"id": "x"}], timeout=10)] == ["Bo"]
        record = emu.calls(SYNC).last
        assert record is not None and "response[0].email: is required" in record.violations
        assert any(v.startswith("response[0].age: ") for v in record.violations)


def test_default_responses_are_not_checked() -> None:
    # A pinned default that breaks Account's name rule: the default's business, not checked.
    pins = {"shop.v1.Account.name": "A"}
    with Emulator(
        protos=SIGNUP, validation={"responses": "enforce"}, defaults={"fields": pins}
    ) as emu:
        stub = emu.stub("shop.v1.Signup")
        assert stub.Lookup({"id": "x"}, timeout=10).name == "A"
        assert {m.name for m in stub.Watch({"id": "x"}, timeout=10)} == {"A"}
        # A behaviour that returns None answers with the default: not checked either.
        with emu.override(LOOKUP, lambda request, ctx: None):
            assert stub.Lookup({"id": "y"}, timeout=10).name == "A"
        # A stub item with no message is the default too; one that gives a field is checked
        # for it, not for the default's name beneath it.
        emu.stubs.add({"name": "aged", "method": LOOKUP, "respond": {"message": {"age": 30}}})
        assert stub.Lookup({"id": "z"}, timeout=10).age == 30
        assert all(r.violations == () for r in emu.calls())
        assert emu.behavior_errors == []


def test_proxied_responses_are_not_checked() -> None:
    pins = {"shop.v1.Account.name": "A"}
    with Emulator(protos=SIGNUP, defaults={"fields": pins}) as upstream:
        front = Emulator(
            protos=SIGNUP,
            validation={"responses": "enforce"},
            proxy={"upstream": upstream.server.target, "methods": [LOOKUP]},
        )
        with front, upstream.override(LOOKUP, lambda request, ctx: account(name="A")):
            assert front.stub("shop.v1.Signup").Lookup({"id": "x"}, timeout=10).name == "A"
            record = front.calls(LOOKUP).last
            assert record is not None and record.ok and record.violations == ()
            assert record.answered_by.startswith("proxy ")


def test_off_checks_nothing() -> None:
    with Emulator(protos=SIGNUP, behaviors=Signup, validation={"responses": "off"}) as emu:
        assert emu.server.validation.plan.responses == {}
        assert emu.server.dispatcher.responses == {}
        assert emu.stub("shop.v1.Signup").Lookup({"id": "bad"}, timeout=10).name == "A"
        record = emu.calls(LOOKUP).last
        assert record is not None and record.violations == ()


def test_only_methods_whose_responses_have_rules_are_checked(enforcing: Emulator) -> None:
    checks = enforcing.server.dispatcher.responses
    names = {check.spec.name for check in checks.values()}
    assert {LOOKUP, WATCH, SYNC, "shop.v1.Signup/Register"} <= names
    assert "/shop.v1.Signup/Count" not in checks  # ImportSummary has no rules
    assert "/shop.v1.Signup/Import" not in checks
    with Emulator(protos=PROTOS) as emu:  # no rules at all: nothing to look up
        assert emu.server.dispatcher.responses == {}

"""Request validation (`validation:`): buf.validate rules and google.api.field_behavior REQUIRED,
checked in the chain against real grpcio clients, the violations decoded from the status details
as a client decodes them (grpcio-status into google.rpc.BadRequest)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emulator import Emulator
from emulator.config import load_config_file
from emulator.contracts.compiler import compile_contracts
from emulator.errors import ContractError
from tests.conftest import PROTOS, TEST_PROTOS

SIGNUP = TEST_PROTOS / "validation"
REGISTER = "shop.v1.Signup/Register"

# A request that keeps every rule of shop.v1.RegisterRequest.
VALID: dict[str, Any] = {
    "name": "Ann Lee",
    "email": "ann@example.com",
    "sku": "ABC-1234",
    "age": 41,
    "tags": ["new"],
    "nickname": "annie",
    "address": {"city": "Lyon", "zip": "69001"},
    "plan": "PLAN_PRO",
    "phone": "+33 1 23 45 67 89",
}


def request(**changes: Any) -> dict[str, Any]:
    """VALID with `changes`; a value of None removes the field."""
    out = {**VALID, **changes}
    return {k: v for k, v in out.items() if v is not None}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(protos=SIGNUP) as emulator:
        yield emulator


def refused(call: Any) -> tuple[grpc.RpcError, list[tuple[str, str]]]:
    """The error of a call that must fail, and its BadRequest's (field, reason) pairs."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    bad = error_details_pb2.BadRequest()
    assert len(status.details) == 1 and status.details[0].Unpack(bad)
    return error, [(v.field, v.reason) for v in bad.field_violations]


def test_a_valid_request_is_answered(emu: Emulator) -> None:
    emu.reset()
    account = emu.stub("shop.v1.Signup").Register(VALID, timeout=10)
    assert account.id
    record = emu.calls(REGISTER).last
    assert record is not None and record.ok and record.violations == ()


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"name": "A"}, "name", "string.min_len"),
        ({"name": "A" * 21}, "name", "string.max_len"),
        ({"email": "not-an-address"}, "email", "string.email"),
        ({"sku": "abc-12"}, "sku", "string.pattern"),
        ({"age": 0}, "age", "int32.gt_lte"),
        ({"age": 151}, "age", "int32.gt_lte"),
        ({"tags": []}, "tags", "repeated.min_items"),
        ({"plan": 7}, "plan", "enum.defined_only"),
        ({"address": {"city": "Lyon", "zip": "123"}}, "address.zip", "string.len"),
        # The message-level CEL rule names no field.
        ({"nickname": "Ann Lee"}, "", "nickname_not_name"),
        ({"phone": None}, "contact", "required"),
        # google.api.field_behavior = REQUIRED, at the top and in a nested message that is set.
        ({"name": None}, "name", "field_behavior.required"),
        ({"address": {"zip": "69001"}}, "address.city", "field_behavior.required"),
    ],
)
def test_each_rule_family_is_refused_with_a_bad_request(
    emu: Emulator, changes: dict[str, Any], field: str, reason: str
) -> None:
    emu.reset()
    stub = emu.stub("shop.v1.Signup")
    error, violations = refused(lambda: stub.Register(request(**changes), timeout=10))
    assert (field, reason) in violations
    assert error.details().startswith(f"invalid request to {REGISTER}: request")
    record = emu.calls(REGISTER).last
    assert record is not None and record.code is grpc.StatusCode.INVALID_ARGUMENT
    assert record.answered_by == ""  # refused before any responder
    assert record.violations


def test_the_status_message_names_the_method_and_the_first_violation(emu: Emulator) -> None:
    stub = emu.stub("shop.v1.Signup")
    error, violations = refused(lambda: stub.Register(request(name=None, age=0), timeout=10))
    assert violations[0] == ("name", "field_behavior.required")  # REQUIRED ones come first
    assert ("age", "int32.gt_lte") in violations
    assert error.details() == f"invalid request to {REGISTER}: request.name: is required (and " + (
        f"{len(violations) - 1} more)"
    )
    status = rpc_status.from_call(error)
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    descriptions = {v.field: v.description for v in bad.field_violations}
    assert descriptions["name"] == "is required"  # and not also "must be at least 2 characters"
    assert descriptions["age"] == "must be greater than 0 and less than or equal to 150"


def test_a_client_stream_is_refused_at_the_message_that_breaks_a_rule(emu: Emulator) -> None:
    emu.reset()
    stub = emu.stub("shop.v1.Signup")
    messages = [VALID, request(email="nope"), VALID]
    error, violations = refused(lambda: stub.Import(messages, timeout=10))
    assert violations == [("email", "string.email")]
    assert error.details() == (
        "invalid request to shop.v1.Signup/Import: request[1].email: must be a valid email address"
    )


def test_a_method_without_rules_is_untouched(emu: Emulator) -> None:
    emu.reset()
    assert emu.stub("shop.v1.Signup").Lookup({}, timeout=10).id
    assert "/shop.v1.Signup/Lookup" not in emu.server.validation.plan.requests
    assert "/shop.v1.Signup/Register" in emu.server.validation.plan.requests


def test_report_answers_and_journals_the_violations(caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(protos=SIGNUP, validation={"requests": "report"}) as emu:
        caplog.set_level(logging.WARNING, logger="emulator")
        account = emu.stub("shop.v1.Signup").Register(request(age=0, tags=[]), timeout=10)
        assert account.id  # answered as ever
        record = emu.calls(REGISTER).last
        assert record is not None and record.ok
        assert record.violations == (
            "request.age: must be greater than 0 and less than or equal to 150",
            "request.tags: must contain at least 1 item(s)",
        )
        assert (
            f"{REGISTER}: invalid request (validation: report): request.age: must be greater "
            "than 0 and less than or equal to 150 (and 1 more)"
        ) in caplog.text
        # The admin API's records carry them too, and so the remote client's.
        from emulator import EmulatorClient

        with EmulatorClient(emu.target) as client:
            remote = client.calls(REGISTER).last
        assert remote is not None and remote.violations == record.violations


def test_off_binds_no_hook_and_answers_everything() -> None:
    with Emulator(protos=SIGNUP, validation={"requests": "off"}) as emu:
        validation = emu.server.validation
        assert not validation.live("on_request") and not validation.plan.requests
        assert validation not in emu.server.dispatcher.chain._on_request
        assert emu.stub("shop.v1.Signup").Register({"age": -5}, timeout=10).id
        record = emu.calls(REGISTER).last
        assert record is not None and record.ok and record.violations == ()


def test_a_bare_off_in_emulator_yaml_is_off(tmp_path: Path) -> None:
    # YAML 1.1 reads `off` as false: the docs' own spelling must still load.
    config = tmp_path / "emulator.yaml"
    config.write_text("validation:\n  requests: off\nlog:\n  access: off\n")
    loaded = load_config_file(config)
    assert loaded.validation.requests == "off"
    assert loaded.log.access == "off"


def test_contracts_without_rules_bind_no_hook() -> None:
    with Emulator(protos=PROTOS) as emu:
        assert emu.server.config.validation.requests == "enforce"  # the default
        assert not emu.server.validation.live("on_request")
        assert not emu.server.validation.live("before_response")
        assert emu.server.validation not in emu.server.dispatcher.chain._on_request


def test_validate_proto_and_field_behavior_import_out_of_the_box(tmp_path: Path) -> None:
    (tmp_path / "mini.proto").write_text(
        'syntax = "proto3";\n'
        "package mini.v1;\n"
        'import "buf/validate/validate.proto";\n'
        'import "google/api/field_behavior.proto";\n'
        "message PingRequest {\n"
        "  string id = 1 [(buf.validate.field).string.uuid = true,\n"
        "                 (google.api.field_behavior) = REQUIRED];\n"
        "}\n"
        "service Pinger { rpc Ping(PingRequest) returns (PingRequest); }\n"
    )
    names = [f.name for f in compile_contracts([tmp_path]).file]  # no import path given
    assert {"buf/validate/validate.proto", "google/api/field_behavior.proto"} <= set(names)
    with Emulator(protos=tmp_path) as emu:
        stub = emu.stub("mini.v1.Pinger")
        _, violations = refused(lambda: stub.Ping({"id": "x"}, timeout=10))
        assert violations == [("id", "string.uuid")]
        _, violations = refused(lambda: stub.Ping({}, timeout=10))
        assert violations == [("id", "field_behavior.required")]


def test_a_cel_rule_that_does_not_compile_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "bad.proto").write_text(
        'syntax = "proto3";\n'
        "package bad.v1;\n"
        'import "buf/validate/validate.proto";\n'
        "message Req {\n"
        '  option (buf.validate.message).cel = {id: "broken", expression: "this.nope > 1"};\n'
        "  string id = 1;\n"
        "}\n"
        "service Bad { rpc Do(Req) returns (Req); }\n"
    )
    with pytest.raises(
        ContractError, match=r"bad\.v1\.Req: its buf\.validate rules do not compile"
    ):
        Emulator(protos=tmp_path)

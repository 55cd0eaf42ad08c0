"""Pinned defaults (`defaults.fields`) and how enums are chosen (`defaults.enums`), through real
grpcio clients, and the errors for pins the contracts refuse: in-process, from a file, by `emulate`.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from emulator import Behavior, Emulator
from emulator.config import load_config_file
from emulator.contracts import load_contracts
from emulator.environment import env_overrides
from emulator.errors import ConfigError
from tests.conftest import TEST_PROTOS, EmulateProcess, emulate

PAYMENTS = TEST_PROTOS / "payments"
SERVICE = "payments.v1.Reservations"
STATE = "payments.v1.Reservation.state"
HELD, CONFIRMED, REJECTED = 1, 2, 3
GOLD = 3  # Tier's first declared value after 0 (not its lowest number)


class Client:
    """Real grpcio multi-callables for the payments contract, with its message classes."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.channel = emu.channel()

    def cls(self, name: str) -> Any:
        return self.emu.server.contracts.message_class_by_name(f"payments.v1.{name}")

    def _unary(self, method: str, request: Any, reply: str) -> Any:
        call = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.cls(reply).FromString,
        )
        return call(request, timeout=10)

    def reserve(self, **fields: Any) -> Any:
        request = self.cls("ReserveRequest")(request_id=str(uuid.uuid4()), **fields)
        return self._unary("Reserve", request, "Reservation")

    def checkout(self) -> Any:
        request = self.cls("CheckoutRequest")(request_id=str(uuid.uuid4()), cart_id="cart-1")
        return self._unary("Checkout", request, "CheckoutResponse")

    def watch(self) -> list[Any]:
        call = self.channel.unary_stream(
            f"/{SERVICE}/Watch",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.cls("ReservationEvent").FromString,
        )
        return list(call(self.cls("WatchRequest")(reservation_id=str(uuid.uuid4())), timeout=10))


def reservations(reply: Any) -> Iterator[Any]:
    """Every Reservation in a CheckoutResponse: nested, repeated, map values, in a oneof."""
    yield reply.reservation
    yield from reply.holds
    yield from reply.by_sku.values()
    if reply.WhichOneof("outcome") == "receipt":
        yield reply.receipt.reservation


@pytest.fixture(scope="module")
def pinned_seeded() -> Iterator[Emulator]:
    """State pinned while every other enum is drawn per request, as before pins existed."""
    with Emulator(protos=PAYMENTS, defaults={"enums": "seeded", "fields": {STATE: "HELD"}}) as emu:
        yield emu


def test_a_pinned_state_holds_for_every_request_with_fresh_uuids(pinned_seeded: Emulator) -> None:
    client = Client(pinned_seeded)
    replies = [client.reserve(sku="SKU-1") for _ in range(30)]
    assert {r.state for r in replies} == {HELD}
    assert len({r.reservation_id for r in replies}) == 30  # fresh requests, fresh defaults
    # The unpinned enums of the same message are still drawn per request.
    assert len({h for r in replies for h in r.history}) > 1


def test_pins_reach_every_occurrence_of_the_message(pinned_seeded: Emulator) -> None:
    client = Client(pinned_seeded)
    replies = [client.checkout() for _ in range(30)]
    found = [r for reply in replies for r in reservations(reply)]
    assert len(found) >= 30 * 3  # one nested, 1-3 repeated, 1-3 map values each
    assert {r.state for r in found} == {HELD}
    assert any(reply.WhichOneof("outcome") == "receipt" for reply in replies)
    # The same enum in another message is not that message's field: still drawn.
    assert len({reply.state for reply in replies}) > 1
    events = client.watch()
    assert len(events) == 3 and {e.reservation.state for e in events} == {HELD}


def test_a_pin_wins_over_the_echo_of_the_request(pinned_seeded: Emulator) -> None:
    assert Client(pinned_seeded).reserve(state=REJECTED).state == HELD
    with Emulator(protos=PAYMENTS) as emu:
        assert Client(emu).reserve(state=REJECTED).state == REJECTED  # echoed when not pinned


def test_a_pin_changes_its_field_and_nothing_else() -> None:
    request = b"\n\x03r-1"  # the same request bytes to both emulators
    replies = []
    for fields in ({}, {STATE: "RELEASED", "payments.v1.Reservation.quantity": 7}):
        with Emulator(protos=PAYMENTS, seed=4, defaults={"fields": fields}) as emu:
            call = emu.channel().unary_unary(f"/{SERVICE}/Checkout")
            replies.append(Client(emu).cls("CheckoutResponse").FromString(call(request)))
    plain, pinned = replies
    assert {r.state for r in reservations(pinned)} == {4}  # RELEASED
    assert {r.quantity for r in reservations(pinned)} == {7}
    for reply in replies:
        for r in reservations(reply):
            r.ClearField("state")
            r.ClearField("quantity")
    assert plain == pinned


def test_pins_of_every_kind_of_field() -> None:
    token = base64.b64encode(b"\x00tok").decode()
    fields = {
        "payments.v1.Reservation.reservation_id": "r-fixed",
        "payments.v1.Reservation.state": 2,  # an enum by number
        "payments.v1.Reservation.amount": {"currencyCode": "EUR", "units": "12"},  # JSON form
        "payments.v1.Reservation.quantity": "5",  # JSON's text form of an integer
        "payments.v1.Reservation.tags": ["vip", "gift"],
        "payments.v1.Reservation.refundable": False,  # a zero value replaces a generated one
        "payments.v1.Reservation.risk_score": 0.25,
        "payments.v1.Reservation.token": token,  # bytes: base64, as in JSON
        "payments.v1.Reservation.expiresAt": "2030-01-01T00:00:00Z",  # JSON field name
        "payments.v1.Reservation.limits": {"daily": 100},
        "payments.v1.Reservation.history": ["HELD", "CONFIRMED"],
        "payments.v1.Reservation.note": "",  # proto3 optional: present, and empty
        "payments.v1.CheckoutResponse.decline": {"reason": "card expired"},  # a oneof member
    }
    with Emulator(protos=PAYMENTS, defaults={"fields": fields}) as emu:
        client = Client(emu)
        for _ in range(5):
            reply = client.checkout()
            assert reply.WhichOneof("outcome") == "decline"
            assert reply.decline.reason == "card expired"
            for r in reservations(reply):
                assert r.reservation_id == "r-fixed" and r.state == CONFIRMED
                assert (r.amount.currency_code, r.amount.units, r.amount.nanos) == ("EUR", 12, 0)
                assert r.quantity == 5 and list(r.tags) == ["vip", "gift"]
                assert r.refundable is False and r.risk_score == 0.25
                assert r.token == b"\x00tok"
                assert r.expires_at.ToJsonString() == "2030-01-01T00:00:00Z"
                assert dict(r.limits) == {"daily": 100}
                assert list(r.history) == [HELD, CONFIRMED]
                assert r.HasField("note") and r.note == ""


def test_enums_first_by_default_the_first_declared_value_after_zero() -> None:
    with Emulator(protos=PAYMENTS) as emu:
        client = Client(emu)
        replies = [client.checkout() for _ in range(20)]
    assert {reply.state for reply in replies} == {HELD}
    assert {reply.tier for reply in replies} == {GOLD}  # declaration order, not the numbers
    assert {reply.status.only for reply in replies} == {0}  # an enum with only 0 gets 0
    assert {h for reply in replies for r in reservations(reply) for h in r.history} == {HELD}
    assert {r.state for reply in replies for r in reservations(reply)} == {HELD}


def test_enums_seeded_draws_declared_values_per_request() -> None:
    with Emulator(protos=PAYMENTS, defaults={"enums": "seeded"}) as emu:
        client = Client(emu)
        replies = [client.checkout() for _ in range(30)]
    states = {r.state for reply in replies for r in reservations(reply)}
    assert len(states) > 1 and states <= {1, 2, 3, 4}  # varied, never 0
    assert len({reply.tier for reply in replies}) > 1


def test_enum_modes_differ_in_enum_fields_only() -> None:
    request = b"\n\x03r-1"
    replies = []
    for enums in ("first", "seeded"):
        with Emulator(protos=PAYMENTS, seed=9, defaults={"enums": enums}) as emu:
            call = emu.channel().unary_unary(f"/{SERVICE}/Reserve")
            replies.append(Client(emu).cls("Reservation").FromString(call(request)))
    for reply in replies:
        reply.ClearField("state")
        reply.ClearField("history")
    assert replies[0] == replies[1]


class Wrapping(Behavior):
    service = SERVICE

    def Reserve(self, request, ctx):  # type: ignore[no-untyped-def]
        reply = ctx.default_response()
        reply.reservation_id = "from-behaviour"
        return reply


def test_ctx_default_response_honours_pins_and_the_enum_mode() -> None:
    fields = {"payments.v1.Reservation.quantity": 3}
    with Emulator(protos=PAYMENTS, behaviors=[Wrapping], defaults={"fields": fields}) as emu:
        client = Client(emu)
        for _ in range(10):
            reply = client.reserve(state=0)
            assert reply.reservation_id == "from-behaviour"
            assert reply.quantity == 3
            assert reply.state == HELD and set(reply.history) == {HELD}


BAD_PINS = [
    pytest.param(
        {STATE: "HELDD"},
        [
            f'defaults.fields["{STATE}"]',
            "'HELDD' is not a value of enum payments.v1.ReservationState (did you mean 'HELD'?)",
            "its values: RESERVATION_STATE_UNSPECIFIED = 0, HELD = 1, CONFIRMED = 2",
        ],
        id="enum-value",
    ),
    pytest.param(
        {STATE: "held"}, ["'held' is not a value", "(did you mean 'HELD'?)"], id="enum-case"
    ),
    pytest.param(
        {STATE: 9}, ["9 is not a number of enum payments.v1.ReservationState"], id="enum-number"
    ),
    pytest.param(
        {"payments.v1.Reservaton.state": "HELD"},
        [
            'defaults.fields["payments.v1.Reservaton.state"]',
            "no message 'payments.v1.Reservaton' in the contracts "
            "(did you mean 'payments.v1.Reservation'",
            "write the message's full name, package included, then the field's name",
        ],
        id="unknown-message",
    ),
    pytest.param(
        {"Reservation.state": "HELD"},
        ["no message 'Reservation'", "(did you mean 'payments.v1.Reservation'?)"],
        id="package-left-out",
    ),
    pytest.param(
        {"payments.v1.Reservation.stat": "HELD"},
        [
            "message payments.v1.Reservation has no field 'stat' (did you mean 'state'?)",
            "its fields: reservation_id, state, amount",
        ],
        id="unknown-field",
    ),
    pytest.param(
        {"payments.v1.Reservation": "HELD"},
        ["names a message, not a field: add the field's name"],
        id="message-not-field",
    ),
    pytest.param({"state": "HELD"}, ["expected a message's full name and a field"], id="no-dot"),
    pytest.param(
        {"payments.v1.ReserveRequest.sku": "SKU-1"},
        ["message payments.v1.ReserveRequest is in no response", "pins shape default responses"],
        id="request-only",
    ),
    pytest.param(
        {"payments.v1.Reservation.quantity": "many"},
        ["expected an integer, got text 'many'; quantity is int32"],
        id="integer",
    ),
    pytest.param(
        {"payments.v1.Reservation.quantity": 2**31},
        ["2147483648 is out of range: -2147483648 to 2147483647"],
        id="range",
    ),
    pytest.param(
        {"payments.v1.Reservation.reservation_id": 1.10},
        ["expected text, got a number 1.1: quote it in YAML"],
        id="string",
    ),
    pytest.param(
        {"payments.v1.Reservation.refundable": "yes"},
        ["expected true or false, got 'yes'"],
        id="bool",
    ),
    pytest.param(
        {"payments.v1.Reservation.tags": "vip"},
        ["expected a list, got text 'vip'; tags is a list of string"],
        id="list",
    ),
    pytest.param(
        {"payments.v1.Reservation.amount": {"curency": "EUR"}},
        ["not a payments.v1.Money in JSON form", 'no field named "curency"'],
        id="message",
    ),
    pytest.param(
        {"payments.v1.Reservation.history": ["HELD", "NOPE"]},
        ["item 1: 'NOPE' is not a value of enum payments.v1.ReservationState"],
        id="repeated-enum",
    ),
    pytest.param(
        {"payments.v1.Reservation.limits": {"daily": "lots"}},
        ["at key 'daily': expected an integer", "limits is a map of string to int32"],
        id="map-value",
    ),
    pytest.param({STATE: None}, ["no value: give the value"], id="null"),
    pytest.param(
        {
            "payments.v1.CheckoutResponse.receipt": {},
            "payments.v1.CheckoutResponse.decline": {},
        },
        ["members of the same oneof 'outcome'", "pin one of them"],
        id="oneof",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), BAD_PINS)
def test_bad_pins_are_refused_naming_the_key(fields: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Emulator(protos=PAYMENTS, defaults={"fields": fields})
    message = str(err.value)
    assert message.startswith("Emulator(...): defaults.fields[")
    for part in expected:
        assert part in message, message


def test_a_well_known_type_can_be_pinned_too() -> None:
    fields = {"google.protobuf.Timestamp.nanos": 0}
    with Emulator(protos=PAYMENTS, defaults={"fields": fields}) as emu:
        events = Client(emu).watch()
    assert {e.at.nanos for e in events} == {0}
    assert {e.reservation.expires_at.nanos for e in events} == {0}
    assert len({e.at.seconds for e in events}) == 3  # the other field still generated


def test_a_bad_enum_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"defaults\.enums: expected one of 'first', 'seeded'"):
        Emulator(protos=PAYMENTS, defaults={"enums": "random"})


CONFIG = f"""\
protos: [{PAYMENTS}]
seed: 3
defaults:
  enums: seeded
  fields:
    payments.v1.Reservation.amount: {{currencyCode: EUR, units: 12}}
    payments.v1.Reservation.state: HELDD
"""


def test_a_bad_pin_in_a_config_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(CONFIG)
    expected = (
        f"{path}:7: defaults.fields[\"{STATE}\"]: 'HELDD' is not a value of enum "
        "payments.v1.ReservationState (did you mean 'HELD'?)"
    )
    for args in (["check", "--config", str(path)], ["--config", str(path), "--port", "0"]):
        result = emulate(*args)
        assert result.returncode == 2, result
        assert result.stderr.startswith(f"emulate: error: {expected}"), result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_good_pins_pass_emulate_check_and_serve(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(CONFIG.replace("HELDD", "HELD"))
    result = emulate("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 service, 3 methods")
    with EmulateProcess("--config", str(path)) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            call = channel.unary_unary(f"/{SERVICE}/Reserve")
            reply = call(b"\n\x03r-1", timeout=10)
        code, _, _ = proc.stop()
    assert code == 0
    reservation = load_contracts([str(PAYMENTS)]).message_class_by_name("payments.v1.Reservation")
    assert reservation.FromString(reply).state == HELD


def test_the_enum_mode_has_an_environment_variable() -> None:
    assert env_overrides({"EMULATOR_DEFAULTS_ENUMS": "seeded"}) == {"defaults.enums": "seeded"}
    with pytest.raises(ConfigError, match="EMULATOR_DEFAULTS_ENUMS"):
        env_overrides({"EMULATOR_DEFAULTS_ENUMS": "random"})


def test_config_where_keeps_file_lines_under_overrides(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text(CONFIG)
    config = load_config_file(path).with_overrides({"seed": 5}, source="command line")
    assert config.where(f"defaults.fields.{STATE}") == f"{path}:7"
    assert config.where("seed") == "command line"  # set again by the override

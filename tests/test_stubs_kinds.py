"""Declarative stubs answer at run time: matching, responses, templates, the journal and
precedence, for all four RPC kinds, through real grpcio clients on a real server.

Each test builds its own in-process emulator (they start in tens of milliseconds) and adds the
stubs it needs as a stub file writes them, so a test reads as the stub file it proves.
"""

from __future__ import annotations

import datetime
import json
import queue
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emulator import Behavior, Emulator
from emulator.client import as_request
from emulator.contracts.model import RpcKind
from emulator.errors import BehaviorFailedError
from tests.conftest import PROTOS, wait_until

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
GET = f"{CATALOG}/GetProduct"
LIST = f"{CATALOG}/ListProducts"
UPDATE = f"{CATALOG}/UpdateProduct"
CREATE = f"{ORDERS}/CreateOrder"
UPLOAD = f"{ORDERS}/UploadLineItems"
CHAT = f"{ORDERS}/Chat"
OK = grpc.StatusCode.OK
TOKEN = "stub-test-token-8e21c4"


# -- a grpcio client for any method ------------------------------------------------------------


@dataclass
class Outcome:
    """What a grpcio client saw of one call."""

    messages: list[Message]
    code: grpc.StatusCode
    details: str
    initial: list[tuple[str, Any]] = field(default_factory=list)
    trailing: list[tuple[str, Any]] = field(default_factory=list)
    error: grpc.RpcError | None = None

    @property
    def message(self) -> Message:
        assert self.code == OK, (self.code, self.details)
        assert len(self.messages) == 1, self.messages
        return self.messages[0]


_channels: weakref.WeakKeyDictionary[Emulator, grpc.Channel] = weakref.WeakKeyDictionary()


def _channel(emu: Emulator) -> grpc.Channel:
    if emu not in _channels:
        _channels[emu] = emu.channel()  # closed when the emulator stops
    return _channels[emu]


def rpc(
    emu: Emulator,
    method: str,
    *requests: Mapping[str, Any] | Message,
    metadata: Sequence[tuple[str, str]] = (),
    channel: grpc.Channel | None = None,
    timeout: float = 10,
) -> Outcome:
    """One call of `method` (`pkg.Service/Method`) with these request messages, whatever its
    kind: a grpcio multicallable over the contract's own message classes."""
    spec = emu.server.contracts.methods[f"/{method}"]
    messages = [as_request(r, spec, emu.server.contracts) for r in requests]
    ch = channel or _channel(emu)
    kind = spec.kind
    make = {
        RpcKind.UNARY_UNARY: ch.unary_unary,
        RpcKind.UNARY_STREAM: ch.unary_stream,
        RpcKind.STREAM_UNARY: ch.stream_unary,
        RpcKind.STREAM_STREAM: ch.stream_stream,
    }[kind]
    multicallable: Any = make(
        spec.path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=spec.output_class.FromString,
    )
    argument: Any = iter(messages) if kind.client_streaming else messages[0]
    if not kind.server_streaming:
        try:
            reply, call = multicallable.with_call(argument, metadata=metadata, timeout=timeout)
        except grpc.RpcError as exc:
            return _outcome([], exc, exc)
        return _outcome([reply], call, None)
    call = multicallable(argument, metadata=metadata, timeout=timeout)
    got: list[Message] = []
    try:
        got.extend(call)
    except grpc.RpcError as exc:
        return _outcome(got, call, exc)
    return _outcome(got, call, None)


def _outcome(messages: list[Message], call: Any, error: grpc.RpcError | None) -> Outcome:
    return Outcome(
        messages,
        call.code(),
        call.details() or "",
        list(call.initial_metadata() or ()),
        list(call.trailing_metadata() or ()),
        error,
    )


def emulator(**config: Any) -> Emulator:
    return Emulator(protos=PROTOS, **config)


def stub(emu: Emulator, name: str, method: str, **rest: Any) -> Any:
    """One named stub, added as a stub file writes it; its handle."""
    return emu.stubs.add({"name": name, "method": method, **rest})


def answered_by(emu: Emulator, method: str | None = None) -> list[str]:
    return [c.answered_by for c in emu.calls(method)]


def counts(emu: Emulator) -> dict[str, int]:
    return {s["name"]: s["answered"] for s in emu.stubs.stats()}


def product(**fields: Any) -> dict[str, Any]:
    return {"product": fields}


# The request each kind is called with, keyed by one string field a stub can match on.
KINDS = {
    "unary": (GET, lambda key: [{"product_id": key}], "product_id"),
    "server_stream": (LIST, lambda key: [{"category_id": key}], "category_id"),
    "client_stream": (
        UPLOAD,
        lambda key: [{"product_id": key, "quantity": 1}, {"product_id": "x", "quantity": 2}],
        "product_id",
    ),
    "bidi": (CHAT, lambda key: [{"text": key}, {"text": "more"}], "text"),
}
KIND_IDS = list(KINDS)


# -- matching: every operator holds for one request and fails for another ---------------------

# (conditions on UpdateProductRequest, a request they hold for, one they do not, the reason)
OPERATOR_CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    "bare-value-equals": (
        {"product.product_id": "p1"},
        product(product_id="p1"),
        product(product_id="p2"),
        "product.product_id: expected 'p1', got 'p2'",
    ),
    "equals": (
        {"product.product_id": {"equals": "p1"}},
        product(product_id="p1"),
        product(product_id="p10"),
        "expected 'p1', got 'p10'",
    ),
    "regex": (
        {"product.sku": {"regex": "^SKU-[0-9]+$"}},
        product(sku="SKU-42"),
        product(sku="XSKU-42"),
        "product.sku: expected a match for '^SKU-[0-9]+$', got 'XSKU-42'",
    ),
    "glob": (
        {"product.name": {"glob": "Wid*t"}},
        product(name="Widget"),
        product(name="Widgets"),
        "a match for glob 'Wid*t'",
    ),
    "contains-string": (
        {"product.description": {"contains": "blue"}},
        product(description="a blue chair"),
        product(description="a red chair"),
        "text containing 'blue'",
    ),
    "contains-repeated": (
        {"product.tags": {"contains": ["a", "b"]}},
        product(tags=["c", "b", "a"]),
        product(tags=["a", "c"]),
        "a list containing ['a', 'b']",
    ),
    "list-equals-any-order": (
        {"product.tags": {"equals": ["a", "b"], "ignore_order": True}},
        product(tags=["b", "a"]),
        product(tags=["a", "b", "b"]),
        "in any order",
    ),
    "any_of": (
        {"product.name": {"any_of": ["Chair", "Desk"]}},
        product(name="Desk"),
        product(name="Lamp"),
        "one of 'Chair', 'Desk'",
    ),
    "present": (
        {"product.rating": {"present": True}},
        product(rating=0.0),  # a wrapper set to 0 is still set
        product(),
        "product.rating: expected set, got nothing (not set)",
    ),
    "absent": (
        {"product.image_url": {"absent": True}},
        product(name="no image"),
        product(image_url="https://x.example/i.png"),
        "expected not set",
    ),
    "gt": (
        {"product.price.units": {"gt": 10}},
        product(price={"units": 11}),
        product(price={"units": 10}),
        "product.price.units: expected > 10, got 10",
    ),
    "gte": (
        {"product.price.units": {"gte": 10}},
        product(price={"units": 10}),
        product(price={"units": 9}),
        ">= 10",
    ),
    "lt": (
        {"product.price.units": {"lt": 10}},
        product(price={"units": 9}),
        product(price={"units": 10}),
        "< 10",
    ),
    "lte": (
        {"product.price.units": {"lte": 10}},
        product(price={"units": 10}),
        product(price={"units": 11}),
        "<= 10",
    ),
    "len-of-list": (
        {"product.tags": {"len": 2}},
        product(tags=["a", "b"]),
        product(tags=["a"]),
        "length == 2",
    ),
    "len-of-string": (
        {"product.sku": {"len": {"gte": 3, "lt": 5}}},
        product(sku="abcd"),
        product(sku="abcde"),
        "length >= 3 and length < 5",
    ),
    "not": (
        {"product.name": {"not": "Widget"}},
        product(name="Gadget"),
        product(name="Widget"),
        "not 'Widget'",
    ),
    "enum-by-name": (
        {"product.availability": "BACKORDER"},
        product(availability="BACKORDER"),
        product(availability="IN_STOCK"),
        "product.availability: expected 'BACKORDER', got 'IN_STOCK'",
    ),
    "enum-by-number": (
        {"product.availability": 2},
        product(availability="BACKORDER"),
        product(availability="DISCONTINUED"),
        "expected 'BACKORDER', got 'DISCONTINUED'",
    ),
    "nested-dicts": (
        {"product": {"price": {"units": {"gte": 5}, "currency_code": "EUR"}}},
        product(price={"units": 7, "currency_code": "EUR"}),
        product(price={"units": 7, "currency_code": "USD"}),
        "product.price.currency_code: expected 'EUR', got 'USD'",
    ),
    "json-names": (
        {"product.productId": "p1", "updateMask": {"present": True}},
        {"product": {"product_id": "p1"}, "update_mask": "name"},
        {"product": {"product_id": "p1"}},
        "update_mask: expected set",
    ),
    "map-key": (
        {"product.attributes.color": "red"},
        product(attributes={"color": "red", "size": "L"}),
        product(attributes={"color": "blue"}),
        "product.attributes['color']: expected 'red', got 'blue'",
    ),
}


@pytest.fixture(scope="module")
def shared() -> Iterator[Emulator]:
    with emulator() as emu:
        yield emu


@pytest.fixture
def emu(shared: Emulator) -> Iterator[Emulator]:
    shared.reset()
    yield shared
    shared.reset()


@pytest.mark.parametrize("case", list(OPERATOR_CASES))
def test_each_operator_matches_its_request_and_names_why_another_fails(
    emu: Emulator, case: str
) -> None:
    conditions, good, bad, reason = OPERATOR_CASES[case]
    stub(emu, case, UPDATE, match={"request": conditions}, respond={"message": {"name": "hit"}})
    assert rpc(emu, UPDATE, good).message.name == "hit"
    missed = rpc(emu, UPDATE, bad).message
    assert missed.name != "hit"
    assert answered_by(emu) == [f"stub {case}", "default"]
    (miss,) = emu.unmatched(UPDATE).last.near_misses
    assert miss.stub == case
    assert any(reason in r for r in miss.reasons), miss.reasons
    assert counts(emu) == {case: 1}


# (conditions, whether they hold when the value is missing): a missing message on the way, a
# missing map key or header reads as the empty value protobuf reads there; never a crash.
MISSING_CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "regex-under-an-unset-message": ({"request": {"product.sku": {"regex": "^S"}}}, False),
    "gt-under-an-unset-message": ({"request": {"product.price.units": {"gt": 10}}}, False),
    "lt-under-an-unset-message": ({"request": {"product.price.units": {"lt": 10}}}, True),
    "glob-on-a-missing-map-key": ({"request": {"product.attributes.color": {"glob": "r*"}}}, False),
    "len-of-a-list-under-an-unset-message": ({"request": {"product.tags": {"len": 0}}}, True),
    "not-regex-on-a-missing-value": ({"request": {"product.name": {"not": {"regex": "^W"}}}}, True),
    "regex-on-a-missing-header": ({"metadata": {"x-version": {"regex": "^2"}}}, False),
    "contains-on-a-missing-header": ({"metadata": {"x-version": {"contains": "2"}}}, False),
}


@pytest.mark.parametrize("case", list(MISSING_CASES))
def test_conditions_on_missing_values_answer_rather_than_break_the_call(
    emu: Emulator, case: str
) -> None:
    match, holds = MISSING_CASES[case]
    stub(emu, case, UPDATE, match=match, respond={"message": {"name": "hit"}})
    out = rpc(emu, UPDATE, {"update_mask": "name"})  # no product, no headers
    assert out.code == OK, out.details
    assert (out.message.name == "hit") is holds
    assert emu.behavior_errors == []
    if not holds:
        (miss,) = emu.unmatched().last.near_misses
        assert miss.reasons[0].endswith("got nothing (not set)"), miss.reasons


def test_metadata_conditions(emu: Emulator) -> None:
    stub(
        emu,
        "tenant",
        GET,
        match={"metadata": {"x-tenant": "acme", "x-version": {"regex": "^2\\."}}},
        respond={"message": {"name": "for acme"}},
    )
    good = [("x-tenant", "acme"), ("x-version", "2.1")]
    assert rpc(emu, GET, {"product_id": "p1"}, metadata=good).message.name == "for acme"
    no_version = rpc(emu, GET, {"product_id": "p1"}, metadata=[("x-tenant", "acme")])
    assert no_version.code == OK and no_version.message.name != "for acme"
    other = rpc(emu, GET, {"product_id": "p1"}, metadata=[("x-tenant", "globex")]).message
    assert other.name != "for acme"
    reasons = emu.unmatched().last.near_misses[0].reasons
    assert reasons == (
        "header x-tenant: expected 'acme', got 'globex'",
        "header x-version: expected a match for '^2\\\\.', got nothing (not set)",
    )


def test_a_server_stream_matches_its_request_fields(emu: Emulator) -> None:
    stub(
        emu,
        "toys",
        LIST,
        match={"request": {"category_id": "toys", "page.page_size": {"gte": 2}}},
        respond={"stream": [{"message": {"name": "Yo-yo"}}, {"message": {"name": "Kite"}}]},
    )
    hit = rpc(emu, LIST, {"category_id": "toys", "page": {"page_size": 2}})
    assert [m.name for m in hit.messages] == ["Yo-yo", "Kite"]
    missed = rpc(emu, LIST, {"category_id": "toys", "page": {"page_size": 1}})
    assert missed.code == OK and "Yo-yo" not in [m.name for m in missed.messages]
    assert answered_by(emu) == ["stub toys", "default"]
    assert emu.unmatched().last.near_misses[0].reasons == ("page.page_size: expected >= 2, got 1",)


ITEMS = [
    {"product_id": "a", "quantity": 1},
    {"product_id": "b", "quantity": 5},
    {"product_id": "c", "quantity": 2},
]


@pytest.mark.parametrize(
    ("message", "conditions", "matches"),
    [
        ("first", {"product_id": "a"}, True),
        ("first", {"product_id": "b"}, False),
        ("any", {"quantity": {"gte": 5}}, True),
        ("any", {"quantity": {"gt": 5}}, False),
        ("all", {"quantity": {"gte": 1}}, True),
        ("all", {"quantity": {"lt": 5}}, False),
        ("index 1", {"product_id": "b"}, True),
        ({"index": 2}, {"product_id": "c"}, True),
        (2, {"product_id": "b"}, False),
        ("index 3", {"product_id": "a"}, False),  # there is no fourth message
    ],
)
def test_client_stream_message_modes(
    emu: Emulator, message: Any, conditions: dict[str, Any], matches: bool
) -> None:
    stub(
        emu,
        "upload",
        UPLOAD,
        match={"request": conditions, "message": message},
        respond={"message": {"item_count": 99}},
    )
    summary = rpc(emu, UPLOAD, *ITEMS).message
    assert (summary.item_count == 99) is matches
    assert answered_by(emu) == (["stub upload"] if matches else ["default"])
    # Whatever the stub read before choosing, the call saw (and journalled) all three.
    assert emu.calls().last.request_count == 3


def test_bidi_stub_chosen_on_a_later_message(emu: Emulator) -> None:
    stub(
        emu,
        "second-says-help",
        CHAT,
        match={"request": {"text": "help"}, "message": "index 1"},
        respond={"message": {"text": "an agent is coming"}},
    )
    hit = rpc(emu, CHAT, {"text": "hello"}, {"text": "help"}, {"text": "now"})
    # respond.message (no stream) answers every inbound message, those read before choosing too.
    assert [m.text for m in hit.messages] == ["an agent is coming"] * 3
    rpc(emu, CHAT, {"text": "help"}, {"text": "hello"})
    assert answered_by(emu) == ["stub second-says-help", "default"]
    assert emu.unmatched().last.near_misses[0].reasons == ("text: expected 'help', got 'hello'",)


# -- which stub wins ---------------------------------------------------------------------------


def test_priority_beats_specificity_and_order(emu: Emulator) -> None:
    stub(emu, "specific", GET, match={"request": {"product_id": "p1"}, "metadata": {"x-a": "1"}})
    stub(emu, "urgent", GET, priority=10, respond={"message": {"name": "urgent"}})
    reply = rpc(emu, GET, {"product_id": "p1"}, metadata=[("x-a", "1")]).message
    assert reply.name == "urgent"
    assert counts(emu) == {"specific": 0, "urgent": 1}


def test_ties_go_to_the_most_specific_then_to_file_order(emu: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "ties.yaml"
    path.write_text(
        f"""
- name: broad
  method: {GET}
  match: {{request: {{product_id: {{regex: "^p"}}}}}}
  respond: {{message: {{name: broad}}}}
- name: first-written
  method: {GET}
  match: {{request: {{product_id: p1}}, metadata: {{x-a: "1"}}}}
  respond: {{message: {{name: first-written}}}}
- name: second-written
  method: {GET}
  match: {{request: {{product_id: p1}}, metadata: {{x-a: {{present: true}}}}}}
  respond: {{message: {{name: second-written}}}}
"""
    )
    with emulator(stubs=[str(path)]) as emu2:
        both = rpc(emu2, GET, {"product_id": "p1"}, metadata=[("x-a", "1")]).message
        assert both.name == "first-written"  # 2 conditions each: the one written first
        one = rpc(emu2, GET, {"product_id": "p1"}, metadata=[("x-a", "2")]).message
        assert one.name == "second-written"  # more specific than `broad`, though written later
        assert rpc(emu2, GET, {"product_id": "p2"}).message.name == "broad"
        sources = {s["name"]: s["source"] for s in emu2.stubs.stats()}
        assert sources["first-written"] == f"{path}:6"


@pytest.mark.parametrize("kind", KIND_IDS)
def test_times_then_the_next_responder(kind: str) -> None:
    method, requests, key = KINDS[kind]
    with emulator() as emu:
        stub(emu, "twice", method, match={"request": {key: "k"}}, times=2)
        for _ in range(3):
            assert rpc(emu, method, *requests("k")).code == OK
        assert answered_by(emu) == ["stub twice", "stub twice", "default"]
        assert emu.unmatched().last.near_misses[0].reasons == ("answered its 2 times",)


SEQUENCE_CASES = {
    "repeat_last": ["first", "second", "second", "second"],
    "cycle": ["first", "second", "first", "second"],
    "fall_through": ["first", "second", None, None],
}


@pytest.mark.parametrize("then", list(SEQUENCE_CASES))
def test_sequences_unary(emu: Emulator, then: str) -> None:
    default = rpc(emu, GET, {"product_id": "p1"}).message.name
    emu.reset()
    stub(
        emu,
        "seq",
        GET,
        sequence=[{"message": {"name": "first"}}, {"message": {"name": "second"}}],
        then=then,
    )
    names = [rpc(emu, GET, {"product_id": "p1"}).message.name for _ in range(4)]
    assert names == [n or default for n in SEQUENCE_CASES[then]]
    expected = ["stub seq" if n else "default" for n in SEQUENCE_CASES[then]]
    assert answered_by(emu) == expected
    if then == "fall_through":
        assert emu.unmatched().last.near_misses[0].reasons == (
            "its sequence of 2 responses is used up",
        )


@pytest.mark.parametrize("kind", ["server_stream", "client_stream", "bidi"])
def test_sequences_on_streams(kind: str) -> None:
    method, requests, _ = KINDS[kind]
    errors = {"code": "UNAVAILABLE", "message": "warming up"}
    with emulator() as emu:
        stub(emu, "seq", method, sequence=[{"status": errors}, {}], then="fall_through")
        codes = [rpc(emu, method, *requests("k")).code for _ in range(3)]
        assert codes == [grpc.StatusCode.UNAVAILABLE, OK, OK]
        assert answered_by(emu) == ["stub seq", "stub seq", "default"]


def test_scenarios_move_through_states(emu: Emulator) -> None:
    common = {"method": CREATE, "scenario": "order-o1"}
    emu.stubs.add(
        {
            **common,
            "name": "create",
            "when_state": "started",
            "set_state": "created",
            "respond": {"message": {"status": "PENDING"}},
        },
        {
            **common,
            "name": "pay",
            "when_state": "created",
            "set_state": "paid",
            "respond": {"message": {"status": "PAID"}},
        },
        {
            **common,
            "name": "after-paid",
            "when_state": "paid",
            "respond": {"message": {"status": "SHIPPED"}},
        },
    )
    assert emu.stubs.scenario("order-o1") == "started"
    statuses = [rpc(emu, CREATE, {"customer_id": "c"}).message.status for _ in range(3)]
    assert statuses == [1, 2, 3]  # PENDING, PAID, SHIPPED
    assert emu.stubs.scenario("order-o1") == "paid"
    emu.stubs.set_scenario("order-o1", "created")
    assert rpc(emu, CREATE, {"customer_id": "c"}).message.status == 2
    emu.stubs.set_scenario("order-o1", "nowhere")
    assert rpc(emu, CREATE, {"customer_id": "c"}).message.status != 2
    reasons = {m.stub: m.reasons for m in emu.unmatched().last.near_misses}
    assert reasons["pay"] == ("scenario order-o1 is 'nowhere', not 'created'",)


def test_a_client_stream_moves_a_scenario_that_a_bidi_stub_waits_for(emu: Emulator) -> None:
    emu.stubs.add(
        {
            "name": "uploaded",
            "method": UPLOAD,
            "scenario": "cart",
            "set_state": "full",
            "match": {"request": {"quantity": {"gt": 0}}, "message": "all"},
        },
        {
            "name": "chat-when-full",
            "method": CHAT,
            "scenario": "cart",
            "when_state": "full",
            "respond": {"message": {"text": "your cart is full"}},
        },
    )
    assert [m.text for m in rpc(emu, CHAT, {"text": "hi"}).messages] != ["your cart is full"]
    rpc(emu, UPLOAD, *ITEMS)
    assert emu.stubs.scenario("cart") == "full"
    assert [m.text for m in rpc(emu, CHAT, {"text": "hi"}).messages] == ["your cart is full"]
    emu.reset()
    assert emu.stubs.scenario("cart") == "started"


# -- responses -----------------------------------------------------------------------------------


def test_a_message_is_merged_onto_the_default(emu: Emulator) -> None:
    default = rpc(emu, GET, {"product_id": "p1"}).message
    assert default.price.currency_code and default.price.units != 5
    stub(
        emu,
        "merged",
        GET,
        respond={"message": {"name": "Widget", "stock_count": 0, "price": {"units": 5}}},
    )
    got = rpc(emu, GET, {"product_id": "p1"}).message
    assert got.name == "Widget"
    assert got.WhichOneof("stock") == "stock_count" and got.stock_count == 0
    assert (got.price.units, got.price.currency_code, got.price.nanos) == (
        5,
        default.price.currency_code,
        default.price.nanos,
    )
    # Everything the stub does not name is the default's.
    for message in (got, default):
        message.ClearField("name")
        message.ClearField("stock_count")
        message.ClearField("restock_at")
        message.price.units = 0
    assert got == default


def test_a_client_stream_message_is_merged_onto_the_default_of_the_whole_stream(
    emu: Emulator,
) -> None:
    default = rpc(emu, UPLOAD, *ITEMS).message
    stub(
        emu,
        "first-is-a",
        UPLOAD,
        match={"request": {"product_id": "a"}},  # chosen on the first message
        respond={"message": {"total": {"currency_code": "XTS"}}},
    )
    got = rpc(emu, UPLOAD, *ITEMS).message
    assert got.total.currency_code == "XTS"
    assert (got.item_count, got.total_quantity, got.total.units) == (
        default.item_count,
        default.total_quantity,
        default.total.units,
    )
    assert [r.request_count for r in emu.calls()] == [3, 3]


def test_a_server_stream_stub_without_stream_keeps_the_default_stream(emu: Emulator) -> None:
    defaults = rpc(emu, LIST, {"category_id": "c"}).messages
    assert len(defaults) == 3  # defaults.stream_messages
    stub(emu, "headers-only", LIST, respond={"headers": {"x-cache": "miss"}})
    out = rpc(emu, LIST, {"category_id": "c"})
    assert out.messages == defaults and ("x-cache", "miss") in out.initial
    emu.reset()
    stub(emu, "named", LIST, respond={"message": {"name": "same name"}})
    shaped = rpc(emu, LIST, {"category_id": "c"}).messages
    assert [m.name for m in shaped] == ["same name"] * 3
    assert [m.sku for m in shaped] == [m.sku for m in defaults]


def test_each_message_of_a_long_stream_is_merged_onto_its_own_default() -> None:
    with emulator(defaults={"stream_messages": 260}) as emu:
        defaults = rpc(emu, LIST, {"category_id": "c"}).messages
        stub(emu, "named", LIST, respond={"message": {"name": "n"}})
        shaped = rpc(emu, LIST, {"category_id": "c"}).messages
        assert [m.sku for m in shaped] == [m.sku for m in defaults]
        assert shaped[256].sku != shaped[0].sku  # not the cached merge of message 0


def test_a_new_stub_never_gets_the_answer_of_a_removed_one(emu: Emulator) -> None:
    # Merged answers are cached per stub message; a removed stub's must not be served to the
    # next one (CPython reuses the memory, and so the id(), of freed objects).
    for index in range(40):
        with emu.stub_for(GET, respond={"message": {"name": f"v{index}"}}):
            assert rpc(emu, GET, {"product_id": "p1"}).message.name == f"v{index}"


def test_replace_sends_only_the_fields_given(emu: Emulator) -> None:
    stub(emu, "bare", GET, respond={"message": {"name": "Widget"}, "replace": True})
    got = rpc(emu, GET, {"product_id": "p1"}).message
    assert got == type(got)(name="Widget")


@pytest.mark.parametrize("kind", KIND_IDS)
def test_headers_and_trailers_arrive(kind: str) -> None:
    method, requests, _ = KINDS[kind]
    with emulator() as emu:
        stub(
            emu,
            "h",
            method,
            respond={"headers": {"x-cache": "miss"}, "trailers": {"x-debug": "1"}},
        )
        out = rpc(emu, method, *requests("k"))
        assert out.code == OK and out.messages
        assert ("x-cache", "miss") in out.initial
        assert ("x-debug", "1") in out.trailing


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"}


@pytest.mark.parametrize("kind", KIND_IDS)
def test_an_error_status_with_details_and_trailers(kind: str) -> None:
    method, requests, _ = KINDS[kind]
    status = {"code": "RESOURCE_EXHAUSTED", "message": "slow down", "details": [RETRY_INFO]}
    with emulator() as emu:
        stub(emu, "busy", method, respond={"status": status, "trailers": {"x-debug": "1"}})
        out = rpc(emu, method, *requests("k"))
        assert (out.code, out.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        assert out.messages == []
        assert ("x-debug", "1") in out.trailing
        decoded = rpc_status.from_call(out.error)
        assert decoded is not None and decoded.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        info = error_details_pb2.RetryInfo()
        assert decoded.details[0].Unpack(info)
        assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500_000_000)
        record = emu.calls().last
        assert (record.code, record.details, record.answered_by) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
            "stub busy",
        )
        assert record.trailers.get("x-debug") == "1"


def test_a_bidi_error_stub_fails_before_the_client_stops_sending() -> None:
    """A bidi stub that only fails ends the call at once, as a client stream's does: the client
    need not half-close first."""
    with emulator() as emu:
        stub(emu, "down", CHAT, respond={"status": {"code": "UNAVAILABLE", "message": "down"}})
        release = threading.Event()

        spec = emu.server.contracts.methods[f"/{CHAT}"]

        def requests() -> Iterator[Message]:
            yield spec.input_class(text="hi")
            release.wait(10)  # the client never half-closes on its own

        call = _channel(emu).stream_stream(
            spec.path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=spec.output_class.FromString,
        )(requests(), timeout=5)
        try:
            with pytest.raises(grpc.RpcError) as caught:
                next(call)
        finally:
            release.set()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_server_stream_of_timed_messages_ending_in_an_error(emu: Emulator) -> None:
    stub(
        emu,
        "feed",
        LIST,
        respond={
            "stream": [
                {"message": {"name": "one"}},
                {"message": {"name": "two"}, "delay": "30ms"},
                {"message": {"name": "three"}, "delay": {"fixed": "20ms"}},
            ],
            "status": {"code": "ABORTED", "message": "feed cut"},
        },
    )
    out = rpc(emu, LIST, {"category_id": "c"})
    assert [m.name for m in out.messages] == ["one", "two", "three"]
    assert (out.code, out.details) == (grpc.StatusCode.ABORTED, "feed cut")
    record = emu.calls(LIST).last
    assert record.duration >= 0.05  # the two delays, one after the other
    assert record.response_count == 3 and record.code == grpc.StatusCode.ABORTED
    # Each message is the default stream's message of its index, with the stub's name on top.
    emu.reset()
    defaults = rpc(emu, LIST, {"category_id": "c"}).messages
    assert len(defaults) >= 3
    assert [m.sku for m in out.messages] == [m.sku for m in defaults[:3]]
    assert len({m.sku for m in out.messages}) == 3


def test_bidi_on_message_sends_several_replies_per_matching_message(emu: Emulator) -> None:
    stub(
        emu,
        "chat",
        CHAT,
        on_message=[
            {
                "match": {"text": {"regex": "^hi"}},
                "reply": [
                    {"message": {"text": "hello {{ request.text }}"}},
                    {"message": {"text": "how can I help?"}},
                ],
            },
            {"match": {"text": "bye"}, "reply": [{"message": {"text": "goodbye"}}]},
        ],
    )
    out = rpc(
        emu, CHAT, {"text": "hi there"}, {"text": "what?"}, {"text": "hi again"}, {"text": "bye"}
    )
    assert out.code == OK
    assert [m.text for m in out.messages] == [
        "hello hi there",
        "how can I help?",
        "hello hi again",
        "how can I help?",
        "goodbye",
    ]
    assert emu.calls().last.request_count == 4


def test_bidi_on_message_status_ends_the_call(emu: Emulator) -> None:
    stub(
        emu,
        "stop",
        CHAT,
        on_message=[
            {"match": {"text": "ping"}, "reply": [{"message": {"text": "pong"}}]},
            {"match": {"text": "stop"}, "status": {"code": "CANCELLED", "message": "stopped"}},
        ],
    )
    out = rpc(emu, CHAT, {"text": "ping"}, {"text": "stop"}, {"text": "ping"})
    assert [m.text for m in out.messages] == ["pong"]
    assert (out.code, out.details) == (grpc.StatusCode.CANCELLED, "stopped")


def test_bidi_respond_stream_is_sent_before_any_inbound_message() -> None:
    with emulator() as emu:
        stub(
            emu,
            "greeting",
            CHAT,
            respond={"stream": [{"message": {"text": "welcome"}}, {"message": {"text": "ask"}}]},
        )
        spec = emu.server.contracts.methods[f"/{CHAT}"]
        inbound: queue.Queue[Message | None] = queue.Queue()

        def requests() -> Iterator[Message]:
            while (item := inbound.get(timeout=10)) is not None:
                yield item

        call = _channel(emu).stream_stream(
            spec.path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=spec.output_class.FromString,
        )(requests(), timeout=10)
        try:
            first = [next(call).text, next(call).text]  # nothing sent yet
        finally:
            inbound.put(None)
        assert first == ["welcome", "ask"]
        assert list(call) == []  # no reply per inbound message: the stream was the answer
        assert call.code() == OK


def test_a_fixed_delay_shows_in_the_journal_duration(emu: Emulator) -> None:
    stub(emu, "slow", GET, respond={"message": {"name": "slow"}, "delay": {"fixed": "50ms"}})
    assert rpc(emu, GET, {"product_id": "p1"}).message.name == "slow"
    record = emu.calls().last
    assert record.answered_by == "stub slow"
    assert record.duration >= 0.05


# -- templates ---------------------------------------------------------------------------------


def test_templates_see_the_request_metadata_and_call_index(emu: Emulator) -> None:
    stub(
        emu,
        "order",
        CREATE,
        respond={
            "message": {
                "order_id": "{{ request.customer_id }}-{{ call.index }}",
                "customer": {"email": "{{ metadata['x-tenant'] }}@example.com"},
            },
            "headers": {"x-tenant-seen": "{{ metadata['x-tenant'] }}"},
        },
    )
    tenant = [("x-tenant", "acme")]
    outs = [rpc(emu, CREATE, {"customer_id": "c7"}, metadata=tenant) for _ in range(3)]
    assert [o.message.order_id for o in outs] == ["c7-1", "c7-2", "c7-3"]
    assert outs[0].message.customer.email == "acme@example.com"
    assert ("x-tenant-seen", "acme") in outs[0].initial
    assert outs[0].message.customer.first_name  # the default's, under the templated fields


def test_now_renders_the_frozen_emulator_clock(emu: Emulator) -> None:
    moment = datetime.datetime(2026, 12, 3, 9, 0, tzinfo=datetime.UTC)
    emu.clock.freeze(moment)
    stub(
        emu,
        "clock",
        CHAT,
        respond={"message": {"text": "at {{ now }}", "sent_at": "{{ now }}"}},
    )
    first = rpc(emu, CHAT, {"text": "a"}).messages[0]
    emu.clock.advance(90)
    later = rpc(emu, CHAT, {"text": "a"}).messages[0]
    assert first.text == "at 2026-12-03T09:00:00Z"
    assert first.sent_at.ToDatetime(tzinfo=datetime.UTC) == moment
    assert later.text == "at 2026-12-03T09:01:30Z"


def fake_email(seed: int) -> list[str]:
    with emulator(seed=seed) as emu:
        stub(emu, "fake", CREATE, respond={"message": {"customer": {"email": "{{ fake.email }}"}}})
        return [rpc(emu, CREATE, {"customer_id": "c"}).message.customer.email for _ in range(2)]


def test_fake_values_are_the_same_with_the_same_seed() -> None:
    first = fake_email(7)
    assert first == fake_email(7)
    assert all("@" in e for e in first)
    assert first[0] != first[1]  # seeded per call: the second call draws another
    assert fake_email(8) != first


def test_a_template_renders_into_an_int_field(emu: Emulator) -> None:
    stub(
        emu,
        "sum",
        UPLOAD,
        match={"message": "all"},  # read them all, so `requests` holds every message
        respond={
            "message": {
                "item_count": "{{ requests | length }}",
                "total_quantity": "{{ requests | sum(attribute='quantity') }}",
            }
        },
    )
    summary = rpc(emu, UPLOAD, *ITEMS).message
    assert (summary.item_count, summary.total_quantity) == (3, 8)


def test_a_template_failing_at_call_time_is_internal_and_fails_the_test_at_exit() -> None:
    """A stub that cannot render is a broken test fixture, as a behaviour returning the wrong
    type is: its caller gets INTERNAL naming the stub's key, the server keeps serving, and the
    `with` block's end raises BehaviorFailedError (unless raise_behavior_errors=False)."""
    with pytest.raises(BehaviorFailedError, match="nope"), emulator() as emu:
        stub(emu, "broken", GET, respond={"message": {"name": "{{ request.nope }}"}})
        out = rpc(emu, GET, {"product_id": "p1"})
        assert out.code == grpc.StatusCode.INTERNAL
        assert (
            "stub broken (emu.stubs.add() stubs[0]): respond.message.name: template" in out.details
        )
        assert "nope" in out.details
        assert rpc(emu, UPLOAD, *ITEMS).code == OK  # still serving
        assert emu.calls(GET).last.answered_by == "stub broken"
    with emulator(raise_behavior_errors=False) as quiet:
        stub(quiet, "broken", GET, respond={"message": {"name": "{{ request.nope }}"}})
        assert rpc(quiet, GET, {"product_id": "p1"}).code == grpc.StatusCode.INTERNAL
        assert rpc(quiet, GET, {"product_id": "p1"}).code == grpc.StatusCode.INTERNAL
    assert len(quiet.behavior_errors) == 2


def test_a_template_rendering_a_value_its_field_does_not_take(emu: Emulator) -> None:
    stub(emu, "bad-int", UPLOAD, respond={"message": {"item_count": "{{ 'many' }}"}})
    out = rpc(emu, UPLOAD, *ITEMS)
    assert out.code == grpc.StatusCode.INTERNAL
    assert "item_count" in out.details and "'many'" in out.details
    with pytest.raises(BehaviorFailedError):
        emu.check_behavior_errors()


# -- the journal -------------------------------------------------------------------------------


class ShopCatalog(Behavior):
    service = CATALOG

    def GetProduct(self, request: Any, ctx: Any) -> dict[str, Any]:
        return {"name": "from the behaviour"}


class ShopOrders(Behavior):
    service = ORDERS

    async def UploadLineItems(self, requests: Any, ctx: Any) -> dict[str, Any]:
        seen = [item.product_id async for item in requests]
        return {"item_count": len(seen), "total": {"currency_code": "-".join(seen)}}

    async def Chat(self, requests: Any, ctx: Any) -> Any:
        async for message in requests:
            yield {"text": f"echo {message.text}"}


def test_the_journal_names_who_answered_each_call() -> None:
    with emulator(behaviors=[ShopCatalog]) as emu:
        stub(emu, "p1", GET, match={"request": {"product_id": "p1"}})
        rpc(emu, GET, {"product_id": "p1"})
        rpc(emu, GET, {"product_id": "p2"})  # to the behaviour
        rpc(emu, CREATE, {"customer_id": "c"})  # no stub, no behaviour
        with emu.override(GET, lambda request, ctx: {"name": "overridden"}):
            rpc(emu, GET, {"product_id": "p1"})
        by = answered_by(emu)
        assert by[0] == "stub p1"
        assert by[1].startswith("behaviour ShopCatalog.GetProduct at ")
        assert by[1].endswith(
            f"{Path(__file__).name}:{ShopCatalog.GetProduct.__code__.co_firstlineno}"
        )
        assert by[2] == "default"
        assert by[3].startswith("override ") and "GetProduct" in by[3]


def test_near_misses_name_the_closest_stubs_and_why() -> None:
    with emulator() as emu:
        stub(emu, "p1", GET, match={"request": {"product_id": "p1"}})
        stub(
            emu,
            "p1-acme",
            GET,
            match={"request": {"product_id": "p1"}, "metadata": {"x-tenant": "acme"}},
        )
        stub(emu, "q", GET, match={"request": {"product_id": {"regex": "^q"}}})
        stub(
            emu, "far", GET, match={"request": {"product_id": {"len": 9}}, "metadata": {"x-b": "1"}}
        )
        stub(emu, "other-method", CREATE)
        rpc(emu, GET, {"product_id": "p2"}, metadata=[("x-tenant", "globex")])
        rpc(emu, GET, {"product_id": "p1"})  # matched
        rpc(emu, LIST, {"category_id": "c"})  # a method without stubs: not unmatched
        (record,) = emu.unmatched()
        assert record.answered_by == "default" and record.request.product_id == "p2"
        # The closest three of four: fewest failed conditions, then the order stubs are tried.
        assert [(m.stub, m.reasons) for m in record.near_misses] == [
            ("p1", ("product_id: expected 'p1', got 'p2'",)),
            ("q", ("product_id: expected a match for '^q', got 'p2'",)),
            (
                "p1-acme",
                (
                    "header x-tenant: expected 'acme', got 'globex'",
                    "product_id: expected 'p1', got 'p2'",
                ),
            ),
        ]
        assert str(record.near_misses[0]).startswith(record.near_misses[0].stub + ": ")
        assert emu.unmatched(CREATE).count == 0
        assert emu.unmatched(GET).count == 1


def test_stats_and_unused() -> None:
    with emulator() as emu:
        stub(emu, "used", GET, match={"request": {"product_id": "p1"}})
        stub(emu, "never", GET, match={"request": {"product_id": "zzz"}})
        stub(emu, "chat", CHAT)
        rpc(emu, GET, {"product_id": "p1"})
        rpc(emu, GET, {"product_id": "p1"})
        rpc(emu, CHAT, {"text": "x"})
        stats = emu.stubs.stats()
        assert [(s["name"], s["methods"], s["answered"]) for s in stats] == [
            ("used", [GET], 2),
            ("never", [GET], 0),
            ("chat", [CHAT], 1),
        ]
        assert all(s["source"] for s in stats)
        assert emu.stubs.unused() == ["never"]
        emu.stubs.reset()  # run-time stubs go
        assert emu.stubs.stats() == []


def test_file_stubs_stay_at_reset_with_their_counts_restarted(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"name": "f", "method": GET, "times": 1}]))
    with emulator(stubs=[str(path)]) as emu:
        rpc(emu, GET, {"product_id": "p1"})
        rpc(emu, GET, {"product_id": "p1"})
        assert answered_by(emu) == ["stub f", "default"]
        emu.reset()
        assert emu.stubs.unused() == ["f"]
        rpc(emu, GET, {"product_id": "p1"})
        assert answered_by(emu) == ["stub f"]


# -- precedence --------------------------------------------------------------------------------


def test_an_override_beats_a_stub_which_beats_a_behaviour() -> None:
    with emulator(behaviors=[ShopCatalog]) as emu:
        handle = stub(emu, "p1", GET, respond={"message": {"name": "from the stub"}})
        with emu.override(GET, lambda request, ctx: {"name": "overridden"}):
            assert rpc(emu, GET, {"product_id": "p1"}).message.name == "overridden"
        assert handle.answered == 0
        assert rpc(emu, GET, {"product_id": "p1"}).message.name == "from the stub"
        handle.undo()
        assert rpc(emu, GET, {"product_id": "p1"}).message.name == "from the behaviour"
        assert handle.answered == 1


@pytest.mark.parametrize("mode", ["first", "any", "index 1"])
def test_an_unmatched_client_stream_reaches_the_behaviour_with_every_message(mode: str) -> None:
    with emulator(behaviors=[ShopOrders]) as emu:
        stub(
            emu,
            "never",
            UPLOAD,
            match={"request": {"product_id": "zzz"}, "message": mode},
            respond={"message": {"item_count": 99}},
        )
        summary = rpc(emu, UPLOAD, *ITEMS).message
        assert (summary.item_count, summary.total.currency_code) == (3, "a-b-c")
        record = emu.calls().last
        assert record.answered_by.startswith("behaviour ShopOrders.UploadLineItems")
        assert record.request_count == 3  # counted once, though read twice
        assert record.near_misses[0].stub == "never"


@pytest.mark.parametrize("mode", ["first", "all", "index 1"])
def test_an_unmatched_bidi_stream_reaches_the_behaviour_with_every_message(mode: str) -> None:
    with emulator(behaviors=[ShopOrders]) as emu:
        stub(emu, "never", CHAT, match={"request": {"text": "zzz"}, "message": mode})
        out = rpc(emu, CHAT, {"text": "a"}, {"text": "b"}, {"text": "c"})
        assert [m.text for m in out.messages] == ["echo a", "echo b", "echo c"]
        assert emu.calls().last.answered_by.startswith("behaviour ShopOrders.Chat")
        assert emu.calls().last.request_count == 3


# -- security and faults run first ------------------------------------------------------------


@pytest.mark.parametrize("kind", KIND_IDS)
def test_security_refuses_before_a_stub_answers(kind: str) -> None:
    method, requests, _ = KINDS[kind]
    with emulator(auth={"tokens": {TOKEN: {"principal": "ci"}}}) as emu:
        handle = stub(emu, "open", method)
        out = rpc(emu, method, *requests("k"))
        assert out.code == grpc.StatusCode.UNAUTHENTICATED
        assert out.messages == []
        assert handle.answered == 0
        assert wait_until(lambda: emu.calls().last).answered_by != "stub open"
        authorised = rpc(
            emu, method, *requests("k"), metadata=[("authorization", f"Bearer {TOKEN}")]
        )
        assert authorised.code == OK
        assert handle.answered == 1


@pytest.mark.parametrize("kind", KIND_IDS)
def test_a_fault_on_the_method_wins_over_the_stub(kind: str) -> None:
    method, requests, _ = KINDS[kind]
    with emulator() as emu:
        handle = stub(emu, "s", method)
        with emu.fault(name="outage", match={"method": method}, abort={"code": "UNAVAILABLE"}):
            out = rpc(emu, method, *requests("k"))
        assert out.code == grpc.StatusCode.UNAVAILABLE
        record = wait_until(lambda: emu.calls().last)
        assert record.faults == ("outage",)
        assert handle.answered == 0
        assert rpc(emu, method, *requests("k")).code == OK
        assert handle.answered == 1


# -- a retrying client sees the sequence -------------------------------------------------------

RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": ORDERS, "method": "CreateOrder"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def test_a_retry_policy_client_sees_exactly_the_sequence() -> None:
    with emulator() as emu:
        stub(
            emu,
            "flaky-create",
            CREATE,
            sequence=[
                {
                    "status": {"code": "UNAVAILABLE", "message": "try again"},
                    "trailers": {"grpc-retry-pushback-ms": "1"},
                },
                {"status": {"code": "UNAVAILABLE"}},
                {"message": {"order_id": "{{ request.customer_id }}-{{ call.index }}"}},
            ],
        )
        options = [("grpc.service_config", RETRY_CONFIG), ("grpc.enable_retries", 1)]
        with grpc.insecure_channel(emu.target, options=options) as channel:
            out = rpc(emu, CREATE, {"customer_id": "c9"}, channel=channel)
        assert out.message.order_id == "c9-3"
        records = emu.calls(CREATE)
        assert [r.code for r in records] == [grpc.StatusCode.UNAVAILABLE] * 2 + [OK]
        assert [r.details for r in records][:1] == ["try again"]
        assert records.first.trailers.get("grpc-retry-pushback-ms") == "1"
        assert answered_by(emu) == ["stub flaky-create"] * 3

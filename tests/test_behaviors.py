"""Behaviours: all four RPC kinds, sync and async, return values, aborts, errors and `ctx`."""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emulator import Behavior, Emulator, RpcAbort
from tests.conftest import BEHAVIORS, PROTOS

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"


class SyncCatalog(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        return {"productId": request.product_id, "name": "sync"}  # JSON names

    def ListProducts(self, request, ctx):
        for i in range(2):
            yield {"product_id": f"s{i}"}  # proto names

    def GetCategoryTree(self, request, ctx):
        return None  # the default


class SyncOrders(Behavior):
    service = ORDERS

    def UploadLineItems(self, requests, ctx):
        return {"item_count": sum(1 for _ in requests)}

    def Chat(self, requests, ctx):
        for message in requests:
            yield {"text": message.text[::-1]}

    def Ping(self, request, ctx):
        return empty_pb2.Empty()  # a message from another (generated) module

    def helper(self) -> str:  # lower-case helpers are allowed
        return "not an rpc"


class AsyncOrders(Behavior):
    service = ORDERS

    async def UploadLineItems(self, requests, ctx):
        return {"total_quantity": sum([r.quantity async for r in requests])}

    async def Chat(self, requests, ctx):
        async for message in requests:
            yield {"text": message.text.upper()}

    async def WatchOrder(self, request, ctx):
        await asyncio.sleep(0)
        return [{"order_id": request.order_id, "note": str(i)} for i in range(4)]


@pytest.fixture(scope="module")
def sync_emu():
    with Emulator(protos=PROTOS, behaviors=[SyncCatalog, SyncOrders]) as emu:
        yield emu


def test_sync_behaviours_cover_all_four_kinds(sync_emu: Emulator) -> None:
    catalog, orders = sync_emu.stub(CATALOG), sync_emu.stub(ORDERS)
    assert catalog.GetProduct({"product_id": "p7"}).name == "sync"
    assert [p.product_id for p in catalog.ListProducts({})] == ["s0", "s1"]
    assert orders.UploadLineItems([{}, {}, {}]).item_count == 3
    assert [m.text for m in orders.Chat([{"text": "abc"}, {"text": "xy"}])] == ["cba", "yx"]
    assert orders.Ping({}).ByteSize() == 0


def test_none_gives_the_default_and_unshaped_methods_answer(sync_emu: Emulator) -> None:
    tree = sync_emu.stub(CATALOG).GetCategoryTree({"root_category_id": "c"})
    assert tree.category_id and tree.children
    order = sync_emu.stub(ORDERS).CreateOrder({"customer_id": "c1"})  # no behaviour at all
    assert order.order_id and order.customer.email


def test_async_behaviours_cover_streams() -> None:
    with Emulator(protos=PROTOS, behaviors=AsyncOrders) as emu:
        orders = emu.stub(ORDERS)
        assert orders.UploadLineItems([{"quantity": 2}, {"quantity": 5}]).total_quantity == 7
        assert [m.text for m in orders.Chat([{"text": "hi"}, {"text": "yo"}])] == ["HI", "YO"]
        notes = [e.note for e in orders.WatchOrder({"order_id": "o1"})]
        assert notes == ["0", "1", "2", "3"]


def test_example_behaviours_from_a_folder() -> None:
    with Emulator(protos=PROTOS, behaviors=BEHAVIORS) as emu:
        catalog = emu.stub(CATALOG)
        assert catalog.GetProduct({"product_id": "p1"}).product_id == "p1"
        with pytest.raises(grpc.RpcError) as err:
            catalog.GetProduct({"product_id": "missing-1"})
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        orders = emu.stub(ORDERS)
        first = orders.CreateOrder({"line_items": [{"quantity": 1}], "idempotency_key": "k"})
        again = orders.CreateOrder({"line_items": [{"quantity": 9}], "idempotency_key": "k"})
        assert first == again  # state shared across calls


class Aborting(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        raise RpcAbort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "product_id is required",
            details=[
                error_details_pb2.BadRequest(
                    field_violations=[{"field": "product_id", "description": "empty"}]
                )
            ],
            trailers={"x-request-id": "r-1"},
        )

    async def ListProducts(self, request, ctx):
        yield {"product_id": "first"}
        raise RpcAbort(grpc.StatusCode.UNAVAILABLE, "cut short")

    def UpdateProduct(self, request, ctx):
        raise ZeroDivisionError("the behaviour has a bug")

    def GetCategoryTree(self, request, ctx):
        return {"no_such_field": 1}


def test_rpc_abort_carries_rich_details_and_trailers() -> None:
    with Emulator(protos=PROTOS, behaviors=Aborting) as emu:
        call = emu.stub(CATALOG).GetProduct
        with pytest.raises(grpc.RpcError) as err:
            call({})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "product_id is required"
        status = rpc_status.from_call(err.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert bad.field_violations[0].field == "product_id"
        assert ("x-request-id", "r-1") in err.value.trailing_metadata()

        received = []
        with pytest.raises(grpc.RpcError) as err:
            received.extend(p.product_id for p in emu.stub(CATALOG).ListProducts({}))
        assert received == ["first"]
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_exceptions_become_unknown_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # This test means the behaviours to fail: raise_behavior_errors=False keeps the `with`
    # block's end from failing it (tests/test_behavior_errors.py covers that).
    with Emulator(protos=PROTOS, behaviors=Aborting, raise_behavior_errors=False) as emu:
        with caplog.at_level(logging.ERROR, logger="emulator"), pytest.raises(grpc.RpcError) as err:
            emu.stub(CATALOG).UpdateProduct({})
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert "ZeroDivisionError: the behaviour has a bug" in err.value.details()
        assert any(r.exc_info and "UpdateProduct" in r.getMessage() for r in caplog.records)

        with pytest.raises(grpc.RpcError) as err:
            emu.stub(CATALOG).GetCategoryTree({})
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "no_such_field" in err.value.details()
        assert "Aborting.GetCategoryTree" in err.value.details()

        # Still serving.
        assert emu.stub(ORDERS).CreateOrder({}).order_id


class Inspecting(Behavior):
    service = CATALOG
    seen: dict[str, object] = {}  # noqa: RUF012 - the test reads what the behaviour saw

    def GetProduct(self, request, ctx):
        Inspecting.seen.update(
            tenant=ctx.metadata.get("x-tenant"),
            peer=ctx.peer,
            remaining=ctx.time_remaining(),
            deadline=ctx.deadline,
            draw=ctx.rng.random(),
            now=ctx.now(),
            thread=threading.current_thread().name,
        )
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        ctx.set_initial_metadata({"x-served-by": "emulator"})
        ctx.set_trailing_metadata([("x-count", str(ctx.state["count"]))])
        product = ctx.default_response()
        product.name = "from default"
        return product


def test_ctx_offers_metadata_deadline_rng_clock_state_and_default() -> None:
    with Emulator(protos=PROTOS, behaviors=Inspecting, seed=3) as emu:
        channel = emu.channel()
        cls = emu.server.contracts.message_class_by_name
        method = channel.unary_unary(
            f"/{CATALOG}/GetProduct",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=cls("acme.shop.v1.Product").FromString,
        )
        reply, rpc = method.with_call(
            cls("acme.shop.v1.GetProductRequest")(product_id="p"),
            metadata=[("x-tenant", "acme")],
            timeout=30,
        )
        seen = Inspecting.seen
        assert reply.name == "from default" and reply.product_id  # started from the default
        assert seen["tenant"] == "acme"
        assert "127.0.0.1" in str(seen["peer"])
        assert 0 < float(seen["remaining"]) <= 31  # type: ignore[arg-type]  # clocks differ a little
        assert seen["deadline"] is not None
        assert abs(seen["now"] - datetime.datetime.now(datetime.UTC)).total_seconds() < 60  # type: ignore[operator]
        assert str(seen["thread"]).startswith("emulator-behavior")  # sync code off the loop
        assert ("x-served-by", "emulator") in rpc.initial_metadata()
        assert ("x-count", "1") in rpc.trailing_metadata()
        first_draw = seen["draw"]
    # The per-call rng replays with the seed.
    with Emulator(protos=PROTOS, behaviors=Inspecting, seed=3) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p"})
        assert Inspecting.seen["draw"] == first_draw


class JsonForms(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        # JSON names, nested messages, and values only JSON has: the slow path must take over.
        return {
            "productId": request.product_id,
            "createdAt": "2025-01-02T03:04:05Z",
            "price": {"currencyCode": "EUR", "units": "12"},
            "availability": "IN_STOCK",
            "tags": ["a", "b"],
            "attributes": {"colour": "red"},
            "dimensions": {"widthCm": 1.5},
        }

    def UpdateProduct(self, request, ctx):
        return {"product_id": "fast", "price": {"currency_code": "USD", "units": 3}}


def test_dicts_with_json_names_nesting_and_json_values() -> None:
    with Emulator(protos=PROTOS, behaviors=JsonForms) as emu:
        product = emu.stub(CATALOG).GetProduct({"product_id": "p9"})
        assert product.product_id == "p9"
        assert product.created_at.seconds == 1735787045
        assert (product.price.currency_code, product.price.units) == ("EUR", 12)
        assert product.availability == 1
        assert list(product.tags) == ["a", "b"] and dict(product.attributes) == {"colour": "red"}
        assert product.dimensions.width_cm == 1.5
        fast = emu.stub(CATALOG).UpdateProduct({})
        assert (fast.product_id, fast.price.currency_code, fast.price.units) == ("fast", "USD", 3)


def test_dicts_convert_the_same_once_their_keys_are_known() -> None:
    # Names are looked up once per message type and key (behavior/convert.py): the second
    # conversion of each shape must give what the first did, and a bad key still fails clearly.
    from emulator.behavior.convert import from_dict
    from emulator.contracts import load_contracts

    contracts = load_contracts([PROTOS])
    pool = contracts.pool
    order = contracts.methods["/acme.shop.v1.Orders/CreateOrder"].output_class
    product = contracts.methods["/acme.shop.v1.Catalog/GetProduct"].output_class
    shapes = [
        (order, {"orderId": "o-1", "lineItems": [{"productId": "p", "quantity": 2}]}),
        (order, {"order_id": "o-2", "line_items": [{"product_id": "q", "unitPrice": {}}]}),
        (order, {"quantitiesBySku": {"a": 1}, "customer": {}, "card": {}}),
        (product, {"productId": "p-1", "attributes": {"k": "v"}, "tags": ["x"]}),
        (product, {"name": "n", "dimensions": {"widthCm": 1.5}, "stock_count": 3}),
    ]
    first = [from_dict(value, cls, pool) for cls, value in shapes]
    again = [from_dict(value, cls, pool) for cls, value in shapes]
    assert first == again
    assert first[0].line_items[0].product_id == "p" and first[1].order_id == "o-2"
    assert dict(first[2].quantities_by_sku) == {"a": 1} and first[2].HasField("card")
    assert first[4].dimensions.width_cm == 1.5 and first[4].stock_count == 3
    for _ in range(2):
        with pytest.raises(ValueError, match="nope"):
            from_dict({"productId": "p", "nope": 1}, product, pool)

"""The in-process API: `with` / `async with Emulator(...)`, stubs and channels, overrides, the
clock, reset, the journal, `calls()` and `assert_called`, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import datetime
import gc
import inspect
import socket
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from emulator import Behavior, BehaviorError, Emulator, EmulatorError, RpcAbort
from emulator.client import DynamicStub
from emulator.journal import REDACTED, CallList
from tests.conftest import BEHAVIORS, PROTOS, reset_around

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
GET_PRODUCT = f"{CATALOG}/GetProduct"
LIST_PRODUCTS = f"{CATALOG}/ListProducts"
UPDATE_PRODUCT = f"{CATALOG}/UpdateProduct"
CREATE_ORDER = f"{ORDERS}/CreateOrder"
UPLOAD = f"{ORDERS}/UploadLineItems"
CHAT = f"{ORDERS}/Chat"

UTC = datetime.UTC
FROZEN_AT = datetime.datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
SECRETS = ("Bearer s3cr3t-token", "hunter2-value")


class Shop(Behavior):
    """GetProduct only: every other method answers with its default response."""

    service = CATALOG

    def GetProduct(self, request, ctx):
        if request.product_id.startswith("missing"):
            raise RpcAbort(
                grpc.StatusCode.NOT_FOUND,
                f"no product {request.product_id}",
                trailers={"x-reason": "gone"},
            )
        ctx.state["hits"] = ctx.state.get("hits", 0) + 1
        product = ctx.default_response()
        product.product_id = request.product_id
        product.name = "baseline"
        product.updated_at.FromDatetime(ctx.now())  # the emulator clock, as the behaviour sees it
        product.stock_count = ctx.state["hits"]
        product.rating.value = ctx.rng.random()
        ctx.set_trailing_metadata({"x-hits": str(ctx.state["hits"])})
        return product


@pytest.fixture(scope="module")
def shared() -> Iterator[Emulator]:
    with Emulator(
        protos=PROTOS, behaviors=[Shop], seed=7, journal={"redact_headers": ["X-Secret"]}
    ) as emu:
        yield emu


@pytest.fixture
def emu(shared: Emulator) -> Iterator[Emulator]:
    """The module's emulator, reset before and after each test."""
    yield from reset_around(shared)


# -- helpers -----------------------------------------------------------------------------------


def _eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def _eventually_async(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _new_threads(baseline: set[threading.Thread]) -> list[str]:
    # grpc.aio's poller thread stops once its last channel or server is collected.
    gc.collect()
    return sorted(t.name for t in threading.enumerate() if t not in baseline)


def _port_is_free(port: int) -> bool:
    """Nothing listens on the port: a connect is refused and a new socket can bind it."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        pass
    else:
        return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2):
        return True


def _product_name(emu: Emulator, product_id: str = "p1") -> str:
    return str(emu.stub(CATALOG).GetProduct({"product_id": product_id}).name)


def _timestamps(message: Any) -> list[datetime.datetime]:
    return [
        getattr(message, name).ToDatetime(UTC)
        for name in ("created_at", "updated_at")
        if message.HasField(name)
    ]


# -- lifecycle: with, async with, behaviour sources ----------------------------------------------


def test_with_serves_on_localhost_and_leaves_no_thread_task_or_port() -> None:
    baseline = set(threading.enumerate())
    with Emulator(protos=PROTOS, behaviors=[Shop]) as emu:
        port = emu.server.port
        assert port
        assert emu.target == f"127.0.0.1:{port}"
        assert _listening(emu.target)
        catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
        assert catalog.GetProduct({"product_id": "p1"}).name == "baseline"
        assert len(list(catalog.ListProducts({}))) == 3
        assert orders.UploadLineItems([{"quantity": 1}, {"quantity": 2}]).item_count >= 0
        assert len(list(orders.Chat([{"text": "a"}, {"text": "b"}]))) == 2
        names = _new_threads(baseline)
        assert "emulator-loop" in names
        assert any(n.startswith("emulator-behavior") for n in names)  # sync GetProduct ran there
        loop = emu._loop  # the emulator's own loop, on its thread
        assert loop is not None

    assert _eventually(lambda: not _new_threads(baseline)), _new_threads(baseline)
    assert loop.is_closed()
    assert not [t for t in asyncio.all_tasks(loop) if not t.done()]
    assert _eventually(lambda: _port_is_free(port))


async def test_async_with_serves_on_the_test_loop_and_leaves_nothing() -> None:
    baseline = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    async with Emulator(protos=PROTOS, behaviors=[Shop]) as emu:
        port = emu.server.port
        assert emu.target == f"127.0.0.1:{port}"
        assert "emulator-loop" not in _new_threads(baseline)  # the test's own loop serves
        catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)

        unary = catalog.GetProduct({"product_id": "p1"})
        assert inspect.isawaitable(unary)
        assert (await unary).name == "baseline"
        listed = catalog.ListProducts({"category_id": "c1"})
        assert hasattr(listed, "__aiter__")
        assert len([p async for p in listed]) == 3
        summary = await orders.UploadLineItems([{"quantity": 1}, {"quantity": 2}])
        assert summary.ByteSize() > 0
        replies = [m async for m in orders.Chat([{"text": "a"}, {"text": "b"}, {"text": "c"}])]
        assert len(replies) == 3

        async def lines() -> Any:  # an async request stream works too
            for quantity in (1, 2, 3):
                yield {"quantity": quantity}

        await orders.UploadLineItems(lines())
        assert [r.quantity for r in emu.calls(UPLOAD).last.requests] == [1, 2, 3]

        channel = emu.aio_channel()  # closed for us at exit
        get = channel.unary_unary(
            f"/{GET_PRODUCT}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=emu.server.contracts.message_class_by_name(
                "acme.shop.v1.Product"
            ).FromString,
        )
        request_class = emu.server.contracts.message_class_by_name("acme.shop.v1.GetProductRequest")
        assert (await get(request_class(product_id="raw"))).product_id == "raw"
        async with emu.aio_channel() as own:  # closing one yourself is fine too
            assert await own.unary_unary(f"/{ORDERS}/Ping")(b"") == b""

        # Overrides work the same on the test's loop; async generators included.
        async def pages(request, ctx):
            await asyncio.sleep(0)
            yield {"product_id": "async-gen"}

        with emu.override(LIST_PRODUCTS, pages):
            assert [p.product_id async for p in catalog.ListProducts({})] == ["async-gen"]
        assert emu.calls().count == 8

    assert channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    assert not (asyncio.all_tasks() - tasks_before - {asyncio.current_task()})
    del catalog, orders, unary, listed, channel, get, own  # they hold their (closed) channels
    assert await _eventually_async(lambda: not _new_threads(baseline)), _new_threads(baseline)
    assert _port_is_free(port)


class EchoChat(Behavior):
    service = ORDERS

    def Chat(self, requests, ctx):  # sync: runs in the thread pool, reading the stream
        for message in requests:
            yield {"text": message.text}


def test_exit_cancels_calls_in_flight_and_cleans_up_after_an_error() -> None:
    baseline = set(threading.enumerate())
    release = threading.Event()

    def requests() -> Iterator[dict[str, str]]:
        yield {"text": "first"}
        release.wait(timeout=10)

    with (
        pytest.raises(RuntimeError, match="the test failed"),
        Emulator(protos=PROTOS, behaviors=[EchoChat]) as emu,
    ):
        port = emu.server.port
        replies = emu.stub(ORDERS).Chat(requests())
        assert next(replies).text == "first"
        raise RuntimeError("the test failed")
    release.set()  # lets grpc's request thread (the client's) finish
    with pytest.raises(grpc.RpcError) as err:
        list(replies)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    # Recorded; its code is not checked: grpc.aio can end a cancelled call's request stream
    # as if the client had finished it, and the handler then ends the call OK.
    assert emu.calls().last.request.text == "first"
    assert _eventually(lambda: not _new_threads(baseline)), _new_threads(baseline)
    assert _eventually(lambda: _port_is_free(port))


async def test_async_exit_cancels_calls_in_flight_and_cleans_up_after_an_error() -> None:
    baseline = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    release = asyncio.Event()

    async def requests() -> Any:
        yield {"text": "first"}
        await release.wait()

    with pytest.raises(RuntimeError, match="the test failed"):
        async with Emulator(protos=PROTOS, behaviors=[EchoChat]) as emu:
            port = emu.server.port
            call = emu.stub(ORDERS).Chat(requests())
            assert (await call.read()).text == "first"
            raise RuntimeError("the test failed")
    release.set()
    assert call.done()
    assert await call.code() == grpc.StatusCode.CANCELLED
    assert emu.calls(CHAT).last.request.text == "first"
    assert not (asyncio.all_tasks() - tasks_before - {asyncio.current_task()})
    del call
    assert await _eventually_async(lambda: not _new_threads(baseline)), _new_threads(baseline)
    assert _port_is_free(port)


class FromClass(Behavior):
    service = CATALOG

    def ListProducts(self, request, ctx):
        yield {"product_id": "from-class"}


class FromInstance(Behavior):
    service = CATALOG

    def __init__(self, tag: str = "unset") -> None:
        self.tag = tag

    async def ListProducts(self, request, ctx):
        yield {"product_id": self.tag}


def _module() -> types.ModuleType:
    module = types.ModuleType("inline_catalog_behaviours")
    source = (
        "from emulator import Behavior\n"
        "class FromModule(Behavior):\n"
        "    service = 'acme.shop.v1.Catalog'\n"
        "    def ListProducts(self, request, ctx):\n"
        "        yield {'product_id': 'from-module'}\n"
    )
    exec(compile(source, "<inline module>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(
    ("source", "first_id"),
    [
        pytest.param(lambda: BEHAVIORS, "all-1", id="folder"),
        pytest.param(lambda: str(BEHAVIORS / "catalog.py"), "all-1", id="file"),
        pytest.param(_module, "from-module", id="module"),
        pytest.param(lambda: FromClass, "from-class", id="class"),
        pytest.param(lambda: FromInstance("from-instance"), "from-instance", id="instance"),
        pytest.param(lambda: [FromClass], "from-class", id="list"),
    ],
)
def test_behaviours_from_a_path_module_class_or_instance(
    source: Callable[[], Any], first_id: str
) -> None:
    with Emulator(protos=PROTOS, behaviors=source()) as emu:
        assert next(iter(emu.stub(CATALOG).ListProducts({}))).product_id == first_id


def test_an_emulator_starts_once() -> None:
    emu = Emulator(protos=PROTOS)
    with pytest.raises(EmulatorError, match="not running yet"):
        _ = emu.target
    with emu:
        with pytest.raises(EmulatorError, match="starts once"), emu:
            pass
        assert emu.stub(ORDERS).CreateOrder({}).order_id  # still serving
    with pytest.raises(EmulatorError, match="starts once"), emu:
        pass


async def test_an_emulator_starts_once_async() -> None:
    emu = Emulator(protos=PROTOS)
    async with emu:
        with pytest.raises(EmulatorError, match="starts once"):
            async with emu:
                pass
    with pytest.raises(EmulatorError, match="starts once"):
        async with emu:
            pass
    with pytest.raises(EmulatorError, match="starts once"), emu:
        pass


def test_use_after_exit_is_a_clear_error_but_the_journal_stays_readable() -> None:
    with Emulator(protos=PROTOS, behaviors=[Shop]) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        channel = emu.channel()
    for use in (
        lambda: emu.target,
        emu.channel,
        emu.aio_channel,
        lambda: emu.stub(CATALOG),
        lambda: emu.override(GET_PRODUCT, lambda request, ctx: None),
        lambda: emu.override(FromClass),
    ):
        with pytest.raises(EmulatorError, match=r"the emulator has stopped: use it inside `with"):
            use()
    with pytest.raises(ValueError, match="closed channel"):  # channel() is closed at exit
        channel.unary_unary(f"/{GET_PRODUCT}")(b"")
    assert emu.calls(GET_PRODUCT).count == 1
    assert emu.calls().last.request.product_id == "p1"
    emu.assert_called(GET_PRODUCT, times=1, request={"product_id": "p1"})


# -- target, channels and stubs --------------------------------------------------------------


def test_target_and_channel_serve_plain_grpc_clients(emu: Emulator) -> None:
    contracts = emu.server.contracts
    product_class = contracts.message_class_by_name("acme.shop.v1.Product")
    request_class = contracts.message_class_by_name("acme.shop.v1.GetProductRequest")
    with grpc.insecure_channel(emu.target) as own:
        get = own.unary_unary(
            f"/{GET_PRODUCT}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=product_class.FromString,
        )
        assert get(request_class(product_id="by-target")).product_id == "by-target"
    listing = emu.channel().unary_stream(
        f"/{LIST_PRODUCTS}", response_deserializer=product_class.FromString
    )
    assert len(list(listing(b""))) == 3  # raw bytes in: an empty ListProductsRequest


def test_stub_covers_all_four_kinds_with_dicts_or_messages(emu: Emulator) -> None:
    catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
    request_class = emu.server.contracts.message_class_by_name("acme.shop.v1.GetProductRequest")
    assert catalog.GetProduct({"product_id": "p1"}).product_id == "p1"
    assert catalog.GetProduct({"productId": "p2"}).product_id == "p2"  # JSON names
    assert catalog.GetProduct(request_class(product_id="p3")).product_id == "p3"  # a message
    assert catalog.GetProduct().product_id == ""  # no request: an empty one
    products = catalog.ListProducts({"category_id": "c", "page": {"page_size": 2}})
    assert len(list(products)) == 3
    assert orders.UploadLineItems(iter([{"quantity": 1}] * 4)).ByteSize() > 0  # any iterable
    replies = list(orders.Chat({"text": t} for t in "abcd"))
    assert len(replies) == 4 and all(r.ByteSize() for r in replies)
    assert dir(catalog) == ["GetCategoryTree", "GetProduct", "ListProducts", "UpdateProduct"]
    assert [r.method for r in emu.calls()] == [
        GET_PRODUCT,
        GET_PRODUCT,
        GET_PRODUCT,
        GET_PRODUCT,
        LIST_PRODUCTS,
        UPLOAD,
        CHAT,
    ]


async def test_aio_channel_of_a_sync_emulator_from_an_async_test(emu: Emulator) -> None:
    contracts = emu.server.contracts
    async with emu.aio_channel() as channel:
        catalog = DynamicStub(channel, contracts.services[CATALOG], contracts)
        orders = DynamicStub(channel, contracts.services[ORDERS], contracts)
        assert (await catalog.GetProduct({"product_id": "aio"})).name == "baseline"
        assert len([p async for p in catalog.ListProducts({})]) == 3
        assert (await orders.UploadLineItems([{"quantity": 5}])).ByteSize() > 0
        assert len([m async for m in orders.Chat([{"text": "x"}])]) == 1
    emu.assert_called(GET_PRODUCT, times=1, request={"product_id": "aio"})
    assert emu.calls().count == 4


# -- overrides ---------------------------------------------------------------------------------


def test_override_with_sync_async_and_generator_functions(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)

    def sync_answer(request, ctx):
        return {"product_id": request.product_id, "name": "sync override"}

    async def async_answer(request, ctx):
        await asyncio.sleep(0)
        return {"name": "async override"}

    def pages(request, ctx):
        for index in range(2):
            yield {"product_id": f"{request.category_id}-{index}"}

    with emu.override(GET_PRODUCT, sync_answer) as override:
        assert override.methods == ("acme.shop.v1.Catalog/GetProduct",)
        reply = catalog.GetProduct({"product_id": "p1"})
        assert (reply.product_id, reply.name) == ("p1", "sync override")
    with emu.override(GET_PRODUCT, async_answer):
        assert _product_name(emu) == "async override"
    with emu.override(LIST_PRODUCTS, pages):
        assert [p.product_id for p in catalog.ListProducts({"category_id": "c"})] == ["c-0", "c-1"]
    with emu.override(GET_PRODUCT, lambda request, ctx: None):  # None: the default response
        default = catalog.GetProduct({"product_id": "p1"})
        assert default.name != "baseline" and default.product_id


class Outage(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        raise RpcAbort(grpc.StatusCode.UNAVAILABLE, "catalog is down")

    def ListProducts(self, request, ctx):
        raise RpcAbort(grpc.StatusCode.UNAVAILABLE, "catalog is down")
        yield  # pragma: no cover - a generator, as the method streams


class Priced(Behavior):
    service = CATALOG

    def __init__(self, units: int) -> None:
        self.units = units

    def GetProduct(self, request, ctx):
        return {"name": "priced", "price": {"currency_code": "EUR", "units": self.units}}


def test_override_with_a_behaviour_class_or_instance(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    with emu.override(Outage) as override:
        assert set(override.methods) == {GET_PRODUCT, LIST_PRODUCTS}
        for call in (
            lambda: catalog.GetProduct({}),
            lambda: list(catalog.ListProducts({})),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert err.value.details() == "catalog is down"
    with emu.override(Priced(42)):
        assert catalog.GetProduct({}).price.units == 42
    assert _product_name(emu) == "baseline"
    assert len(list(catalog.ListProducts({}))) == 3


def test_override_rolls_back_at_exit_to_the_behaviour_or_the_default(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    default_listing = list(catalog.ListProducts({"category_id": "c"}))
    with emu.override(GET_PRODUCT, lambda request, ctx: {"name": "outer"}):
        assert _product_name(emu) == "outer"
        with emu.override(GET_PRODUCT, lambda request, ctx: {"name": "inner"}):
            assert _product_name(emu) == "inner"
            with emu.override(Priced(1)):
                assert _product_name(emu) == "priced"
            assert _product_name(emu) == "inner"
        assert _product_name(emu) == "outer"
    assert _product_name(emu) == "baseline"  # the behaviour from `behaviors=`

    with emu.override(LIST_PRODUCTS, lambda request, ctx: iter([{"name": "x"}])):
        assert [p.name for p in catalog.ListProducts({"category_id": "c"})] == ["x"]
    assert list(catalog.ListProducts({"category_id": "c"})) == default_listing  # the default

    override = emu.override(GET_PRODUCT, lambda request, ctx: {"name": "undone"})
    assert _product_name(emu) == "undone"
    override.undo()
    assert _product_name(emu) == "baseline"


def test_override_without_with_lasts_until_reset(emu: Emulator) -> None:
    emu.override(GET_PRODUCT, lambda request, ctx: {"name": "persistent"})
    emu.override(Outage)
    emu.override(GET_PRODUCT, lambda request, ctx: {"name": "last wins"})
    assert _product_name(emu) == "last wins"
    assert _product_name(emu, "p2") == "last wins"
    with pytest.raises(grpc.RpcError):
        list(emu.stub(CATALOG).ListProducts({}))
    emu.reset()
    assert _product_name(emu) == "baseline"
    assert len(list(emu.stub(CATALOG).ListProducts({}))) == 3


def test_override_refuses_wrong_shapes_and_unknown_methods(emu: Emulator) -> None:
    def generator(request, ctx):
        yield {"name": "twice"}

    with pytest.raises(BehaviorError, match=r"is a generator, but .*GetProduct is unary") as err:
        emu.override(GET_PRODUCT, generator)
    assert "`return` it instead of `yield`" in str(err.value)
    with pytest.raises(
        EmulatorError,
        match=r"no method 'acme.shop.v1.Catalog/GetProdcut' in the contracts; "
        r"did you mean 'acme.shop.v1.Catalog/GetProduct'",
    ):
        emu.override("acme.shop.v1.Catalog/GetProdcut", lambda request, ctx: None)
    with pytest.raises(EmulatorError, match="needs the function"):
        emu.override(GET_PRODUCT)
    assert _product_name(emu) == "baseline"  # nothing was installed


# -- clock -------------------------------------------------------------------------------------


def test_clock_is_real_until_frozen_then_advances_and_resets(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)

    def served_at() -> datetime.datetime:
        return catalog.GetProduct({"product_id": "clock"}).updated_at.ToDatetime(UTC)

    def near_now(moment: datetime.datetime, offset: float = 0) -> bool:
        real = datetime.datetime.now(UTC) + datetime.timedelta(seconds=offset)
        return abs((moment - real).total_seconds()) < 30

    assert emu.clock.frozen is None
    assert near_now(served_at())
    assert near_now(emu.clock.now())

    emu.clock.freeze(FROZEN_AT)
    assert served_at() == FROZEN_AT
    assert served_at() == FROZEN_AT  # it stays
    emu.clock.advance(90)
    assert served_at() == FROZEN_AT + datetime.timedelta(seconds=90)
    emu.clock.freeze(datetime.datetime(2030, 1, 1))  # naive means UTC
    assert served_at() == datetime.datetime(2030, 1, 1, tzinfo=UTC)

    emu.clock.reset()
    assert near_now(served_at())
    emu.clock.advance(3600)  # a running clock moves by an offset
    assert near_now(served_at(), offset=3600)
    emu.reset()
    assert near_now(served_at())


def test_frozen_clock_moves_generated_timestamps_before_it(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)

    def generated() -> list[datetime.datetime]:
        found = []
        for category in range(10):
            for product in catalog.ListProducts({"category_id": str(category)}):
                found.extend(_timestamps(product))
        return found

    running = generated()
    assert all(2024 <= t.year <= 2026 for t in running)
    emu.clock.freeze(FROZEN_AT)
    frozen = generated()
    assert len(frozen) == len(running)
    assert all(FROZEN_AT - datetime.timedelta(days=3 * 366) < t < FROZEN_AT for t in frozen)
    assert all(t.year >= 2028 for t in frozen)
    created = catalog.GetProduct({"product_id": "p1"}).created_at.ToDatetime(UTC)  # a behaviour's
    assert created < FROZEN_AT  # ctx.default_response() follows the clock too
    emu.clock.reset()
    assert generated() == running  # back in the fixed range, the same values


def test_frozen_clock_keeps_generated_timestamps_within_three_years(emu: Emulator) -> None:
    emu.clock.freeze(FROZEN_AT)
    three_years_before = FROZEN_AT.replace(year=FROZEN_AT.year - 3)
    for category in range(10):
        for product in emu.stub(CATALOG).ListProducts({"category_id": str(category)}):
            for moment in _timestamps(product):
                assert three_years_before <= moment < FROZEN_AT


# -- reset -------------------------------------------------------------------------------------


def test_reset_clears_journal_overrides_state_clock_and_replays_rngs(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    first = catalog.GetProduct({"product_id": "p1"})
    second = catalog.GetProduct({"product_id": "p1"})
    assert (first.stock_count, second.stock_count) == (1, 2)  # ctx.state counts
    assert first.rating.value != second.rating.value  # a new rng per call
    emu.state["extra"] = "from the test"
    emu.override(GET_PRODUCT, lambda request, ctx: {"name": "override"})
    emu.clock.freeze(FROZEN_AT)
    assert emu.calls().count == 2

    emu.reset()

    assert emu.calls().count == 0
    assert not emu.calls().called
    assert emu.state == {}
    assert emu.clock.frozen is None
    again = catalog.GetProduct({"product_id": "p1"})
    assert again.name == "baseline"
    assert again.stock_count == 1
    assert again.rating.value == first.rating.value  # the same draws, in the same order
    assert catalog.GetProduct({"product_id": "p1"}).rating.value == second.rating.value
    assert [r.index for r in emu.calls()] == [1, 2]  # indexes restart too


# -- the journal -------------------------------------------------------------------------------


def test_journal_records_every_kind_with_requests_and_responses(emu: Emulator) -> None:
    catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
    product = catalog.GetProduct({"product_id": "p1"})
    listed = list(catalog.ListProducts({"category_id": "c1"}))
    summary = orders.UploadLineItems([{"quantity": 1}, {"quantity": 2}, {"quantity": 3}])
    chat = list(orders.Chat([{"text": "hi"}, {"text": "bye"}]))
    order = orders.CreateOrder({"customer_id": "c9"})  # no behaviour at all

    unary, server, client, bidi, plain = records = emu.calls()
    assert [r.method for r in records] == [GET_PRODUCT, LIST_PRODUCTS, UPLOAD, CHAT, CREATE_ORDER]
    assert [r.index for r in records] == [1, 2, 3, 4, 5]
    assert all(r.ok and r.code == grpc.StatusCode.OK and r.details == "" for r in records)

    assert unary.request.product_id == "p1"
    assert unary.requests == (unary.request,)
    assert unary.responses == (product,) and unary.response == product
    assert unary.trailers == (("x-hits", "1"),)

    assert server.request.category_id == "c1"
    assert list(server.responses) == listed and server.response == listed[-1]

    assert [r.quantity for r in client.requests] == [1, 2, 3]
    assert client.request.quantity == 1
    assert client.responses == (summary,)

    assert [m.text for m in bidi.requests] == ["hi", "bye"]
    assert list(bidi.responses) == chat

    assert plain.request.customer_id == "c9" and plain.response == order
    assert records.requests == [r.request for r in records]


def test_journal_redacts_secret_headers_everywhere(emu: Emulator) -> None:
    catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
    metadata = [
        ("authorization", SECRETS[0]),
        ("x-secret", SECRETS[1]),
        ("x-tenant", "acme"),
    ]
    catalog.GetProduct({"product_id": "p1"}, metadata=metadata)
    with pytest.raises(grpc.RpcError):
        catalog.GetProduct({"product_id": "missing-1"}, metadata=metadata)
    orders.UploadLineItems([{"quantity": 1}], metadata=metadata)
    list(orders.Chat([{"text": "hi"}], metadata=metadata))

    records = emu.calls()
    assert records.count == 4
    for record in records:
        assert record.header("authorization") == REDACTED
        assert record.header("X-Secret") == REDACTED  # configured as "X-Secret": any case
        assert record.header("x-tenant") == "acme"
        assert ("authorization", REDACTED) in record.metadata
        shown = " ".join(
            (repr(record), record.summary(), repr(record.metadata), repr(record.trailers))
        )
        assert not any(secret in shown for secret in SECRETS), shown
    assert not any(secret in records.describe() for secret in SECRETS)


def test_journal_records_peer_timing_and_failures(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    before = datetime.datetime.now(UTC)
    catalog.GetProduct({"product_id": "p1"})
    with pytest.raises(grpc.RpcError) as err:
        catalog.GetProduct({"product_id": "missing-7"})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    raw = emu.channel()
    for path in (GET_PRODUCT, CREATE_ORDER):  # with a behaviour and without one
        with pytest.raises(grpc.RpcError) as err:
            raw.unary_unary(f"/{path}")(b"\x0a\x05ab")  # a length-delimited field cut short
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    ok, failed, garbled, garbled_plain = records = emu.calls()
    after = datetime.datetime.now(UTC)
    for record in records:
        assert record.peer.startswith("ipv4:127.0.0.1:")
        assert record.started_at.tzinfo is not None
        assert record.started_at.utcoffset() == datetime.timedelta(0)
        assert before - datetime.timedelta(seconds=1) <= record.started_at <= after
        assert record.duration >= 0

    assert ok.ok and ok.trailers == (("x-hits", "1"),)
    assert not failed.ok
    assert failed.code == grpc.StatusCode.NOT_FOUND
    assert failed.details == "no product missing-7"
    assert ("x-reason", "gone") in failed.trailers
    assert failed.responses == () and failed.response is None
    assert "NOT_FOUND (no product missing-7)" in failed.summary()

    for record, message in ((garbled, "GetProductRequest"), (garbled_plain, "CreateOrderRequest")):
        assert record.code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"request is not a valid acme.shop.v1.{message}" in record.details
        assert record.request is not None and record.request.ByteSize() == 0  # kept, not decoded
        assert record.response is None


def test_a_failed_call_is_journaled_before_its_status_reaches_the_caller(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    raw = emu.channel().unary_unary(f"/{CREATE_ORDER}")
    for count in range(1, 101, 2):
        with pytest.raises(grpc.RpcError):
            catalog.GetProduct({"product_id": "missing"})
        assert emu.calls().count == count
        with pytest.raises(grpc.RpcError):
            raw(b"\x0a\x05ab")
        assert emu.calls().count == count + 1


def test_journal_keeps_the_last_n_calls() -> None:
    with Emulator(protos=PROTOS, journal={"limit": 5}, defaults={"stream_messages": 4}) as emu:
        catalog = emu.stub(CATALOG)
        for index in range(8):
            catalog.GetProduct({"product_id": f"p{index}"})
        calls = emu.calls()
        assert calls.count == 5
        assert [r.index for r in calls] == [4, 5, 6, 7, 8]  # the oldest dropped
        assert [r.product_id for r in calls.requests] == ["p3", "p4", "p5", "p6", "p7"]
        assert calls.first.index == 4 and calls.last.index == 8
        assert len(list(catalog.ListProducts({}))) == 4  # other emulator.yaml keys apply too
        assert [r.index for r in emu.calls()] == [5, 6, 7, 8, 9]


def test_journal_is_exact_under_concurrent_calls(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def client(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for call in range(25):
                catalog.GetProduct({"product_id": f"w{worker}-{call}"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(w,), name=f"client-{w}") for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    calls = emu.calls()
    assert calls.count == 200
    assert sorted(r.index for r in calls) == list(range(1, 201))
    assert len({r.product_id for r in calls.requests}) == 200
    emu.assert_called(GET_PRODUCT, times=200)
    assert emu.state["hits"] == 200


# -- calls() -----------------------------------------------------------------------------------


def test_calls_filters_by_request_metadata_and_code(emu: Emulator) -> None:
    catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
    catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")])
    catalog.GetProduct({"product_id": "p2"}, metadata=[("x-tenant", "other")])
    with pytest.raises(grpc.RpcError):
        catalog.GetProduct({"product_id": "missing-9"})
    catalog.UpdateProduct(
        {"product": {"product_id": "p3", "availability": "BACKORDER", "price": {"units": "12"}}}
    )
    orders.CreateOrder({"customer_id": "c1", "line_items": [{"quantity": 2}]})

    calls = emu.calls(GET_PRODUCT)
    assert (calls.count, len(calls), calls.called) == (3, 3, True)
    assert calls.first.request.product_id == "p1"
    assert calls.last.request.product_id == "missing-9"
    assert calls[1].request.product_id == "p2"
    assert isinstance(calls[1:], CallList) and calls[1:].count == 2
    assert [r.product_id for r in calls.requests] == ["p1", "p2", "missing-9"]

    def ids(found: CallList) -> list[str]:
        return [r.product_id for r in found.requests]

    assert ids(calls.filter(request={"product_id": "p2"})) == ["p2"]
    assert ids(calls.filter(request={"productId": "p2"})) == ["p2"]  # JSON name
    assert ids(calls.filter(metadata={"x-tenant": "acme"})) == ["p1"]
    assert ids(calls.filter(metadata={"X-Tenant": "other"})) == ["p2"]
    assert ids(calls.filter(code=grpc.StatusCode.NOT_FOUND)) == ["missing-9"]
    assert ids(calls.filter(code=grpc.StatusCode.OK)) == ["p1", "p2"]
    assert ids(calls.filter(request={"product_id": "p1"}, code=grpc.StatusCode.OK)) == ["p1"]
    assert calls.filter(request={"product_id": "p1"}, metadata={"x-tenant": "other"}).count == 0
    assert calls.filter(request={"no_such_field": "x"}).count == 0

    updates = emu.calls(UPDATE_PRODUCT)
    for match in (
        {"product": {"availability": "BACKORDER"}},  # enum by name
        {"product": {"availability": 2}},  # ... or number
        {"product": {"productId": "p3", "price": {"units": 12}}},  # nested, JSON names
        {"product": {"price": {"units": "12"}}},  # int64 as JSON writes it
    ):
        assert updates.filter(request=match).count == 1, match
    assert updates.filter(request={"product": {"availability": "IN_STOCK"}}).count == 0
    assert emu.calls(CREATE_ORDER).filter(request={"line_items": [{"quantity": 2}]}).called

    assert emu.calls(CATALOG).count == 4
    assert all(r.method.startswith(CATALOG + "/") for r in emu.calls(CATALOG))
    assert [r.method for r in emu.calls(ORDERS)] == [CREATE_ORDER]
    assert emu.calls().count == 5
    assert emu.calls("acme.shop.v1.Catalog.GetProduct").count == 3  # other spellings
    assert emu.calls(f"/{GET_PRODUCT}").count == 3

    never = emu.calls(LIST_PRODUCTS)
    assert (never.count, never.called, never.first, never.last) == (0, False, None, None)
    assert never.describe() == "(no calls)"
    with pytest.raises(EmulatorError, match=r"did you mean 'acme\.shop\.v1\.Catalog/GetProduct'"):
        emu.calls("acme.shop.v1.Catalog/GetProdukt")


# -- assert_called -----------------------------------------------------------------------------


def test_assert_called_passes_and_returns_the_matching_calls(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    catalog.GetProduct({"product_id": "41"})
    catalog.GetProduct({"product_id": "43"}, metadata=[("x-tenant", "acme")])

    assert emu.assert_called(GET_PRODUCT).count == 2
    assert emu.assert_called(GET_PRODUCT, times=2).count == 2
    matched = emu.assert_called(GET_PRODUCT, times=1, request={"product_id": "41"})
    assert isinstance(matched, CallList)
    assert [r.product_id for r in matched.requests] == ["41"]
    matched = emu.assert_called(
        GET_PRODUCT, request={"productId": "43"}, metadata={"x-tenant": "acme"}
    )
    assert matched.last.index == 2
    request_class = emu.server.contracts.message_class_by_name("acme.shop.v1.GetProductRequest")
    emu.assert_called(GET_PRODUCT, times=1, request=request_class(product_id="43"))
    emu.assert_not_called(LIST_PRODUCTS)


def test_assert_called_failure_lists_the_closest_calls_and_how_they_differ(
    emu: Emulator,
) -> None:
    catalog = emu.stub(CATALOG)
    catalog.GetProduct({"product_id": "41"})
    catalog.GetProduct({"product_id": "43"})

    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, times=2, request={"product_id": "42"})
    lines = str(err.value).splitlines()
    assert lines[0] == (
        "expected 2 calls to acme.shop.v1.Catalog/GetProduct "
        'with request {"product_id": "42"}, got 0'
    )
    assert lines[1] == "2 call(s) to acme.shop.v1.Catalog/GetProduct; closest:"
    assert lines[2].startswith("  #1 acme.shop.v1.Catalog/GetProduct OK ")
    assert lines[2].endswith('{"productId": "41"}')
    assert lines[3] == "      product_id: expected '42', got '41'"
    assert lines[4].startswith("  #2 acme.shop.v1.Catalog/GetProduct OK ")
    assert lines[5] == "      product_id: expected '42', got '43'"

    with pytest.raises(AssertionError, match=r"expected 3 calls to .*GetProduct, got 2"):
        emu.assert_called(GET_PRODUCT, times=3)


def test_assert_called_failure_shows_nested_fields_and_headers(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    list(catalog.ListProducts({"category_id": "c", "page": {"page_size": 5}}))
    list(catalog.ListProducts({"category_id": "c"}))
    catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "other")])

    with pytest.raises(AssertionError) as err:
        emu.assert_called(LIST_PRODUCTS, request={"page": {"pageSize": 10}})
    message = str(err.value)
    assert message.startswith(
        "expected at least 1 call to acme.shop.v1.Catalog/ListProducts "
        'with request {"page": {"pageSize": 10}}, got 0'
    )
    assert "      page.page_size: expected 10, got 5" in message
    assert "      page: expected {'pageSize': 10}, got nothing (not set)" in message

    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, metadata={"X-Tenant": "acme"})
    message = str(err.value)
    assert 'with metadata {"X-Tenant": "acme"}, got 0' in message.splitlines()[0]
    assert "      header x-tenant: expected 'acme', got 'other'" in message

    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, request={"product_id": "p1"}, metadata={"x-region": "eu"})
    assert "      header x-region: expected 'eu', got None" in str(err.value)


def test_assert_called_failure_when_the_method_or_anything_was_never_called(
    emu: Emulator,
) -> None:
    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT)
    assert str(err.value) == (
        "expected at least 1 call to acme.shop.v1.Catalog/GetProduct, got 0\n"
        "no calls were made to the emulator at all"
    )

    emu.stub(ORDERS).CreateOrder({})
    list(emu.stub(CATALOG).ListProducts({}))
    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, times=1, request={"product_id": "p1"})
    assert str(err.value).splitlines()[1] == (
        "acme.shop.v1.Catalog/GetProduct was never called; calls were made to: "
        "acme.shop.v1.Catalog/ListProducts, acme.shop.v1.Orders/CreateOrder"
    )


def test_assert_not_called_and_too_many_calls(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    emu.assert_not_called(GET_PRODUCT)
    for product_id in ("a", "a", "b", "c", "d", "e"):
        catalog.GetProduct({"product_id": product_id})

    with pytest.raises(AssertionError) as err:
        emu.assert_not_called(GET_PRODUCT)
    message = str(err.value)
    assert message.startswith("expected 0 calls to acme.shop.v1.Catalog/GetProduct, got 6\n")
    assert "matching calls:" in message

    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, times=1, request={"product_id": "a"})
    lines = str(err.value).splitlines()
    assert lines[0].endswith("got 2")
    assert lines[1] == "matching calls:"
    assert len(lines) == 4 and all('{"productId": "a"}' in line for line in lines[2:])

    with pytest.raises(AssertionError) as err:
        emu.assert_called(GET_PRODUCT, request={"product_id": "z"})
    assert str(err.value).splitlines()[-1] == "  ... and 3 more"  # three closest shown


# -- bad input ---------------------------------------------------------------------------------


def test_unknown_names_fail_at_once_naming_the_closest(emu: Emulator) -> None:
    with pytest.raises(
        EmulatorError,
        match=r"no service 'acme.shop.v1.Catalg' in the contracts; "
        r"did you mean 'acme.shop.v1.Catalog'",
    ):
        emu.stub("acme.shop.v1.Catalg")
    with pytest.raises(
        AttributeError, match=r"has no method 'GetProdct'; did you mean 'GetProduct'"
    ):
        _ = emu.stub(CATALOG).GetProdct
    with pytest.raises(
        EmulatorError,
        match=r"no method 'acme.shop.v1.Catalog/GetProdukt' in the contracts; "
        r"did you mean 'acme.shop.v1.Catalog/GetProduct'",
    ):
        emu.assert_called("acme.shop.v1.Catalog/GetProdukt")
    with pytest.raises(EmulatorError, match=r"did you mean 'acme\.shop\.v1\.Orders/CreateOrder'"):
        emu.assert_not_called("acme.shop.v1.Orders/CreateOrdr")


def test_a_dict_with_an_unknown_field_names_the_field_and_the_type(emu: Emulator) -> None:
    catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
    with pytest.raises(ValueError, match="GetProductRequest") as err:
        catalog.GetProduct({"produkt_id": "p1"})
    assert "produkt_id" in str(err.value)
    with pytest.raises(
        ValueError, match=r'"acme\.common\.v1\.PageRequest" has no field named "page_sise"'
    ):
        list(catalog.ListProducts({"page": {"page_sise": 3}}))
    with pytest.raises(
        ValueError, match=r'"acme\.shop\.v1\.LineItem" has no field named "quantiti"'
    ):
        orders.UploadLineItems([{"quantity": 1}, {"quantiti": 2}])
    with pytest.raises(ValueError, match="ChatMessage") as err:
        list(orders.Chat([{"txt": "hi"}]))
    assert "txt" in str(err.value)
    with pytest.raises(TypeError, match=r"takes a acme\.shop\.v1\.GetProductRequest, not a"):
        catalog.GetProduct(emu.server.contracts.message_class_by_name("acme.shop.v1.Product")())
    assert emu.calls().count == 0  # nothing was sent


def test_an_override_that_cannot_take_request_and_ctx_is_refused_at_once() -> None:
    with Emulator(protos=PROTOS) as emu:
        with pytest.raises(BehaviorError, match=r"takes \(request\).*fn\(request, ctx\)"):
            emu.override(GET_PRODUCT, lambda request: {})
        emu.override(GET_PRODUCT, lambda request, ctx: {"name": "ok"})
        assert emu.stub(CATALOG).GetProduct({}).name == "ok"

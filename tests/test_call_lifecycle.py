"""Every call ends with a status the client and the journal agree on, whatever a behaviour does:
StopIteration and CancelledError that escape, SystemExit and KeyboardInterrupt, idle sync
streams, a blocked event loop, deadlines, metadata grpc cannot send, headers without a message."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from emulator import Behavior, Emulator, RpcAbort
from tests.conftest import PROTOS, EmulateProcess, wait_until

ORDERS = "acme.shop.v1.Orders"
CATALOG = "acme.shop.v1.Catalog"
PING = f"{ORDERS}/Ping"
UPLOAD = f"{ORDERS}/UploadLineItems"
CHAT = f"{ORDERS}/Chat"


def _raw(channel: grpc.Channel, path: str, kind: str = "unary_unary"):  # type: ignore[no-untyped-def]
    """A method on `channel` that sends and receives raw bytes."""
    return getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)


def _status(func, *args, **kwargs) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    try:
        result = func(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# -- 3, 4: exceptions that are not Exceptions ---------------------------------------------------


class Escapes(Behavior):
    service = ORDERS

    def UploadLineItems(self, requests, ctx):
        next(requests)
        next(requests)  # past the end of a one-message stream: StopIteration
        return {}

    async def Ping(self, request, ctx):
        how = ctx.metadata.get("x-raise", "")
        if how == "cancelled":
            raise asyncio.CancelledError
        if how == "exit":
            sys.exit(3)
        if how == "interrupt":
            raise KeyboardInterrupt
        return {}

    def WatchOrder(self, request, ctx):
        how = request.order_id
        yield {}
        if how == "exit":
            sys.exit(4)
        if how == "interrupt":
            raise KeyboardInterrupt
        if how == "stop":
            raise StopIteration  # noqa: PLR1708 - PEP 479 makes it a RuntimeError: the point


class SyncEscapes(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        if request.product_id == "exit":
            sys.exit(5)
        if request.product_id == "interrupt":
            raise KeyboardInterrupt
        if request.product_id == "stop":
            raise StopIteration


@pytest.fixture(scope="module")
def escapes() -> Iterator[Emulator]:
    with Emulator(
        protos=PROTOS, behaviors=[Escapes, SyncEscapes], raise_behavior_errors=False
    ) as emu:
        yield emu


def test_stop_iteration_past_the_end_of_a_client_stream_ends_the_call(escapes: Emulator) -> None:
    code, details = _status(escapes.stub(ORDERS).UploadLineItems, [{"product_id": "a"}], timeout=5)
    assert code == grpc.StatusCode.UNKNOWN
    assert "StopIteration" in details and "next()" in details
    assert escapes.calls(UPLOAD).last.code == grpc.StatusCode.UNKNOWN


def test_a_behaviours_own_cancelled_error_ends_the_call_unknown(escapes: Emulator) -> None:
    code, details = _status(escapes.stub(ORDERS).Ping, {}, metadata=[("x-raise", "cancelled")])
    assert code == grpc.StatusCode.UNKNOWN, details
    assert "CancelledError" in details
    assert escapes.calls(PING).last.code == grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_system_exit_and_keyboard_interrupt_fail_only_the_call(escapes: Emulator, how: str) -> None:
    orders, catalog = escapes.stub(ORDERS), escapes.stub(CATALOG)
    expected = "SystemExit" if how == "exit" else "KeyboardInterrupt"
    for code, details in (
        _status(orders.Ping, {}, metadata=[("x-raise", how)], timeout=5),  # async
        _status(catalog.GetProduct, {"product_id": how}, timeout=5),  # sync, thread pool
        _status(orders.WatchOrder, {"order_id": how}, timeout=5),  # sync generator
    ):
        assert code == grpc.StatusCode.UNKNOWN, details
        assert expected in details
    # ...and the server keeps serving.
    assert _status(orders.Ping, {}, timeout=5)[0] == grpc.StatusCode.OK
    assert _status(catalog.GetProduct, {"product_id": "p1"}, timeout=5)[0] == grpc.StatusCode.OK


def test_stop_iteration_from_sync_code_fails_only_the_call(escapes: Emulator) -> None:
    code, details = _status(escapes.stub(CATALOG).GetProduct, {"product_id": "stop"}, timeout=5)
    assert (code, "StopIteration" in details) == (grpc.StatusCode.UNKNOWN, True)
    code, _ = _status(escapes.stub(ORDERS).WatchOrder, {"order_id": "stop"}, timeout=5)
    assert code == grpc.StatusCode.UNKNOWN


def test_sys_exit_in_a_behaviour_does_not_end_the_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "quits.py").write_text(
        "import sys\nfrom emulator import Behavior\n"
        "class Quits(Behavior):\n    service = 'acme.shop.v1.Orders'\n"
        "    async def Ping(self, request, ctx):\n        sys.exit(3)\n"
    )
    with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(tmp_path)) as proc:
        with grpc.insecure_channel(proc.target) as channel:
            ping = _raw(channel, f"/{PING}")
            for _ in range(2):
                assert _status(ping, b"", timeout=5)[0] == grpc.StatusCode.UNKNOWN
        assert proc.proc.poll() is None  # still serving
        code, _, err = proc.stop()
    assert code == 0
    assert "behaviour raised SystemExit" in err


# -- 5: idle sync streams -----------------------------------------------------------------------


class IdleStreams(Behavior):
    service = ORDERS

    def __init__(self) -> None:
        self.started = self.finished = 0
        self.lock = threading.Lock()

    def Chat(self, requests, ctx):  # sync bidi: waits in next(requests) while the client idles
        with self.lock:
            self.started += 1
        try:
            yield from requests
        finally:
            with self.lock:
                self.finished += 1

    def Ping(self, request, ctx):  # sync unary: needs a worker of the pool
        return {}


def test_a_hundred_idle_sync_streams_leave_sync_calls_answered() -> None:
    behaviour = IdleStreams()
    release = threading.Event()

    def idle() -> Iterator[bytes]:
        release.wait(30)
        return
        yield b""

    with Emulator(protos=PROTOS, behaviors=[behaviour], server={"workers": 4}) as emu:
        channels = [grpc.insecure_channel(emu.target) for _ in range(4)]  # 25 streams each
        streams = [_raw(channels[i % 4], f"/{CHAT}", "stream_stream")(idle()) for i in range(100)]
        try:
            wait_until(lambda: behaviour.started == 100, timeout=20)
            ping = emu.stub(ORDERS).Ping
            for _ in range(10):  # 4 workers, 100 streams waiting: unary sync calls still answered
                assert _status(ping, {}, timeout=5)[0] == grpc.StatusCode.OK
        finally:
            release.set()
            for stream in streams:
                stream.cancel()
            for channel in channels:
                channel.close()


def test_a_sync_stream_behaviour_waiting_for_requests_is_released_when_the_call_ends() -> None:
    behaviour = IdleStreams()
    with Emulator(protos=PROTOS, behaviors=[behaviour]) as emu:
        never = threading.Event()

        def idle() -> Iterator[bytes]:
            never.wait(10)
            return
            yield b""

        with grpc.insecure_channel(emu.target) as channel:
            stream = _raw(channel, f"/{CHAT}", "stream_stream")(idle())
            wait_until(lambda: behaviour.started == 1)
            stream.cancel()
            # The behaviour's thread leaves next(requests) once the call is cancelled.
            wait_until(lambda: behaviour.finished == 1 and emu.calls(CHAT).count == 1)
        never.set()
        assert emu.calls(CHAT).last.code == grpc.StatusCode.CANCELLED


# -- 6: a blocked event loop ---------------------------------------------------------------------


class Blocks(Behavior):
    service = ORDERS

    async def Ping(self, request, ctx):
        time.sleep(0.6)  # never awaits: the whole server waits
        return {}


def test_a_blocked_event_loop_is_reported_naming_the_behaviour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("emulator")
    logger.addHandler(caplog.handler)
    try:
        config = {"server": {"loop_block_warning": "0.2s"}}
        with Emulator(protos=PROTOS, behaviors=[Blocks], **config) as emu:
            emu.stub(ORDERS).Ping({}, timeout=10)
            wait_until(lambda: "blocked" in caplog.text)
    finally:
        logger.removeHandler(caplog.handler)
    warning = next(r for r in caplog.records if "blocked" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert "acme.shop.v1.Orders/Ping" in warning.getMessage()
    assert "Blocks.Ping" in warning.getMessage()


# -- 7: the journal has the call when the client has seen it end --------------------------------


def _assert_journalled_deadline(emu: Emulator) -> None:
    """The Ping the client just saw time out is in the journal as DEADLINE_EXCEEDED; reset."""
    last = emu.calls(PING).last
    assert last is not None
    assert last.code == grpc.StatusCode.DEADLINE_EXCEEDED
    emu.reset()


def test_a_call_past_its_deadline_is_journalled_when_the_client_returns() -> None:
    slow = {"name": "slow", "match": {"method": PING}, "delay": {"fixed": "5s"}}
    with Emulator(protos=PROTOS, faults=[slow]) as emu:
        stub = emu.stub(ORDERS)
        for _ in range(8):
            code, _ = _status(stub.Ping, {}, timeout=0.2)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            _assert_journalled_deadline(emu)


class SlowSync(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        time.sleep(0.5)


def test_a_sync_behaviour_past_the_deadline_is_journalled_deadline_exceeded() -> None:
    with Emulator(protos=PROTOS, behaviors=[SlowSync]) as emu:
        for _ in range(4):
            code, _ = _status(emu.stub(CATALOG).GetProduct, {}, timeout=0.1)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert emu.calls(f"{CATALOG}/GetProduct").last.code == code
            emu.reset()


# -- 8: metadata grpc cannot send, long messages --------------------------------------------------

BAD = {
    "space": ("bad key", "v"),
    "non-ascii": ("x-v", "héllo"),
    "line-break": ("x-v", "a\nb"),
    "str-for-bin": ("x-bin", "abc"),
    "pseudo-header": (":path", "/x"),
    "empty-key": ("", "v"),
}


class BadMetadata(Behavior):
    service = ORDERS

    def Ping(self, request, ctx):
        if "x-message" in ctx.metadata:
            raise RpcAbort(grpc.StatusCode.NOT_FOUND, MESSAGES[ctx.metadata["x-message"]])
        if "x-case" not in ctx.metadata:
            return {}
        where = ctx.metadata["x-where"]
        key, value = BAD[ctx.metadata["x-case"]]
        if where == "abort":
            raise RpcAbort(grpc.StatusCode.NOT_FOUND, "nf", trailers={key: value})
        if where == "initial":
            ctx.set_initial_metadata([(key, value)])
        else:
            ctx.set_trailing_metadata([(key, value)])

    def WatchOrder(self, request, ctx):
        if request.order_id == "long":
            raise RuntimeError("x" * 20_000)
        if request.order_id == "huge-trailers":
            raise RpcAbort(grpc.StatusCode.NOT_FOUND, "nf", trailers={"x-big": "y" * 10_000})
        if request.order_id == "huge-headers":
            ctx.set_initial_metadata({"x-big": "y" * 20_000})
        ctx.set_trailing_metadata({"x-big": "y" * 10_000})
        yield {}


@pytest.fixture(scope="module")
def bad_metadata() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, behaviors=[BadMetadata], raise_behavior_errors=False) as emu:
        yield emu


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("where", ["abort", "initial", "trailing"])
def test_metadata_grpc_cannot_send_is_named_and_journalled_as_sent(
    bad_metadata: Emulator, where: str, case: str
) -> None:
    code, details = _status(
        bad_metadata.stub(ORDERS).Ping,
        {},
        metadata=[("x-where", where), ("x-case", case)],
        timeout=5,
    )
    assert code == grpc.StatusCode.UNKNOWN, details
    key = BAD[case][0]
    assert repr(key) in details or repr(key.lower()) in details
    record = bad_metadata.calls(PING).last
    assert (record.code, record.details) == (code, details)
    assert _status(bad_metadata.stub(ORDERS).Ping, {}, timeout=5)[0] == grpc.StatusCode.OK


def test_long_exception_text_reaches_the_client_truncated(bad_metadata: Emulator) -> None:
    code, details = _status(bad_metadata.stub(ORDERS).WatchOrder, {"order_id": "long"}, timeout=5)
    assert code == grpc.StatusCode.UNKNOWN  # not RESOURCE_EXHAUSTED from the client's limit
    assert details.startswith("RuntimeError: xxx") and "more characters cut" in details
    assert len(details) <= 2048
    record = bad_metadata.calls(f"{ORDERS}/WatchOrder").last
    assert (record.code, record.details) == (code, details)


@pytest.mark.parametrize("order_id", ["huge-trailers", "huge-ok-trailers", "huge-headers"])
def test_metadata_over_the_clients_limit_is_refused_when_set(
    bad_metadata: Emulator, order_id: str
) -> None:
    code, details = _status(bad_metadata.stub(ORDERS).WatchOrder, {"order_id": order_id}, timeout=5)
    assert code == grpc.StatusCode.UNKNOWN, details  # not RESOURCE_EXHAUSTED at the client
    assert "over gRPC's 8192 byte limit" in details
    record = bad_metadata.calls(f"{ORDERS}/WatchOrder").last
    assert (record.code, record.details) == (code, details)


MESSAGES = {"emoji": "\U0001f600" * 2000, "accents": "\u00e9" * 3000, "percent": "%" * 9000}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_a_status_message_is_cut_by_its_encoded_size(bad_metadata: Emulator, name: str) -> None:
    text = MESSAGES[name]
    for _ in range(3):  # over the client's soft limit, grpc refuses at random: try a few
        code, details = _status(
            bad_metadata.stub(ORDERS).Ping, {}, metadata=[("x-message", name)], timeout=5
        )
        assert code == grpc.StatusCode.NOT_FOUND, details
        assert details.endswith("more characters cut)")
        assert details.startswith(text[:10])
        record = bad_metadata.calls(PING).last
        assert (record.code, record.details) == (code, details)


def test_bad_fault_trailers_are_refused_at_load() -> None:
    from emulator import ConfigError

    rule = {"name": "r", "match": {"method": PING}, "abort": {"code": "UNAVAILABLE"}}
    rule["abort"]["trailers"] = {"bad key": "v"}  # type: ignore[index]
    with pytest.raises(ConfigError, match="'bad key' is not a valid gRPC metadata key"):
        Emulator(protos=PROTOS, faults=[rule])


# -- 10: headers go out even when no message does ---------------------------------------------


class HeadersOnly(Behavior):
    service = ORDERS

    def Ping(self, request, ctx):
        ctx.set_initial_metadata({"x-grpc-test-echo-initial": "hello"})
        raise RpcAbort(grpc.StatusCode.FAILED_PRECONDITION, "no")

    def WatchOrder(self, request, ctx):  # an empty server stream
        ctx.set_initial_metadata({"x-grpc-test-echo-initial": "empty"})
        return
        yield {}

    async def Chat(self, requests, ctx):
        ctx.set_initial_metadata({"x-grpc-test-echo-initial": "bidi"})
        async for _ in requests:
            pass
        return
        yield {}


def test_initial_metadata_is_sent_when_a_call_ends_without_a_message() -> None:
    with Emulator(protos=PROTOS, behaviors=[HeadersOnly]) as emu:
        stub = emu.stub(ORDERS)
        with pytest.raises(grpc.RpcError) as info:
            stub.Ping({}, timeout=5)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert ("x-grpc-test-echo-initial", "hello") in info.value.initial_metadata()

        stream = stub.WatchOrder({}, timeout=5)
        assert list(stream) == []
        assert ("x-grpc-test-echo-initial", "empty") in stream.initial_metadata()

        chat = stub.Chat([{}, {}], timeout=5)
        assert list(chat) == []
        assert ("x-grpc-test-echo-initial", "bidi") in chat.initial_metadata()


async def test_an_async_test_reads_a_call_past_its_deadline_at_once() -> None:
    slow = {"name": "slow", "match": {"method": PING}, "delay": {"fixed": "5s"}}
    async with Emulator(protos=PROTOS, faults=[slow]) as emu:
        stub = emu.stub(ORDERS)
        for _ in range(8):
            with pytest.raises(grpc.RpcError) as info:
                await stub.Ping({}, timeout=0.2)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            _assert_journalled_deadline(emu)


class ReturnsOne(Behavior):
    service = ORDERS

    def WatchOrder(self, request, ctx):  # server streaming, but returns a single message
        return {"order_id": "o1"}


def test_a_stream_method_that_returns_one_message_says_so() -> None:
    with Emulator(protos=PROTOS, behaviors=[ReturnsOne], raise_behavior_errors=False) as emu:
        code, details = _status(emu.stub(ORDERS).WatchOrder, {}, timeout=5)
    assert code == grpc.StatusCode.INTERNAL
    assert "returned dict" in details and "yield each message" in details


# -- a request stream the client abandons is not an answered call -------------------------------


class SyncStreams(Behavior):
    service = ORDERS

    def UploadLineItems(self, requests, ctx):
        for _ in requests:
            pass
        return {}

    def Chat(self, requests, ctx):
        yield from requests


def _slow_requests() -> Iterator[bytes]:
    yield b""
    time.sleep(0.8)  # the client's deadline passes while it still has requests to send


@pytest.mark.parametrize("behaviors", [[], [SyncStreams]], ids=["defaults", "sync-behaviour"])
@pytest.mark.parametrize("method", [UPLOAD, CHAT])
def test_a_request_stream_past_its_deadline_is_journalled_deadline_exceeded(
    behaviors: list[type[Behavior]], method: str
) -> None:
    kind = "stream_unary" if method == UPLOAD else "stream_stream"
    with (
        Emulator(protos=PROTOS, behaviors=behaviors) as emu,
        grpc.insecure_channel(emu.target) as channel,
    ):
        call = _raw(channel, f"/{method}", kind)
        for _ in range(4):
            code, _ = _status(call, _slow_requests(), timeout=0.3)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            record = wait_until(lambda: emu.calls(method).last)
            assert record.code == grpc.StatusCode.DEADLINE_EXCEEDED
            emu.reset()


def test_a_client_stream_the_client_cancels_is_journalled_cancelled() -> None:
    started, gate = threading.Event(), threading.Event()

    class Upload(Behavior):
        service = ORDERS

        async def UploadLineItems(self, requests, ctx):
            started.set()
            async for _ in requests:
                pass
            return {}

    def requests() -> Iterator[bytes]:
        yield b""
        gate.wait(5)

    with Emulator(protos=PROTOS, behaviors=[Upload]) as emu:
        with grpc.insecure_channel(emu.target) as channel:
            future = _raw(channel, f"/{UPLOAD}", "stream_unary").future(requests())
            assert started.wait(5)
            future.cancel()
            gate.set()
            record = wait_until(lambda: emu.calls(UPLOAD).last)
        assert record.code == grpc.StatusCode.CANCELLED


# -- GeneratorExit raised by a behaviour is the behaviour's error, not a close --------------------


class RaisesGeneratorExit(Behavior):
    service = ORDERS

    def Ping(self, request, ctx):
        raise GeneratorExit

    async def CreateOrder(self, request, ctx):
        raise GeneratorExit

    def WatchOrder(self, request, ctx):
        yield {}
        raise GeneratorExit


def test_generator_exit_from_a_behaviour_fails_only_its_call() -> None:
    with Emulator(
        protos=PROTOS, behaviors=[RaisesGeneratorExit], raise_behavior_errors=False
    ) as emu:
        orders = emu.stub(ORDERS)
        for method in (orders.Ping, orders.CreateOrder, orders.WatchOrder):
            code, details = _status(method, {}, timeout=5)
            assert code == grpc.StatusCode.UNKNOWN, details
            assert "GeneratorExit" in details
        assert emu.calls(f"{ORDERS}/WatchOrder").last.code == grpc.StatusCode.UNKNOWN

"""Faults: retries, rich details, seeds, gates, deadlines, streams, rate limits, headers, health,
the journal, validation and connection-level settings — real grpcio clients over real sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import statistics
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from emulator import Behavior, Emulator
from emulator.config import Config
from emulator.errors import ConfigError, EmulatorError
from emulator.faults.config import DelayConfig, LogNormalConfig, NormalConfig
from emulator.faults.rules import sample, seeded
from tests.conftest import PROTOS, emulate, wait_until

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
GET = f"/{CATALOG}/GetProduct"
LIST = f"/{CATALOG}/ListProducts"
PING = f"/{ORDERS}/Ping"
UPLOAD = f"/{ORDERS}/UploadLineItems"
CHAT = f"/{ORDERS}/Chat"
WATCH = f"/{ORDERS}/WatchOrder"
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED


def outage(**extra: Any) -> dict[str, Any]:
    """A fault rule that aborts GetProduct with UNAVAILABLE; `extra` keys replace its own."""
    return {
        "name": "outage",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "abort": {"code": "UNAVAILABLE"},
        **extra,
    }


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return OK


def drain(stream: Iterable[bytes]) -> tuple[list[bytes], grpc.StatusCode, str]:
    """The messages a streaming call delivered, then its status code and message."""
    got: list[bytes] = []
    try:
        got.extend(stream)
    except grpc.RpcError as exc:
        return got, exc.code(), exc.details()
    return got, OK, ""


def error_of(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def unary(emu: Emulator, path: str = GET) -> grpc.UnaryUnaryMultiCallable:
    return emu.channel().unary_unary(path)


# -- retries, pushback and rich details --------------------------------------------------------

RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": CATALOG}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def retrying_channel(emu: Emulator) -> grpc.Channel:
    return grpc.insecure_channel(
        emu.target, options=[("grpc.enable_retries", 1), ("grpc.service_config", RETRY_CONFIG)]
    )


def gaps(emu: Emulator) -> list[float]:
    starts = [c.started_at for c in emu.calls()]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]


def test_a_retrying_client_gets_through_after_exactly_two_retries() -> None:
    with (
        Emulator(protos=PROTOS, faults=[outage(when={"calls": [1, 2]})]) as emu,
        retrying_channel(emu) as channel,
    ):
        assert channel.unary_unary(GET)(b"", timeout=5)
        assert [c.code for c in emu.calls()] == [UNAVAILABLE, UNAVAILABLE, OK]
        assert [c.faults for c in emu.calls()] == [("outage",), ("outage",), ()]
        assert emu.fault_stats() == {"outage": {"matched": 3, "injected": 2}}
        assert all(gap < 0.25 for gap in gaps(emu))  # the client's own short backoff


def test_the_client_honours_retry_pushback() -> None:
    rule = outage(
        when={"calls": [1, 2]},
        abort={"code": "UNAVAILABLE", "trailers": {"grpc-retry-pushback-ms": "300"}},
    )
    with Emulator(protos=PROTOS, faults=[rule]) as emu, retrying_channel(emu) as channel:
        assert channel.unary_unary(GET)(b"", timeout=5)
        assert [c.code for c in emu.calls()] == [UNAVAILABLE, UNAVAILABLE, OK]
        assert all(gap >= 0.29 for gap in gaps(emu)), gaps(emu)


def test_a_negative_pushback_stops_retries() -> None:
    # gRFC A6: a negative or unparseable grpc-retry-pushback-ms means "do not retry".
    rule = outage(
        when={"calls": [1, 2]},
        abort={"code": "UNAVAILABLE", "trailers": {"grpc-retry-pushback-ms": "-1"}},
    )
    with Emulator(protos=PROTOS, faults=[rule]) as emu, retrying_channel(emu) as channel:
        assert code_of(lambda: channel.unary_unary(GET)(b"", timeout=5)) == UNAVAILABLE
        assert [c.code for c in emu.calls()] == [UNAVAILABLE]
        assert emu.fault_stats() == {"outage": {"matched": 1, "injected": 1}}


def test_rich_error_details_decode_with_rpc_status() -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"},
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "product_id", "description": "unknown"}],
        },
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "STOCKOUT",
            "domain": "shop.acme.example",
            "metadata": {"sku": "p1"},
        },
    ]
    rule = outage(abort={"code": "UNAVAILABLE", "message": "try later", "details": details})
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        err = error_of(lambda: unary(emu)(b""))
        assert (err.code(), err.details()) == (UNAVAILABLE, "try later")
        status = rpc_status.from_call(err)
        assert status is not None and status.code == UNAVAILABLE.value[0]
        retry, bad, info = (
            error_details_pb2.RetryInfo(),
            error_details_pb2.BadRequest(),
            error_details_pb2.ErrorInfo(),
        )
        assert [d.Unpack(m) for d, m in zip(status.details, (retry, bad, info), strict=True)]
        assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)
        assert bad.field_violations[0].field == "product_id"
        assert (info.reason, info.domain, dict(info.metadata)) == (
            "STOCKOUT",
            "shop.acme.example",
            {"sku": "p1"},
        )


# -- reproducibility and delay distributions ---------------------------------------------------


def flaky_codes(seed: int, calls: int = 1000) -> list[int]:
    rule = {
        "name": "flaky",
        "match": {"method": f"{ORDERS}/Ping"},
        "when": {"probability": 0.3},
        "abort": {"code": "UNAVAILABLE"},
    }
    with Emulator(protos=PROTOS, seed=seed, faults=[rule]) as emu:
        ping = unary(emu, PING)
        codes = [code_of(lambda: ping(b"")).value[0] for _ in range(calls)]
        injected = sum(1 for c in codes if c)
        assert emu.fault_stats() == {"flaky": {"matched": calls, "injected": injected}}
    return codes


def test_the_same_seed_gives_the_same_faults() -> None:
    first, again, other = flaky_codes(7), flaky_codes(7), flaky_codes(8)
    assert set(first) == {0, UNAVAILABLE.value[0]}
    assert first == again
    assert first != other
    assert abs(first.count(14) / len(first) - 0.3) < 0.05
    assert abs(other.count(14) / len(other) - 0.3) < 0.05


def test_delay_distributions_match_their_parameters() -> None:
    def draws(delay: DelayConfig, n: int = 20_000) -> list[float]:
        rng = seeded(11, "dist", repr(delay))
        return [sample(delay, rng) for _ in range(n)]

    assert set(draws(DelayConfig(fixed=0.15), 100)) == {0.15}

    uniform = draws(DelayConfig(uniform=(0.1, 0.2)))
    assert min(uniform) >= 0.1 and max(uniform) <= 0.2
    assert statistics.fmean(uniform) == pytest.approx(0.15, abs=0.002)
    assert statistics.pstdev(uniform) == pytest.approx(0.1 / math.sqrt(12), rel=0.03)

    normal = draws(DelayConfig(normal=NormalConfig(mean=0.2, stddev=0.03)))
    assert statistics.fmean(normal) == pytest.approx(0.2, rel=0.01)
    assert statistics.pstdev(normal) == pytest.approx(0.03, rel=0.03)
    clipped = draws(DelayConfig(normal=NormalConfig(mean=0.01, stddev=0.05)), 2000)
    assert min(clipped) == 0.0  # never a negative delay

    lognormal = draws(DelayConfig(lognormal=LogNormalConfig(median=0.1, sigma=0.5)))
    assert statistics.median(lognormal) == pytest.approx(0.1, rel=0.03)
    logs = [math.log(x) for x in lognormal]
    assert statistics.pstdev(logs) == pytest.approx(0.5, rel=0.03)
    assert min(lognormal) > 0

    # Seeded: the same seed, the same draws.
    rule = DelayConfig(uniform=(0.0, 1.0))
    assert [sample(rule, seeded(3, "x")) for _ in range(5)] == [
        sample(rule, seeded(3, "x")) for _ in range(5)
    ]


def test_a_fixed_delay_delays_the_call() -> None:
    rule = {
        "name": "outage",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "delay": {"fixed": "50ms"},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        started = time.perf_counter()
        assert unary(emu)(b"")
        assert time.perf_counter() - started >= 0.05
        record = emu.calls().last
        assert record.faults == ("outage",)
        assert 0.05 <= record.duration < 0.5
        assert code_of(lambda: unary(emu, PING)(b"")) == OK  # other methods: no delay
        assert emu.calls().last.duration < 0.05


# -- when: calls, after_calls, window, metadata, request -----------------------------------------


def test_calls_and_after_calls_pick_matching_calls() -> None:
    rules = [
        outage(when={"calls": [2, 4]}),
        {
            "name": "late",
            "match": {"method": f"{ORDERS}/Ping"},
            "when": {"after_calls": 2},
            "abort": {"code": "ABORTED"},
        },
    ]
    with Emulator(protos=PROTOS, faults=rules) as emu:
        get, ping = unary(emu), unary(emu, PING)
        assert [code_of(lambda: get(b"")) for _ in range(5)] == [
            OK,
            UNAVAILABLE,
            OK,
            UNAVAILABLE,
            OK,
        ]
        aborted = grpc.StatusCode.ABORTED
        assert [code_of(lambda: ping(b"")) for _ in range(5)] == [OK, OK, aborted, aborted, aborted]
        assert emu.fault_stats() == {
            "outage": {"matched": 5, "injected": 2},
            "late": {"matched": 5, "injected": 3},
        }


def test_windows_count_from_the_emulator_start() -> None:
    rules = [
        outage(when={"window": {"start": "0s", "duration": "400ms"}}),
        {
            "name": "later",
            "match": {"method": f"{ORDERS}/Ping"},
            "when": {"window": {"start": "400ms", "duration": "300ms"}},
            "abort": {"code": "UNAVAILABLE"},
        },
    ]
    with Emulator(protos=PROTOS, faults=rules) as emu:
        started = time.monotonic()
        get, ping = unary(emu), unary(emu, PING)
        assert code_of(lambda: get(b"")) == UNAVAILABLE  # in its window from the start
        assert code_of(lambda: ping(b"")) == OK  # its window is still ahead
        wait_until(lambda: code_of(lambda: get(b"")) == OK, timeout=5)
        wait_until(lambda: code_of(lambda: ping(b"")) == UNAVAILABLE, timeout=5)
        assert time.monotonic() - started >= 0.35
        wait_until(lambda: code_of(lambda: ping(b"")) == OK, timeout=5)
        assert code_of(lambda: get(b"")) == OK  # and it stays over


def test_match_on_metadata_and_partial_request() -> None:
    rules = [
        outage(
            match={"method": f"{CATALOG}/*", "metadata": {"x-tenant": "acme"}}, when={"calls": [1]}
        ),
        {
            "name": "c1-orders",
            "match": {"method": f"{ORDERS}/CreateOrder", "request": {"customer_id": "c1"}},
            "abort": {"code": "FAILED_PRECONDITION"},
        },
    ]
    with Emulator(protos=PROTOS, faults=rules) as emu:
        get = unary(emu)
        assert code_of(lambda: get(b"")) == OK
        assert code_of(lambda: get(b"", metadata=[("x-tenant", "other")])) == OK
        # The first *matching* call, even after calls that did not match.
        assert code_of(lambda: get(b"", metadata=[("x-tenant", "acme")])) == UNAVAILABLE
        assert code_of(lambda: get(b"", metadata=[("x-tenant", "acme")])) == OK
        assert emu.fault_stats()["outage"] == {"matched": 2, "injected": 1}

        orders = emu.stub(ORDERS)
        refused = error_of(
            lambda: orders.CreateOrder({"customer_id": "c1", "idempotency_key": "k"})
        )
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert orders.CreateOrder({"customer_id": "c2", "idempotency_key": "k"}).order_id
        assert orders.CreateOrder({}).order_id
        assert emu.fault_stats()["c1-orders"] == {"matched": 1, "injected": 1}


def stop_chat(**extra: Any) -> dict[str, Any]:
    """A rule that aborts a Chat stream at a message whose text is "stop"."""
    return {
        "name": "stop",
        "match": {"method": CHAT.lstrip("/"), "request": {"text": "stop"}},
        "abort": {"code": "ABORTED", "message": "stopped"},
        **extra,
    }


def test_match_request_fires_at_the_matching_message_of_a_bidi_stream() -> None:
    with Emulator(protos=PROTOS, faults=[stop_chat()]) as emu:
        answered = threading.Event()

        def lockstep() -> Iterator[dict[str, str]]:
            yield {"text": "hello"}
            # The second message leaves only once the first one's answer has arrived.
            assert answered.wait(10)
            yield {"text": "stop"}
            yield {"text": "never read"}

        got: list[Any] = []
        with pytest.raises(grpc.RpcError) as err:
            for reply in emu.stub(ORDERS).Chat(lockstep()):
                got.append(reply)
                answered.set()
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.ABORTED, "stopped")
        assert len(got) == 1
        record = emu.calls(CHAT.lstrip("/")).last
        assert (record.request_count, record.response_count) == (2, 1)
        assert record.faults == ("stop",)
        assert emu.fault_stats()["stop"] == {"matched": 1, "injected": 1}

        # No message matches: the stream runs to its end.
        got, code, _ = drain(emu.stub(ORDERS).Chat([{"text": "a"}, {"text": "b"}]))
        assert (len(got), code) == (2, OK)
        assert emu.fault_stats()["stop"] == {"matched": 1, "injected": 1}


def test_match_request_counts_streams_not_messages() -> None:
    # `calls: [2]`: the second stream with a matching message, however many messages matched.
    with Emulator(protos=PROTOS, faults=[stop_chat(when={"calls": [2]})]) as emu:
        orders = emu.stub(ORDERS)
        got, code, _ = drain(orders.Chat([{"text": "stop"}, {"text": "stop"}, {"text": "x"}]))
        assert (len(got), code) == (3, OK)  # matched (twice over), counted once, not its turn
        assert emu.fault_stats()["stop"] == {"matched": 1, "injected": 0}
        got, code, _ = drain(orders.Chat([{"text": "x"}, {"text": "stop"}]))
        assert (len(got), code) == (1, grpc.StatusCode.ABORTED)
        assert emu.fault_stats()["stop"] == {"matched": 2, "injected": 1}


class CountingOrders(Behavior):
    service = ORDERS

    def UploadLineItems(self, requests, ctx):  # sync: reads the stream from a worker thread
        return {"item_count": sum(1 for _ in requests)}


def test_match_request_on_a_client_stream_with_metadata() -> None:
    rule = {
        "name": "no-p2",
        "match": {
            "method": UPLOAD.lstrip("/"),
            "metadata": {"x-tenant": "acme"},
            "request": {"product_id": "p2"},
        },
        "abort": {"code": "FAILED_PRECONDITION"},
    }
    with Emulator(protos=PROTOS, faults=[rule], behaviors=[CountingOrders]) as emu:
        upload = emu.stub(ORDERS).UploadLineItems
        items = [{"product_id": p} for p in ("p1", "p2", "p3")]
        acme = [("x-tenant", "acme")]
        refused = error_of(lambda: upload(items, metadata=acme))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert emu.calls().last.request_count == 2  # the third message was never read
        assert upload(items).item_count == 3  # another tenant: the metadata does not match
        assert upload(items[::2], metadata=acme).item_count == 2  # no message matches
        assert emu.fault_stats()["no-p2"] == {"matched": 1, "injected": 1}
        assert [c.faults for c in emu.calls()] == [("no-p2",), (), ()]


# -- deadlines and max_duration -----------------------------------------------------------------


def test_a_delay_past_the_deadline_ends_at_the_deadline() -> None:
    rule = {"name": "slow", "match": {"method": f"{CATALOG}/GetProduct"}, "delay": {"fixed": "3s"}}
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        started = time.perf_counter()
        assert code_of(lambda: unary(emu)(b"", timeout=0.2)) == DEADLINE
        assert 0.15 <= time.perf_counter() - started < 1.0
        record = wait_until(lambda: emu.calls().last)
        assert record.code == DEADLINE and record.faults == ("slow",)
        assert record.duration < 1.0


def test_deadline_exceed_holds_every_kind_until_the_deadline() -> None:
    with Emulator(protos=PROTOS, faults=[{"name": "hold", "deadline": "exceed"}]) as emu:
        channel = emu.channel()
        calls: dict[str, Callable[[], Any]] = {
            "unary": lambda: channel.unary_unary(GET)(b"", timeout=0.2),
            "server stream": lambda: list(channel.unary_stream(LIST)(b"", timeout=0.2)),
            "client stream": lambda: channel.stream_unary(UPLOAD)(iter([b"", b""]), timeout=0.2),
            "bidi": lambda: list(channel.stream_stream(CHAT)(iter([b""]), timeout=0.2)),
        }
        for kind, call in calls.items():
            started = time.perf_counter()
            assert code_of(call) == DEADLINE, kind
            assert 0.15 <= time.perf_counter() - started < 1.0, kind
        wait_until(lambda: len(emu.calls()) == 4)
        assert [c.faults for c in emu.calls()] == [("hold",)] * 4
        assert emu.fault_stats() == {"hold": {"matched": 4, "injected": 4}}


CANCELLED: list[BaseException] = []
RELEASE = threading.Event()  # lets the sync behaviours below finish once a test is done


class SlowCatalog(Behavior):
    service = CATALOG

    async def GetProduct(self, request, ctx):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as exc:
            CANCELLED.append(exc)
            raise

    def UpdateProduct(self, request, ctx):
        RELEASE.wait(10)

    async def ListProducts(self, request, ctx):
        yield {"product_id": "first"}
        await asyncio.sleep(10)


class SlowOrders(Behavior):
    service = ORDERS

    def WatchOrder(self, request, ctx):
        yield {"order_id": "first"}
        RELEASE.wait(10)

    async def Chat(self, requests, ctx):
        async for message in requests:
            yield {"text": message.text}
            await asyncio.sleep(10)


@pytest.fixture
def release() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()


def test_a_slow_async_behaviour_is_cancelled_at_the_client_deadline(release: None) -> None:
    CANCELLED.clear()
    with Emulator(protos=PROTOS, behaviors=[SlowCatalog, SlowOrders]) as emu:
        started = time.perf_counter()
        assert code_of(lambda: unary(emu)(b"", timeout=0.2)) == DEADLINE
        assert time.perf_counter() - started < 1.0
        wait_until(lambda: CANCELLED)
        assert isinstance(CANCELLED[0], asyncio.CancelledError)
        assert wait_until(lambda: emu.calls().last).code == DEADLINE

        # Streaming behaviours honour the client's deadline too.
        channel = emu.channel()
        for stream in (
            lambda: channel.unary_stream(LIST)(b"", timeout=0.3),
            lambda: channel.unary_stream(WATCH)(b"", timeout=0.3),
            lambda: channel.stream_stream(CHAT)(iter([b""]), timeout=0.3),
        ):
            started = time.perf_counter()
            got, code, _ = drain(stream())
            assert (len(got), code) == (1, DEADLINE)
            assert time.perf_counter() - started < 1.0


def test_max_duration_ends_slow_behaviours(release: None) -> None:
    with Emulator(
        protos=PROTOS,
        behaviors=[SlowCatalog, SlowOrders],
        max_duration={f"{CATALOG}/*": "150ms", f"{ORDERS}/WatchOrder": "150ms"},
    ) as emu:
        channel = emu.channel()
        calls: dict[str, Callable[[], Any]] = {
            "async unary": lambda: channel.unary_unary(GET)(b"", timeout=5),
            "sync unary": lambda: channel.unary_unary(f"/{CATALOG}/UpdateProduct")(b"", timeout=5),
            "async stream": lambda: list(channel.unary_stream(LIST)(b"", timeout=5)),
            "sync stream": lambda: list(channel.unary_stream(WATCH)(b"", timeout=5)),
        }
        for kind, call in calls.items():
            started = time.perf_counter()
            err = error_of(call)
            assert err.code() == DEADLINE, kind
            assert "max_duration of 0.15s" in err.details(), (kind, err.details())
            assert 0.1 <= time.perf_counter() - started < 1.5, kind
        wait_until(lambda: len(emu.calls()) == 4)
        assert [len(c.responses) for c in emu.calls()] == [0, 0, 1, 1]
        assert all(c.code == DEADLINE for c in emu.calls())


# -- streams ------------------------------------------------------------------------------------


def test_a_stream_ends_after_n_messages_with_the_status() -> None:
    with Emulator(protos=PROTOS, defaults={"stream_messages": 5}) as emu:
        channel = emu.channel()
        for after, kind in ((3, "server"), (2, "bidi"), (0, "server")):
            method = LIST if kind == "server" else CHAT
            with emu.fault(
                name=f"cut-{kind}-{after}",
                match={"method": method.lstrip("/")},
                stream={"abort_after": after},
                abort={"code": "ABORTED", "message": "cut"},
            ):
                if kind == "server":
                    got, code, details = drain(channel.unary_stream(LIST)(b""))
                else:
                    got, code, details = drain(channel.stream_stream(CHAT)(iter([b""] * 4)))
                assert len(got) == after, kind
                assert (code, details) == (grpc.StatusCode.ABORTED, "cut")
        # Without an abort, the cut stream ends UNAVAILABLE.
        with emu.fault(name="cut", match={"method": LIST.lstrip("/")}, stream={"abort_after": 1}):
            got, code, _ = drain(channel.unary_stream(LIST)(b""))
            assert (len(got), code) == (1, UNAVAILABLE)
        assert len(list(channel.unary_stream(LIST)(b""))) == 5  # rolled back


def test_message_delay_spaces_streamed_messages() -> None:
    rule = {
        "name": "drip",
        "match": {"method": LIST.lstrip("/")},
        "stream": {"message_delay": "60ms"},
    }
    with Emulator(protos=PROTOS, faults=[rule], defaults={"stream_messages": 3}) as emu:
        arrivals = []
        started = time.perf_counter()
        for _ in emu.channel().unary_stream(LIST)(b""):
            arrivals.append(time.perf_counter() - started)
        assert len(arrivals) == 3
        assert arrivals[0] >= 0.055
        assert all(b - a >= 0.04 for a, b in itertools.pairwise(arrivals)), arrivals
        record = emu.calls().last
        assert record.faults == ("drip",) and record.duration >= 0.17


# -- rate limits --------------------------------------------------------------------------------


def test_rate_limit_burst_then_resource_exhausted_then_refill() -> None:
    limit = {"name": "ping-limit", "match": {"method": f"{ORDERS}/Ping"}, "rps": 5, "burst": 2}
    with Emulator(protos=PROTOS, rate_limits=[limit]) as emu:
        ping = unary(emu, PING)
        assert code_of(lambda: ping(b"")) == OK
        assert code_of(lambda: ping(b"")) == OK
        err = error_of(lambda: ping(b""))
        exhausted = time.monotonic()
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ping-limit" in err.details()
        pushback = dict(err.trailing_metadata())["grpc-retry-pushback-ms"]
        assert 100 <= int(pushback) <= 200
        assert code_of(lambda: unary(emu)(b"")) == OK  # other methods are not limited
        wait_until(lambda: code_of(lambda: ping(b"")) == OK, timeout=5)
        assert time.monotonic() - exhausted >= 0.1
        assert emu.calls().filter(code=grpc.StatusCode.RESOURCE_EXHAUSTED).count >= 1


# -- header faults ------------------------------------------------------------------------------


def test_header_faults_are_off_by_default() -> None:
    with Emulator(protos=PROTOS) as emu:
        get = unary(emu)
        assert code_of(lambda: get(b"", metadata=[("x-emulator-fault", "code=UNAVAILABLE")])) == OK
        envoy = [("x-envoy-fault-abort-grpc-request", "14")]
        assert code_of(lambda: get(b"", metadata=envoy)) == OK
        assert code_of(lambda: get(b"", metadata=[("x-emulator-fault", "nonsense")])) == OK


def test_x_emulator_fault_header() -> None:
    with Emulator(protos=PROTOS, header_faults=True) as emu:
        get = unary(emu)

        def with_header(value: str) -> grpc.StatusCode:
            return code_of(lambda: get(b"", metadata=[("x-emulator-fault", value)]))

        assert with_header("code=UNAVAILABLE; message=try later") == UNAVAILABLE
        assert emu.calls().last.details == "try later" and emu.calls().last.faults == ("header",)
        assert with_header("code=14") == UNAVAILABLE
        started = time.perf_counter()
        assert with_header("delay=100ms") == OK
        assert time.perf_counter() - started >= 0.1 and emu.calls().last.duration >= 0.1
        assert [with_header("code=UNAVAILABLE; probability=0") for _ in range(20)] == [OK] * 20
        for malformed in ("code=UNAVAILABL", "delay=soon", "probability=2", "colour=red", "oops"):
            err = error_of(lambda m=malformed: get(b"", metadata=[("x-emulator-fault", m)]))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, malformed
            assert "x-emulator-fault" in err.details(), malformed
        assert code_of(lambda: get(b"")) == OK


def test_envoy_fault_headers() -> None:
    with Emulator(protos=PROTOS, header_faults=True) as emu:
        get = unary(emu)

        def with_headers(*headers: tuple[str, str]) -> grpc.StatusCode:
            return code_of(lambda: get(b"", metadata=list(headers)))

        abort = ("x-envoy-fault-abort-grpc-request", "14")
        assert with_headers(abort) == UNAVAILABLE
        assert with_headers(abort, ("x-envoy-fault-abort-request-percentage", "100")) == UNAVAILABLE
        never = ("x-envoy-fault-abort-request-percentage", "0")
        assert [with_headers(abort, never) for _ in range(10)] == [OK] * 10
        started = time.perf_counter()
        assert with_headers(("x-envoy-fault-delay-request", "100")) == OK
        assert time.perf_counter() - started >= 0.1
        assert emu.calls().last.duration >= 0.1
        for header, malformed in (
            ("x-envoy-fault-abort-grpc-request", "abc"),
            ("x-envoy-fault-abort-grpc-request", "0"),  # OK is no abort (it used to hang)
            ("x-envoy-fault-abort-grpc-request", "17"),
            ("x-envoy-fault-delay-request", "-5"),
            ("x-envoy-fault-delay-request", "nan"),  # it used to sleep for ever
            ("x-envoy-fault-abort-request-percentage", "150"),
        ):
            metadata = (
                [abort, (header, malformed)] if "percentage" in header else [(header, malformed)]
            )
            err = error_of(lambda m=metadata: get(b"", metadata=m, timeout=5))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (header, malformed)
            assert header in err.details()


# -- max_active_faults --------------------------------------------------------------------------


def test_max_active_faults_limits_faults_in_flight() -> None:
    rule = {
        "name": "slow",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "delay": {"fixed": "300ms"},
    }
    with Emulator(protos=PROTOS, faults=[rule], max_active_faults=1) as emu:
        get = unary(emu)
        futures = [get.future(b"", timeout=5) for _ in range(2)]
        assert all(f.result() for f in futures)
        wait_until(lambda: len(emu.calls()) == 2)
        assert sorted(c.faults for c in emu.calls()) == [(), ("slow",)]
        assert sorted(c.duration >= 0.3 for c in emu.calls()) == [False, True]
        assert emu.fault_stats() == {"slow": {"matched": 2, "injected": 1}}

        # A stream fault stays active until its stream ends, not just until the first message.
        emu.reset()
        with emu.fault(
            name="drip", match={"method": LIST.lstrip("/")}, stream={"message_delay": "100ms"}
        ):
            streams = [emu.channel().unary_stream(LIST)(b"", timeout=5) for _ in range(2)]
            readers = [threading.Thread(target=list, args=(s,)) for s in streams]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join(5)
            wait_until(lambda: len(emu.calls()) == 2)
            assert sorted(c.faults for c in emu.calls()) == [(), ("drip",)]
        assert code_of(lambda: get(b"")) == OK
        assert emu.calls().last.faults == ("slow",)  # the slot was given back


# -- health -------------------------------------------------------------------------------------


def test_a_health_fault_reports_not_serving_during_its_window() -> None:
    rule = {
        "name": "catalog-down",
        "match": {"method": f"{CATALOG}/*"},
        "health": "NOT_SERVING",
        "when": {"window": {"start": "0s", "duration": "300ms"}},
    }
    serving = health_pb2.HealthCheckResponse.SERVING
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        health = health_pb2_grpc.HealthStub(emu.channel())

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service)).status

        wait_until(lambda: status(CATALOG) == health_pb2.HealthCheckResponse.NOT_SERVING)
        assert status(ORDERS) == serving and status("") == serving
        wait_until(lambda: status(CATALOG) == serving, timeout=5)
        assert status(ORDERS) == serving
        assert code_of(lambda: unary(emu)(b"")) == OK  # a health fault fails no calls


# -- journal, emu.fault() and reset() -----------------------------------------------------------


def test_the_journal_names_the_rules_that_fired() -> None:
    rules = [
        {"name": "slow", "match": {"method": f"{CATALOG}/GetProduct"}, "delay": {"fixed": "10ms"}},
        outage(name="first-fails", when={"calls": [1]}),
    ]
    with Emulator(protos=PROTOS, faults=rules) as emu:
        get = unary(emu)
        assert [code_of(lambda: get(b"")) for _ in range(2)] == [UNAVAILABLE, OK]
        assert code_of(lambda: unary(emu, PING)(b"")) == OK
        assert [c.faults for c in emu.calls()] == [("slow", "first-fails"), ("slow",), ()]


def test_emu_fault_rolls_back_and_reset_starts_counting_again() -> None:
    with Emulator(protos=PROTOS, faults=[outage(name="once", when={"calls": [1]})]) as emu:
        get, ping = unary(emu), unary(emu, PING)
        with emu.fault(
            name="ping-down", match={"method": f"{ORDERS}/Ping"}, abort={"code": "INTERNAL"}
        ) as handle:
            assert code_of(lambda: ping(b"")) == grpc.StatusCode.INTERNAL
            assert (handle.matched, handle.injected) == (1, 1)
            assert "ping-down" in emu.fault_stats()
        assert code_of(lambda: ping(b"")) == OK
        assert "ping-down" not in emu.fault_stats()

        assert [code_of(lambda: get(b"")) for _ in range(2)] == [UNAVAILABLE, OK]
        assert emu.fault_stats()["once"] == {"matched": 2, "injected": 1}
        emu.fault(name="left-over", match={"method": f"{ORDERS}/Ping"}, abort={"code": "INTERNAL"})
        emu.reset()
        assert emu.fault_stats() == {"once": {"matched": 0, "injected": 0}}
        assert len(emu.calls()) == 0
        assert [code_of(lambda: get(b"")) for _ in range(2)] == [UNAVAILABLE, OK]  # fires again
        assert code_of(lambda: ping(b"")) == OK  # emu.fault() rules are gone


def test_a_fault_handle_keeps_its_counts_after_the_block_and_reset() -> None:
    with Emulator(protos=PROTOS) as emu:
        ping = unary(emu, PING)
        rule = {"match": {"method": f"{ORDERS}/Ping"}, "abort": {"code": "INTERNAL"}}
        with emu.fault(name="ping-down", when={"calls": [1]}, **rule) as handle:
            assert [code_of(lambda: ping(b"")) for _ in range(3)] == [
                grpc.StatusCode.INTERNAL,
                OK,
                OK,
            ]
            assert handle.stats() == emu.fault_stats()["ping-down"] == {"matched": 3, "injected": 1}
        assert "ping-down" not in emu.fault_stats()  # only the rules in force
        assert (handle.matched, handle.injected) == (3, 1)
        assert handle.stats() == {"matched": 3, "injected": 1}
        left = emu.fault(name="left-over", **rule)  # never undone: reset() removes it
        assert code_of(lambda: ping(b"")) == grpc.StatusCode.INTERNAL
        emu.reset()
        assert handle.stats() == {"matched": 3, "injected": 1}
        assert left.stats() == {"matched": 1, "injected": 1}
        assert code_of(lambda: ping(b"")) == OK
        left.undo()  # again: nothing changes
        assert left.stats() == {"matched": 1, "injected": 1}
    assert handle.stats() == {"matched": 3, "injected": 1}  # the emulator has stopped


def test_a_fault_removed_while_a_call_is_delayed_does_not_fire_on_it() -> None:
    slow = {"name": "slow", "match": {"method": f"{ORDERS}/Ping"}, "delay": {"fixed": "300ms"}}
    with Emulator(protos=PROTOS, faults=[slow]) as emu:
        ping = unary(emu, PING)
        results: list[grpc.StatusCode] = []
        with emu.fault(
            name="down", match={"method": f"{ORDERS}/Ping"}, abort={"code": "INTERNAL"}
        ) as handle:
            caller = threading.Thread(target=lambda: results.append(code_of(lambda: ping(b""))))
            caller.start()
            # The call is inside `slow`'s delay, past the point where the rules were looked up.
            wait_until(lambda: emu.fault_stats()["slow"]["injected"] == 1)
        caller.join(timeout=10)
        assert results == [OK]  # the block had ended: `down` no longer applies
        assert handle.stats() == {"matched": 0, "injected": 0}
        assert emu.calls(f"{ORDERS}/Ping").last.faults == ("slow",)


def test_emu_fault_refuses_bad_rules() -> None:
    with Emulator(protos=PROTOS) as emu:
        with pytest.raises(ConfigError, match="wehn"):
            emu.fault(name="typo", abort={"code": "UNAVAILABLE"}, wehn={"calls": [1]})
        with pytest.raises(ConfigError, match=r"\(typo\)\.when\.probability"):
            emu.fault(name="typo", abort={"code": "UNAVAILABLE"}, when={"probability": 2})
        with pytest.raises(EmulatorError, match="health"):
            emu.fault(name="h", health="NOT_SERVING")
        with (
            emu.fault(name="dup", abort={"code": "UNAVAILABLE"}),
            pytest.raises(EmulatorError, match="already active"),
        ):
            emu.fault(name="dup", abort={"code": "UNAVAILABLE"})
        assert emu.fault_stats() == {}


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "entries", "expected"),
    [
        (
            "faults",
            [{"name": "r", "abort": {"code": "UNAVAILABLE"}, "wen": {}}],
            ["faults[0].wen", "unknown key", "'when'"],
        ),
        (
            "faults",
            [outage(name="r", when={"probability": 1.5})],
            ["faults[0] (r).when.probability", "1.5"],
        ),
        (
            "faults",
            [{"name": "r", "delay": {"fixed": "-5ms"}}],
            ["faults[0].delay.fixed", "'-5ms'"],
        ),
        (
            "faults",
            [outage(name="r", abort={"code": "UNAVAILABL"})],
            ["faults[0] (r).abort.code", "'UNAVAILABL'", "UNAVAILABLE"],
        ),
        (
            "faults",
            [{"name": "r", "delay": {"fixed": "5ms", "uniform": ["1ms", "2ms"]}}],
            ["faults[0] (r).delay", "exactly one of fixed, uniform, normal, lognormal"],
        ),
        (
            "faults",
            [{"name": "r", "delay": {"uniform": ["200ms", "100ms"]}}],
            ["faults[0] (r).delay.uniform", "low <= high"],
        ),
        (
            "faults",
            [{"name": "r", "delay": {"lognormal": {"median": "0ms", "sigma": 1}}}],
            ["faults[0] (r).delay.lognormal.median", "positive"],
        ),
        (
            "faults",
            [outage(name="a"), outage(name="a")],
            ["faults[1].name", "'a' is used by another fault"],
        ),
        (
            "faults",
            [{"name": "r"}],
            ["faults[0] (r)", "needs abort, delay, stream, deadline or health"],
        ),
        ("faults", [outage(name="r", when={"calls": [0]})], ["faults[0] (r).when", "count from 1"]),
        ("faults", [{"name": "r", "health": "DOWN"}], ["faults[0].health", "NOT_SERVING"]),
        ("faults", [{"abort": {"code": "UNAVAILABLE"}}], ["faults[0].name", "needs a name"]),
        (
            "faults",
            [outage(name="r", abort={"code": "UNAVAILABLE", "details": [{"retryDelay": "1s"}]})],
            ["faults[0] (r).abort.details[0]", "@type"],
        ),
        ("rate_limits", [{"name": "pings", "rps": 0}], ["rate_limits[0] (pings).rps", "positive"]),
        ("rate_limits", [{"rps": 1, "burst": 0}], ["rate_limits[0].burst", "at least 1"]),
    ],
    ids=[
        "unknown-key",
        "probability",
        "negative-duration",
        "status-code",
        "two-delays",
        "uniform-order",
        "lognormal-median",
        "duplicate-name",
        "no-effect",
        "calls-from-1",
        "health-status",
        "no-name",
        "detail-type",
        "rps",
        "burst",
    ],
)
def test_bad_fault_config_names_the_rule_and_key(
    section: str, entries: list[dict[str, Any]], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_mapping({section: entries})
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_emulate_check_points_at_the_line(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    good = textwrap.dedent(f"""\
        protos: [{PROTOS}]
        faults:
          - name: outage
            match: {{method: "{CATALOG}/*"}}
            when:
              probability: 0.5
            abort:
              code: UNAVAILABLE
              details:
                - {{"@type": type.googleapis.com/google.rpc.RetryInfo, retryDelay: 1s}}
        rate_limits:
          - {{match: {{method: "{ORDERS}/Ping"}}, rps: 5, burst: 2}}
        """)
    config.write_text(good)
    result = emulate("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for broken, line, key in (
        (
            good.replace("probability: 0.5", "probability: 1.5"),
            6,
            "faults[0] (outage).when.probability",
        ),
        (good.replace("code: UNAVAILABLE", "code: UNAVAILABL"), 8, "faults[0] (outage).abort.code"),
        (good.replace("RetryInfo", "NoSuchInfo"), 10, "faults[0] (outage).abort.details[0]"),
        (good.replace("rps: 5", "rps: 0"), 12, "rate_limits[0].rps"),
    ):
        config.write_text(broken)
        result = emulate("check", "--config", str(config))
        assert result.returncode == 2, result.stderr
        assert f"{config}:{line}: {key}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


# -- connection-level faults --------------------------------------------------------------------


def test_max_connection_age_sends_goaway_and_the_channel_reconnects() -> None:
    with Emulator(protos=PROTOS, server={"max_connection_age": "200ms"}) as emu:
        ping = unary(emu, PING)
        until = time.monotonic() + 1.2
        codes = []
        while time.monotonic() < until:
            codes.append(code_of(lambda: ping(b"", timeout=5)))
            time.sleep(0.01)
        assert set(codes) == {OK}
        peers = {c.peer for c in emu.calls()}
        assert len(peers) >= 2, peers  # new connections, new client ports


def test_max_concurrent_streams_queues_calls_on_a_connection() -> None:
    rule = {"name": "slow", "match": {"method": f"{ORDERS}/Ping"}, "delay": {"fixed": "100ms"}}
    with Emulator(protos=PROTOS, server={"max_concurrent_streams": 1}, faults=[rule]) as emu:
        ping = unary(emu, PING)
        futures = [ping.future(b"", timeout=5) for _ in range(3)]
        assert [f.code() for f in futures] == [OK] * 3
        starts = sorted(c.started_at for c in emu.calls())
        assert all((b - a).total_seconds() >= 0.08 for a, b in itertools.pairwise(starts))


def test_a_fault_on_a_header_matches_any_value_of_a_repeated_header() -> None:
    from emulator import Emulator

    rule = {
        "name": "evil-tenant",
        "match": {"method": "acme.shop.v1.Orders/Ping", "metadata": {"x-tenant": "evil"}},
        "abort": {"code": "UNAVAILABLE"},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        ping = emu.stub("acme.shop.v1.Orders").Ping
        for tenants in (["evil"], ["acme", "evil"], ["evil", "acme"]):
            with pytest.raises(grpc.RpcError) as info:
                ping({}, metadata=[("x-tenant", t) for t in tenants], timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        ping({}, metadata=[("x-tenant", "acme")], timeout=5)

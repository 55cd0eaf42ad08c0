"""One clock for everything scheduled by time: moving the emulator clock opens fault windows,
refills rate limits and flips health windows, with no sleeps."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import Emulator
from emulator.clock import Clock
from tests.conftest import PROTOS

CATALOG = "acme.shop.v1.Catalog"
GET = f"/{CATALOG}/GetProduct"
PING = "/acme.shop.v1.Orders/Ping"
OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return OK


def unary(emu: Emulator, path: str = GET) -> Callable[[], Any]:
    method = emu.channel().unary_unary(path)
    return lambda: method(b"", timeout=10)


def test_monotonic_moves_with_advance_stops_when_frozen_and_never_goes_back() -> None:
    clock = Clock()
    start = clock.monotonic()
    clock.advance(100)
    assert clock.monotonic() - start >= 100
    clock.freeze(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    frozen = clock.monotonic()
    assert clock.monotonic() == frozen
    clock.advance(5)
    assert clock.monotonic() == frozen + 5
    clock.advance(-50)  # moves the wall clock back; scheduled time never runs backwards
    assert clock.monotonic() == frozen + 5
    assert clock.now() == datetime.datetime(2029, 12, 31, 23, 59, 15, tzinfo=datetime.UTC)
    clock.reset()
    assert clock.monotonic() >= frozen + 5
    assert abs(clock.now() - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(seconds=5)


def test_advancing_the_clock_opens_and_closes_a_fault_window() -> None:
    rule = {
        "name": "later",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "when": {"window": {"start": "5s", "duration": "30s"}},
        "abort": {"code": "UNAVAILABLE"},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        get = unary(emu)
        assert code_of(get) == OK
        emu.clock.advance(10)
        assert code_of(get) == UNAVAILABLE
        emu.clock.advance(30)
        assert code_of(get) == OK
        emu.reset()  # rule windows count again from the reset
        assert code_of(get) == OK
        emu.clock.advance(6)
        assert code_of(get) == UNAVAILABLE


def test_a_frozen_clock_holds_a_window_open() -> None:
    rule = {
        "name": "brief",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "when": {"window": {"start": "0s", "duration": "50ms"}},
        "abort": {"code": "UNAVAILABLE"},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        emu.clock.freeze()
        get = unary(emu)
        started = time.monotonic()
        while time.monotonic() - started < 0.2:  # well past the window in real time
            assert code_of(get) == UNAVAILABLE
        emu.clock.advance(0.05)
        assert code_of(get) == OK


def test_advancing_the_clock_refills_a_rate_limit() -> None:
    limit = {"name": "slow-pings", "match": {"method": "acme.shop.v1.Orders/Ping"}, "rps": 0.1}
    with Emulator(protos=PROTOS, rate_limits=[limit]) as emu:
        ping = unary(emu, PING)
        assert code_of(ping) == OK
        assert code_of(ping) == EXHAUSTED  # the next token is 10 s away
        emu.clock.advance(10)
        assert code_of(ping) == OK
        assert code_of(ping) == EXHAUSTED


def test_advancing_the_clock_flips_a_health_window() -> None:
    rule = {
        "name": "catalog-down",
        "match": {"method": f"{CATALOG}/*"},
        "health": "NOT_SERVING",
        "when": {"window": {"start": "5s", "duration": "30s"}},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        health = health_pb2_grpc.HealthStub(emu.channel())

        def status(service: str = CATALOG) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service)).status  # type: ignore[no-any-return]

        assert status() == SERVING
        emu.clock.advance(10)
        assert status() == NOT_SERVING
        assert status("acme.shop.v1.Orders") == SERVING
        emu.clock.advance(30)
        assert status() == SERVING


def test_a_health_window_open_from_the_start_is_reported_from_the_first_check() -> None:
    rule = {
        "name": "down-at-first",
        "match": {"method": "*"},
        "health": "NOT_SERVING",
        "when": {"window": {"start": "0s", "duration": "10s"}},
    }
    with Emulator(protos=PROTOS, faults=[rule]) as emu:
        health = health_pb2_grpc.HealthStub(emu.channel())
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == NOT_SERVING
        emu.clock.advance(10)
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == SERVING


def test_advancing_the_clock_on_the_loop_flips_a_health_window() -> None:
    rule = {
        "name": "catalog-down",
        "match": {"method": f"{CATALOG}/*"},
        "health": "NOT_SERVING",
        "when": {"window": {"start": "60s", "duration": "30s"}},
    }

    async def main() -> None:
        async with Emulator(protos=PROTOS, faults=[rule]) as emu, emu.aio_channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=CATALOG)
            assert (await health.Check(request)).status == SERVING
            emu.clock.advance(61)  # on the server's own loop: it looks again soon after
            deadline = time.monotonic() + 5
            while (await health.Check(request)).status != NOT_SERVING:
                assert time.monotonic() < deadline, "the health window did not open"
                await asyncio.sleep(0.01)

    asyncio.run(main())

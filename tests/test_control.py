"""The control plane, one operation at a time, on a real server through `emu.control`:
overrides, faults and their counts, clock, state, health, journal queries, failures, reset."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import Behavior, Emulator, EmulatorError
from emulator.control import ControlPlane
from emulator.errors import ConfigError
from tests.conftest import PROTOS, reset_around

CATALOG = "acme.shop.v1.Catalog"
GET_PRODUCT = f"{CATALOG}/GetProduct"
HEALTH = health_pb2.HealthCheckResponse


@pytest.fixture(scope="module")
def shared() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, seed=3) as emu:
        yield emu


@pytest.fixture
def emu(shared: Emulator) -> Iterator[Emulator]:
    yield from reset_around(shared)


@pytest.fixture
def control(emu: Emulator) -> ControlPlane:
    return emu.control


def get(emu: Emulator, product_id: str = "p1", **kwargs: object) -> object:
    return emu.stub(CATALOG).GetProduct({"product_id": product_id}, **kwargs)


def status(emu: Emulator, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(emu.channel())
    return stub.Check(health_pb2.HealthCheckRequest(service=service)).status


def test_override_with_a_function_answers_until_undone(
    emu: Emulator, control: ControlPlane
) -> None:
    default = get(emu).name
    with control.override(GET_PRODUCT, lambda request, ctx: {"name": "overridden"}) as override:
        assert override.methods == (GET_PRODUCT,)
        assert get(emu).name == "overridden"
    assert get(emu).name == default


def test_override_with_a_behavior_class_and_reset_restores_it(
    emu: Emulator, control: ControlPlane
) -> None:
    class Catalog(Behavior):
        service = CATALOG

        def GetProduct(self, request, ctx):  # type: ignore[no-untyped-def]
            return {"name": f"class {request.product_id}"}

    default = get(emu).name
    control.override(Catalog)
    assert get(emu, "p9").name == "class p9"
    control.reset()
    assert get(emu).name == default


def test_override_refuses_an_unknown_method_and_a_missing_function(control: ControlPlane) -> None:
    with pytest.raises(
        EmulatorError, match=re.escape("did you mean 'acme.shop.v1.Catalog/GetProduct'")
    ):
        control.override("acme.shop.v1.Catalog/GetProdcut", lambda r, c: None)
    with pytest.raises(EmulatorError, match="needs the function"):
        control.override(GET_PRODUCT)


def test_fault_counts_survive_undo_and_reset(emu: Emulator, control: ControlPlane) -> None:
    with control.add_fault(
        {"name": "down", "match": {"method": GET_PRODUCT}, "abort": {"code": "UNAVAILABLE"}}
    ) as handle:
        assert control.fault_stats() == {"down": {"matched": 0, "injected": 0}}
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                get(emu)
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert handle.active
    assert not handle.active
    assert (handle.matched, handle.injected) == (2, 2)
    assert control.fault_stats() == {}  # only active rules
    get(emu)  # removed: the call goes through
    control.reset()
    assert handle.stats() == {"matched": 2, "injected": 2}


def test_fault_rules_are_checked_against_the_contracts(control: ControlPlane) -> None:
    with pytest.raises(ConfigError, match="matches no method"):
        control.add_fault(
            {"match": {"method": "acme.shop.v1.Catalg/*"}, "abort": {"code": "UNAVAILABLE"}}
        )
    with pytest.raises(ConfigError, match="no field"):
        control.add_fault(
            {
                "match": {"method": GET_PRODUCT, "request": {"product": "x"}},
                "abort": {"code": "UNAVAILABLE"},
            }
        )
    control.add_fault({"name": "once", "match": {"method": GET_PRODUCT}, "delay": {"fixed": 0}})
    with pytest.raises(EmulatorError, match="already active"):
        control.add_fault({"name": "once", "match": {"method": GET_PRODUCT}, "delay": {"fixed": 0}})


def test_reset_removes_faults_and_clears_journal_state_and_clock(
    emu: Emulator, control: ControlPlane
) -> None:
    control.add_fault({"match": {"method": GET_PRODUCT}, "abort": {"code": "NOT_FOUND"}})
    control.state["key"] = "value"
    control.clock.freeze(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    with pytest.raises(grpc.RpcError):
        get(emu)
    assert control.calls(GET_PRODUCT).count == 1
    control.reset()
    assert control.calls().count == 0
    assert control.state == {}
    assert control.clock.now().year != 2030
    get(emu)  # the fault is gone
    assert control.calls(CATALOG).count == 1


def test_verify_counts_matching_calls_and_reports_near_misses(
    emu: Emulator, control: ControlPlane
) -> None:
    get(emu, "p1")
    get(emu, "p2")
    assert control.verify(GET_PRODUCT, times=1, request={"product_id": "p2"}).count == 1
    with pytest.raises(AssertionError, match="p1"):
        control.verify(GET_PRODUCT, request={"product_id": "p3"})
    with pytest.raises(EmulatorError, match="no method"):
        control.calls("acme.shop.v1.Catalog/Nope")


def test_behavior_errors_are_kept_until_cleared(emu: Emulator, control: ControlPlane) -> None:
    def broken(request, ctx):  # type: ignore[no-untyped-def]
        raise ValueError("boom")

    control.override(GET_PRODUCT, broken)
    with pytest.raises(grpc.RpcError):
        get(emu)
    [(method, exc)] = control.behavior_errors
    assert method == GET_PRODUCT and isinstance(exc, ValueError)
    control.clear_behavior_errors()
    assert control.behavior_errors == []


def test_set_health_reports_a_status_until_reset(emu: Emulator, control: ControlPlane) -> None:
    emu.set_health(CATALOG, "not_serving")
    assert status(emu, CATALOG) == HEALTH.NOT_SERVING
    assert status(emu, "") == HEALTH.SERVING  # the server as a whole is untouched
    control.reset()
    assert status(emu, CATALOG) == HEALTH.SERVING


def test_set_health_errors_reach_a_sync_test(emu: Emulator) -> None:
    with pytest.raises(EmulatorError, match=re.escape("no service 'acme.shop.v1.Nope'")):
        emu.set_health("acme.shop.v1.Nope", "SERVING")


async def test_set_health_refuses_unknown_services_and_statuses() -> None:
    async with Emulator(protos=PROTOS) as emu:
        with pytest.raises(EmulatorError, match=re.escape("did you mean 'acme.shop.v1.Catalog'")):
            await emu.control.set_health("acme.shop.v1.Catalg", "SERVING")
        with pytest.raises(EmulatorError, match="use one of NOT_SERVING, SERVING, UNKNOWN"):
            await emu.control.set_health(CATALOG, "DOWN")
        with pytest.raises(EmulatorError, match=re.escape("await emu.control.set_health")):
            emu.set_health("", "NOT_SERVING")
        await emu.control.set_health("", "NOT_SERVING")
        emu.control.reset()  # on the loop itself: runs at the next turn
        async with emu.aio_channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
                if reply.status == HEALTH.SERVING:
                    break
            assert reply.status == HEALTH.SERVING


def test_overrides_of_one_method_undo_in_any_order(emu: Emulator, control: ControlPlane) -> None:
    default = get(emu).name
    first = control.override(GET_PRODUCT, lambda request, ctx: {"name": "A"})
    second = control.override(GET_PRODUCT, lambda request, ctx: {"name": "B"})
    assert get(emu).name == "B"
    first.undo()  # the older one goes: the newer still answers
    assert get(emu).name == "B"
    second.undo()
    assert get(emu).name == default
    first.undo()  # twice is harmless


def test_unnamed_faults_take_a_free_name_and_undone_ones_are_forgotten(
    control: ControlPlane,
) -> None:
    rule = {"match": {"method": GET_PRODUCT}, "delay": {"fixed": 0}}
    taken = control.add_fault({**rule, "name": "fault-1"})
    unnamed = control.add_fault(rule)
    assert unnamed.name == "fault-2"
    for _ in range(50):
        with control.add_fault(rule):
            pass
    assert set(control.fault_stats()) == {"fault-1", "fault-2"}
    assert len(control._faults) == 2  # undone handles are not kept until reset()
    taken.undo()
    unnamed.undo()

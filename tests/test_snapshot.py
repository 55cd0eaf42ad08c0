"""Swapping the served snapshot while the server runs: new contracts and behaviours answer the
next call, reflection and health follow, a call in flight ends on the snapshot it started on,
and a snapshot the config's checks refuse never serves."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import Behavior, BehaviorError, ConfigError, Emulator, EmulatorError
from emulator.contracts import Contracts, load_contracts

ECHO = "swap.v1.Echo"
EXTRA = "swap.v1.Extra"

V1 = """
syntax = "proto3";
package swap.v1;
message Msg { string text = 1; }
service Echo {
  rpc Say(Msg) returns (Msg);
  rpc Count(Msg) returns (stream Msg);
}
"""

# v2 adds a method to Echo and a service.
V2 = (
    V1.replace(
        "  rpc Count(Msg) returns (stream Msg);\n",
        "  rpc Count(Msg) returns (stream Msg);\n  rpc Shout(Msg) returns (Msg);\n",
    )
    + "service Extra { rpc Ping(Msg) returns (Msg); }\n"
)

# v3 renames Say: a config naming `swap.v1.Echo/Say` no longer fits it.
V3 = V1.replace("rpc Say(", "rpc Speak(")


def contracts_of(tmp_path: Path, name: str, text: str) -> Contracts:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "swap.proto").write_text(text)
    return load_contracts([folder])


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "swap.proto").write_text(V1)
    return folder


class EchoV1(Behavior):
    service = ECHO

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def Say(self, request: Any, ctx: Any) -> dict[str, str]:
        return {"text": "v1"}

    async def Count(self, request: Any, ctx: Any) -> AsyncIterator[dict[str, str]]:
        yield {"text": "v1 first"}
        await self.release.wait()
        yield {"text": "v1 second"}


class EchoV2(Behavior):
    service = ECHO

    def Say(self, request: Any, ctx: Any) -> dict[str, str]:
        return {"text": "v2"}

    def Shout(self, request: Any, ctx: Any) -> dict[str, str]:
        return {"text": request.text.upper()}


async def grpcurl(target: str, *args: str) -> str:
    """grpcurl, run without blocking the loop the server serves on."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "grpcurl"),  # installed with the test extras
        "-plaintext",
        target,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def health_status(emu: Emulator, service: str) -> int | grpc.StatusCode:
    stub = health_pb2_grpc.HealthStub(emu.aio_channel())
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return int(reply.status)


async def test_a_swap_serves_new_methods_and_services_while_a_stream_in_flight_ends_on_v1(
    tmp_path: Path, v1: Path
) -> None:
    behaviour = EchoV1()
    async with Emulator(protos=v1, behaviors=[behaviour]) as emu:
        echo = emu.stub(ECHO)
        assert (await echo.Say({})).text == "v1"
        stream = echo.Count({})
        assert (await stream.read()).text == "v1 first"  # in flight, waiting in the behaviour

        new = emu.server.build_snapshot([EchoV2()], contracts=contracts_of(tmp_path, "v2", V2))
        old = await emu.server.swap(new)
        assert emu.server.snapshot is new and old.contracts.services.keys() == {ECHO}

        echo = emu.stub(ECHO)
        assert (await echo.Say({})).text == "v2"
        assert (await echo.Shout({"text": "hey"})).text == "HEY"
        assert (await emu.stub(EXTRA).Ping({"text": "x"})).text == "x"  # a default answers
        # The stream started on v1 ends there: the v1 behaviour's second message, then OK.
        behaviour.release.set()
        assert (await stream.read()).text == "v1 second"
        assert await stream.read() is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK

        listed = (await grpcurl(emu.target, "list")).split()
        assert EXTRA in listed and ECHO in listed
        methods = (await grpcurl(emu.target, "list", ECHO)).split()
        assert f"{ECHO}.Shout" in methods
        assert "rpc Ping" in await grpcurl(emu.target, "describe", EXTRA)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await health_status(emu, EXTRA) == serving
        assert await health_status(emu, ECHO) == serving

        counted = [c.method for c in emu.calls()]
        assert counted.count(f"{ECHO}/Say") == 2 and f"{ECHO}/Count" in counted


async def test_a_call_held_in_the_chain_over_a_swap_is_answered_by_its_first_snapshot(
    tmp_path: Path, v1: Path
) -> None:
    """The responder is picked after the chain (here a fault's delay): still the old one's."""
    slow = {"name": "slow", "match": {"method": f"{ECHO}/Say"}, "delay": {"fixed": "500ms"}}
    async with Emulator(protos=v1, behaviors=[EchoV1()], faults=[slow]) as emu:
        held = asyncio.ensure_future(emu.stub(ECHO).Say({}))
        deadline = asyncio.get_running_loop().time() + 10
        while emu.fault_stats()["slow"]["injected"] == 0:  # the call is in its delay
            assert asyncio.get_running_loop().time() < deadline, "the call never started"
            await asyncio.sleep(0.005)
        await emu.server.swap(
            emu.server.build_snapshot([EchoV2()], contracts=contracts_of(tmp_path, "v2", V2))
        )
        assert (await held).text == "v1"
        assert (await emu.stub(ECHO).Say({})).text == "v2"


async def test_a_swap_the_config_refuses_leaves_the_old_snapshot_serving(
    tmp_path: Path, v1: Path
) -> None:
    async with Emulator(protos=v1, behaviors=[EchoV1()], max_duration={f"{ECHO}/Say": 30}) as emu:
        before = emu.server.snapshot
        v3 = contracts_of(tmp_path, "v3", V3)
        with pytest.raises(BehaviorError, match="has no method 'Say'"):
            emu.server.build_snapshot(contracts=v3)  # the server's behaviours do not fit v3
        new = emu.server.build_snapshot([], contracts=v3)
        with pytest.raises(ConfigError) as refused:
            await emu.server.swap(new)
        assert "max_duration" in str(refused.value)
        assert f'"{ECHO}/Say" matches no method' in str(refused.value)
        assert emu.server.snapshot is before
        assert (await emu.stub(ECHO).Say({})).text == "v1"
        assert (await grpcurl(emu.target, "list", ECHO)).split() == [f"{ECHO}.Count", f"{ECHO}.Say"]


async def test_services_a_swap_removes_are_gone_from_calls_reflection_and_health(
    tmp_path: Path, v1: Path
) -> None:
    async with Emulator(protos=v1, behaviors=[EchoV1()]) as emu:
        await emu.server.swap(emu.server.build_snapshot(contracts=contracts_of(tmp_path, "v2", V2)))
        extra = emu.stub(EXTRA)
        assert (await extra.Ping({"text": "x"})).text == "x"
        await emu.server.swap(emu.server.build_snapshot(contracts=load_contracts([v1])))
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await extra.Ping({"text": "x"})
        assert gone.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert EXTRA not in (await grpcurl(emu.target, "list")).split()
        assert await health_status(emu, EXTRA) == grpc.StatusCode.NOT_FOUND
        assert await health_status(emu, ECHO) == health_pb2.HealthCheckResponse.SERVING


async def test_limits_by_pattern_reach_the_methods_a_swap_adds(tmp_path: Path, v1: Path) -> None:
    class SlowShout(Behavior):
        service = ECHO

        async def Shout(self, request: Any, ctx: Any) -> dict[str, str]:
            await asyncio.sleep(30)
            return {}

    async with Emulator(protos=v1, max_duration={f"{ECHO}/*": 0.2}) as emu:
        await emu.server.swap(
            emu.server.build_snapshot([SlowShout()], contracts=contracts_of(tmp_path, "v2", V2))
        )
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await emu.stub(ECHO).Shout({})
        assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "max_duration" in str(cut.value.details())


async def test_a_health_fault_covers_the_services_a_swap_adds(tmp_path: Path, v1: Path) -> None:
    down = {"name": "down", "match": {"method": "*"}, "health": "NOT_SERVING"}
    async with Emulator(protos=v1, faults=[down]) as emu:
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert await health_status(emu, ECHO) == not_serving
        await emu.server.swap(emu.server.build_snapshot(contracts=contracts_of(tmp_path, "v2", V2)))
        assert await health_status(emu, EXTRA) == not_serving
        assert await health_status(emu, ECHO) == not_serving  # kept, not reset to SERVING


async def test_the_new_snapshot_follows_a_frozen_clock(tmp_path: Path, v1: Path) -> None:
    async with Emulator(protos=v1) as emu:
        emu.clock.freeze(datetime.datetime(2030, 1, 2, tzinfo=datetime.UTC))
        frozen_range = emu.server.defaults.time_range
        await emu.server.swap(emu.server.build_snapshot(contracts=contracts_of(tmp_path, "v2", V2)))
        assert emu.server.defaults.time_range == frozen_range
        emu.clock.reset()
        assert emu.server.defaults.time_range != frozen_range  # the new one hears the clock


async def test_overrides_stay_with_the_snapshot_they_were_made_in(tmp_path: Path, v1: Path) -> None:
    async with Emulator(protos=v1, behaviors=[EchoV1()]) as emu:
        with emu.override(f"{ECHO}/Say", lambda request, ctx: {"text": "overridden"}):
            assert (await emu.stub(ECHO).Say({})).text == "overridden"
            await emu.server.swap(emu.server.build_snapshot())
            assert (await emu.stub(ECHO).Say({})).text == "v1"  # the new registry: no override
        registry = emu.server.registry
        impl = registry.get(f"/{ECHO}/Say")
        registry.replace(None, f"/{ECHO}/Say")
        assert (await emu.stub(ECHO).Say({})).text not in ("v1", "overridden")  # the default
        registry.restore()
        assert registry.get(f"/{ECHO}/Say") is impl


async def test_a_snapshot_serves_only_the_server_it_was_built_for(v1: Path) -> None:
    async with Emulator(protos=v1) as first, Emulator(protos=v1) as second:
        with pytest.raises(EmulatorError, match="another server"):
            await first.server.swap(second.server.build_snapshot())


def test_a_swap_before_start_is_what_start_serves(tmp_path: Path, v1: Path) -> None:
    emu = Emulator(protos=v1)
    new = emu.server.build_snapshot(contracts=contracts_of(tmp_path, "v2", V2))
    asyncio.run(emu.server.swap(new))
    with emu:
        assert emu.stub(EXTRA).Ping({"text": "y"}).text == "y"
        health = health_pb2_grpc.HealthStub(emu.channel())
        reply = health.Check(health_pb2.HealthCheckRequest(service=EXTRA))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_snapshot_built_again_runs_the_changed_behaviour_file(
    tmp_path: Path, v1: Path
) -> None:
    """What hot reload will do: the same protos and behaviour paths, loaded again."""
    file = tmp_path / "echo.py"
    code = (
        "from emulator import Behavior\n\n\nclass Echo(Behavior):\n"
        f'    service = "{ECHO}"\n\n    def Say(self, request, ctx):\n'
        '        return {{"text": "{answer}"}}\n'
    )
    file.write_text(code.format(answer="before"))
    async with Emulator(protos=v1, behaviors=file) as emu:
        assert (await emu.stub(ECHO).Say({})).text == "before"
        file.write_text(code.format(answer="after!"))
        await emu.server.swap(emu.server.build_snapshot())
        assert (await emu.stub(ECHO).Say({})).text == "after!"


# v4 gives Say another output type: records from before the swap keep theirs.
V4 = V1.replace(
    "message Msg { string text = 1; }",
    "message Msg { string text = 1; }\nmessage Out { int32 n = 1; }",
).replace("rpc Say(Msg) returns (Msg);", "rpc Say(Msg) returns (Out);")


async def test_journal_records_from_before_a_swap_decode_with_their_own_types(
    tmp_path: Path, v1: Path
) -> None:
    async with Emulator(protos=v1, behaviors=[EchoV1()]) as emu:
        await emu.stub(ECHO).Say({"text": "hi"})
        new = emu.server.build_snapshot([], contracts=contracts_of(tmp_path, "v4", V4))
        await emu.server.swap(new)
        await emu.stub(ECHO).Say({"text": "again"})
        before, after = emu.calls(f"{ECHO}/Say")
        assert before.response.DESCRIPTOR.full_name == "swap.v1.Msg"
        assert before.response.text == "v1"
        assert after.response.DESCRIPTOR.full_name == "swap.v1.Out"


async def test_reset_leaves_a_service_a_swap_removed_unknown_to_health(
    tmp_path: Path, v1: Path
) -> None:
    async with Emulator(protos=v1) as emu:
        await emu.control.set_health(ECHO, "NOT_SERVING")
        without = V1.replace("service Echo", "service Other")
        await emu.server.swap(
            emu.server.build_snapshot([], contracts=contracts_of(tmp_path, "x", without))
        )
        emu.reset()
        for _ in range(3):
            await asyncio.sleep(0)  # reset() on the loop applies health at the next turns
        assert await health_status(emu, ECHO) == grpc.StatusCode.NOT_FOUND
        assert await health_status(emu, "") == health_pb2.HealthCheckResponse.SERVING

"""Methods unimplemented on purpose (`unimplemented`, `unimplemented_hidden`): UNIMPLEMENTED for
every RPC kind, reflection with or without them (grpcurl), health, and bad patterns refused."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import Behavior, Emulator
from emulator.call import Call
from emulator.contracts.model import MethodSpec
from emulator.errors import ConfigError, RpcAbort
from emulator.respond import Exchange
from emulator.respond.unimplemented import UnimplementedResponder
from emulator.runtime.reflection import _without
from tests.conftest import BEHAVIORS, PROTOS, TEST_PROTOS, EmulateProcess, emulate

INTEROP = TEST_PROTOS / "interop"
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
ORDERS = "acme.shop.v1.Orders"
CATALOG = "acme.shop.v1.Catalog"


def grpcurl(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", target, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        result = call() if callable(call) else call
        if hasattr(result, "__iter__") and not hasattr(result, "SerializeToString"):
            list(result)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


# -- gRPC interop ----------------------------------------------------------------------------


def test_interop_unimplemented_service_and_method() -> None:
    unimplemented = [
        "grpc.testing.UnimplementedService/*",
        "grpc.testing.TestService/UnimplementedCall",
    ]
    with Emulator(protos=INTEROP, unimplemented=unimplemented) as emu:
        empty = emu._server.contracts.methods["/grpc.testing.TestService/EmptyCall"].input_class
        with grpc.insecure_channel(emu.target) as channel:
            for path, pattern in [
                ("/grpc.testing.UnimplementedService/UnimplementedCall", unimplemented[0]),
                ("/grpc.testing.TestService/UnimplementedCall", unimplemented[1]),
            ]:
                call = channel.unary_unary(path, request_serializer=empty.SerializeToString)
                with pytest.raises(grpc.RpcError) as caught:
                    call(empty(), timeout=10)
                assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
                assert caught.value.details() == (
                    f"{path[1:]} is marked unimplemented in the emulator's configuration "
                    f'(unimplemented: "{pattern}")'
                )
            # The rest of the service still answers.
            call = channel.unary_unary("/grpc.testing.TestService/EmptyCall")
            assert call(b"", timeout=10) == b""


# -- every RPC kind ----------------------------------------------------------------------------


class Orders(Behavior):
    service = ORDERS

    def CreateOrder(self, request, ctx):
        raise AssertionError("an unimplemented method never runs its behaviour")


@pytest.fixture(scope="module")
def shop() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, behaviors=[Orders], unimplemented=[f"{ORDERS}/*"]) as emu:
        yield emu


def test_every_rpc_kind_answers_unimplemented(shop: Emulator) -> None:
    orders = shop.stub(ORDERS)
    calls = {
        "CreateOrder": lambda: orders.CreateOrder({}),
        "UploadLineItems": lambda: orders.UploadLineItems(iter([{}, {}])),
        "Chat": lambda: orders.Chat(iter([{}])),
        "WatchOrder": lambda: orders.WatchOrder({}),
        "Ping": lambda: orders.Ping({}),
    }
    for name, call in calls.items():
        code, details = _code(call)
        assert code is grpc.StatusCode.UNIMPLEMENTED, name
        assert details == (
            f"{ORDERS}/{name} is marked unimplemented in the emulator's configuration "
            f'(unimplemented: "{ORDERS}/*")'
        )
    # The other service is untouched, and the journal shows what the client saw.
    assert shop.stub(CATALOG).GetProduct({"product_id": "p1"}).product_id == "p1"
    record = shop.calls(f"{ORDERS}/CreateOrder").last
    assert record is not None
    assert record.code is grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_methods_stay_listed_in_reflection_and_health(shop: Emulator) -> None:
    listed = grpcurl(shop.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert ORDERS in listed.stdout.split()
    methods = grpcurl(shop.target, "list", ORDERS)
    assert f"{ORDERS}.CreateOrder" in methods.stdout.split()
    with grpc.insecure_channel(shop.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=ORDERS), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_behaviour_of_an_unimplemented_method_is_named_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="emulator"),
        Emulator(protos=PROTOS, behaviors=[Orders], unimplemented=[f"{ORDERS}/CreateOrder"]),
    ):
        pass
    assert any(
        "acme.shop.v1.Orders/CreateOrder" in r.getMessage() and "never runs" in r.getMessage()
        for r in caplog.records
    )


# -- hidden from reflection --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hidden() -> Iterator[Emulator]:
    with Emulator(
        protos=PROTOS, unimplemented_hidden=[f"{ORDERS}/*", f"{CATALOG}/UpdateProduct"]
    ) as emu:
        yield emu


def test_a_hidden_service_is_gone_from_reflection(hidden: Emulator) -> None:
    listed = grpcurl(hidden.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [
        CATALOG,
        "emulator.admin.v1.Admin",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    described = grpcurl(hidden.target, "describe", ORDERS)
    assert described.returncode != 0
    assert "not found" in described.stderr.lower()
    # Its messages stay: other services may use them.
    message = grpcurl(hidden.target, "describe", "acme.shop.v1.Order")
    assert message.returncode == 0, message.stderr
    code, details = _code(lambda: hidden.stub(ORDERS).CreateOrder({}))
    assert code is grpc.StatusCode.UNIMPLEMENTED
    assert f'(unimplemented_hidden: "{ORDERS}/*")' in details


def test_a_hidden_method_is_gone_from_its_service(hidden: Emulator) -> None:
    methods = grpcurl(hidden.target, "list", CATALOG)
    assert methods.returncode == 0, methods.stderr
    assert methods.stdout.split() == [
        f"{CATALOG}.GetCategoryTree",
        f"{CATALOG}.GetProduct",
        f"{CATALOG}.ListProducts",
    ]
    described = grpcurl(hidden.target, "describe", CATALOG)
    assert "UpdateProduct" not in described.stdout
    # The comments stay with their own methods, although the hidden one's place is gone.
    tree = grpcurl(hidden.target, "describe", f"{CATALOG}.GetCategoryTree")
    assert "A category tree: a recursive message." in tree.stdout
    assert "field mask" not in tree.stdout
    gone = grpcurl(hidden.target, "describe", f"{CATALOG}.UpdateProduct")
    assert gone.returncode != 0
    code, _ = _code(lambda: hidden.stub(CATALOG).UpdateProduct({}))
    assert code is grpc.StatusCode.UNIMPLEMENTED
    assert hidden.stub(CATALOG).GetProduct({"product_id": "p1"}).product_id == "p1"


def test_health_does_not_know_a_hidden_service(hidden: Emulator) -> None:
    with grpc.insecure_channel(hidden.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service=ORDERS), timeout=10)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=ORDERS), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()
        # A service with one hidden method is still there.
        reply = health.Check(health_pb2.HealthCheckRequest(service=CATALOG), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_emulate_takes_unimplemented_from_the_environment() -> None:
    env = {"EMULATOR_UNIMPLEMENTED_HIDDEN": f"{ORDERS}/*,{CATALOG}/UpdateProduct"}
    with EmulateProcess("--proto", str(PROTOS), env=env) as proc:
        listed = grpcurl(proc.target, "list")
        assert listed.returncode == 0, listed.stderr
        assert ORDERS not in listed.stdout.split()
        with grpc.insecure_channel(proc.target) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(f"/{CATALOG}/UpdateProduct")(b"", timeout=10)
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        proc.stop()


# -- bad patterns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "unimplemented:\n  - acme.shop.v1.Order/*\n",
            'unimplemented[0]: "acme.shop.v1.Order/*" matches no method; '
            'did you mean "acme.shop.v1.Orders/*"?',
        ),
        (
            "unimplemented_hidden:\n  - acme.shop.v1.Catalog/GetProdcut\n",
            'unimplemented_hidden[0]: "acme.shop.v1.Catalog/GetProdcut" matches no method; '
            'did you mean "acme.shop.v1.Catalog/GetProduct"?',
        ),
        (
            "unimplemented:\n  - grpc.health.v1.Health/*\n",
            'unimplemented[0]: "grpc.health.v1.Health/*" matches only the built-in health and '
            "reflection services",
        ),
        (
            "unimplemented: {acme.shop.v1.Orders/*: true}\n",
            "unimplemented: expected a list, got dict",
        ),
    ],
)
def test_a_bad_pattern_is_refused_naming_the_key(tmp_path: Path, yaml: str, expected: str) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text(yaml)
    result = emulate("check", "--proto", str(PROTOS), "--config", str(config))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert expected in result.stderr


# -- the responder and the reflection filter, alone ----------------------------------------------


@pytest.fixture(scope="module")
def specs() -> dict[str, MethodSpec]:
    with Emulator(protos=PROTOS) as emu:
        return dict(emu._server.contracts.methods)


def test_the_responder_knows_what_its_patterns_name() -> None:
    paths = ["/a.S/One", "/a.S/Two", "/b.T/Three", "/b.U/Four"]
    responder = UnimplementedResponder(paths, ["a.S/*", "*/Four"], ["b.T/Three", "a.S/One"])
    assert set(responder.messages) == set(paths)
    assert responder.messages["/a.S/One"].endswith('(unimplemented: "a.S/*")')
    assert responder.hidden == {"/b.T/Three", "/a.S/One"}
    assert responder.hidden_services == {"b.T"}  # a.S keeps a method in reflection
    assert responder
    assert not UnimplementedResponder(paths)


async def test_the_responder_answers_only_the_calls_it_names(specs: dict[str, MethodSpec]) -> None:
    get, listing = specs[f"/{CATALOG}/GetProduct"], specs[f"/{CATALOG}/ListProducts"]
    responder = UnimplementedResponder(list(specs), [f"{CATALOG}/GetProduct"])
    assert responder.pick(Call(listing, (), "ipv4:127.0.0.1:1", None)) is None
    call = Call(get, (), "ipv4:127.0.0.1:1", None)
    answer = responder.pick(call)
    assert answer is not None
    with pytest.raises(RpcAbort) as caught:
        # It answers before reading anything: the exchange needs no chain nor context.
        await anext(answer(Exchange(call, None, None)))  # type: ignore[arg-type]
    assert caught.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.message.startswith(f"{CATALOG}/GetProduct is marked unimplemented")


def test_a_pattern_for_builtin_services_only_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        UnimplementedResponder(["/a.S/One"], ["*/Watch"])
    assert caught.value.key == "unimplemented[0]"


def test_the_reflection_filter_renumbers_comments() -> None:
    with Emulator(protos=PROTOS) as emu:
        contracts = emu._server.contracts
    name = next(n for n in contracts.file_protos if n.endswith("catalog.proto"))
    proto = contracts.file_protos[name]
    symbols: set[str] = set()
    assert _without(proto, {"/acme.shop.v1.Orders/Ping"}, symbols) is None
    stripped = _without(proto, {f"/{CATALOG}/UpdateProduct"}, symbols)
    assert stripped is not None
    assert symbols == {f"{CATALOG}.UpdateProduct"}
    assert [m.name for m in stripped.service[0].method] == [
        "GetProduct",
        "ListProducts",
        "GetCategoryTree",
    ]
    comments = {
        tuple(loc.path): loc.leading_comments.strip()
        for loc in stripped.source_code_info.location
        if loc.leading_comments
    }
    assert comments[(6, 0, 2, 2)] == "A category tree: a recursive message."
    assert proto.service[0].method[2].name == "UpdateProduct"  # the original is untouched
    every = {f"/{CATALOG}/{m.name}" for m in proto.service[0].method}
    gone = _without(proto, every, symbols)
    assert gone is not None
    assert len(gone.service) == 0
    assert CATALOG in symbols
    assert all(loc.path[:1] != [6] for loc in gone.source_code_info.location)


def test_the_banner_marks_unimplemented_methods_and_warns_after_it() -> None:
    args = ("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS), "--log-stream", "stdout")
    more = ("--unimplemented", "acme.shop.v1.Orders/*")
    with EmulateProcess(
        *args, *more, "--unimplemented-hidden", "acme.shop.v1.Catalog/UpdateProduct"
    ) as proc:
        assert proc.proc.stdout is not None
        # The warnings follow the banner (read them before stop(): communicate() would miss
        # lines already in the pipe's read buffer).
        warnings = [proc.proc.stdout.readline() for _ in range(3)]
        code, out, _ = proc.stop()
    assert code == 0
    out += "".join(warnings)
    assert "  acme.shop.v1.Orders (5 methods, unimplemented)\n" in out
    assert (
        "acme.shop.v1.Catalog (4 methods, behaviours: GetProduct, ListProducts, "
        "unimplemented: UpdateProduct)" in out
    )
    assert "Orders/CreateOrder (Orders.CreateOrder at" in out  # its behaviour never runs: said

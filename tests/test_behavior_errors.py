"""A behaviour that raises answers its caller UNKNOWN (the server keeps serving) and fails the test:
`Emulator` raises `BehaviorFailedError` when its block ends, unless told not to. The pytest
fixture's side is in tests/test_pytest_plugin.py."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from emulator import Behavior, BehaviorFailedError, Emulator, RpcAbort
from tests.conftest import PROTOS

CATALOG = "acme.shop.v1.Catalog"
GET_PRODUCT = f"{CATALOG}/GetProduct"
LIST_PRODUCTS = f"{CATALOG}/ListProducts"
CATEGORY_TREE = f"{CATALOG}/GetCategoryTree"


class Buggy(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        if request.product_id == "abort":
            raise RpcAbort(grpc.StatusCode.NOT_FOUND, "no such product")
        return {"product_id": {"p1": "x"}[request.product_id]}  # KeyError for any other id

    async def ListProducts(self, request, ctx):
        yield {"product_id": "first"}
        raise RuntimeError("the stream broke")

    def GetCategoryTree(self, request, ctx):  # @wrong-type
        return 42  # not a Category


def fail_call(emu: Emulator, product_id: str = "p2") -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failed:
        emu.stub(CATALOG).GetProduct({"product_id": product_id})
    code: grpc.StatusCode = failed.value.code()
    return code


def test_the_end_of_the_block_raises_what_a_behaviour_raised() -> None:
    with (
        pytest.raises(BehaviorFailedError) as raised,
        Emulator(protos=PROTOS, behaviors=[Buggy]) as emu,
    ):
        assert fail_call(emu) == grpc.StatusCode.UNKNOWN
        assert emu.stub(CATALOG).GetProduct({"product_id": "p1"}).product_id == "x"
    error = raised.value
    assert str(error).splitlines()[:2] == [
        "1 call(s) failed because a behaviour raised (the callers got UNKNOWN or INTERNAL):",
        f"  {GET_PRODUCT}: KeyError: 'p2'",
    ]
    assert "raise_behavior_errors=False" in str(error)
    assert isinstance(error.__cause__, KeyError)
    assert [(method, type(exc)) for method, exc in error.failures] == [(GET_PRODUCT, KeyError)]


def test_streams_and_wrong_return_types_count_too() -> None:
    with (
        pytest.raises(BehaviorFailedError) as raised,
        Emulator(protos=PROTOS, behaviors=[Buggy]) as emu,
    ):
        with pytest.raises(grpc.RpcError) as failed:
            list(emu.stub(CATALOG).ListProducts({}))
        assert failed.value.code() == grpc.StatusCode.UNKNOWN
        with pytest.raises(grpc.RpcError) as failed:
            emu.stub(CATALOG).GetCategoryTree({})
        assert failed.value.code() == grpc.StatusCode.INTERNAL
    lines = str(raised.value).splitlines()
    assert lines[1] == f"  {LIST_PRODUCTS}: RuntimeError: the stream broke"
    assert lines[2].startswith(f"  {CATEGORY_TREE}: ReturnTypeError: Buggy.GetCategoryTree")


async def test_async_with_raises_too() -> None:
    with pytest.raises(BehaviorFailedError, match="KeyError: 'p3'"):
        async with Emulator(protos=PROTOS, behaviors=[Buggy]) as emu:
            with pytest.raises(grpc.RpcError):
                await emu.stub(CATALOG).GetProduct({"product_id": "p3"})


def test_the_blocks_own_exception_wins() -> None:
    with pytest.raises(ZeroDivisionError), Emulator(protos=PROTOS, behaviors=[Buggy]) as emu:
        fail_call(emu)
        1 / 0  # noqa: B018


def test_aborts_and_bad_requests_are_no_failures() -> None:
    with Emulator(protos=PROTOS, behaviors=[Buggy]) as emu:
        assert fail_call(emu, "abort") == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as bad:
            emu.channel().unary_unary(f"/{GET_PRODUCT}")(b"\xff\xff", timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert emu.behavior_errors == []


def test_raise_behavior_errors_false_opts_out() -> None:
    with Emulator(protos=PROTOS, behaviors=[Buggy], raise_behavior_errors=False) as emu:
        fail_call(emu)
        fail_call(emu, "p4")
    assert [(m, str(e)) for m, e in emu.behavior_errors] == [
        (GET_PRODUCT, "'p2'"),
        (GET_PRODUCT, "'p4'"),
    ]


def test_reset_forgets_failures_and_check_raises_at_once() -> None:
    with Emulator(protos=PROTOS, behaviors=[Buggy]) as emu:
        fail_call(emu)
        emu.reset()
        assert emu.behavior_errors == []
        emu.check_behavior_errors()  # nothing to raise
        fail_call(emu, "p5")
        with pytest.raises(BehaviorFailedError, match="KeyError: 'p5'"):
            emu.check_behavior_errors()
        assert emu.behavior_errors == []  # raised once, then forgotten


# -- where it went wrong: the behaviour's method and line -----------------------------------------


def line_of(mark: str) -> str:
    """`file:line` of the line of this file marked `# @mark`, the file as the emulator shows it
    (relative to the working directory), so the tests survive edits above them."""
    text = Path(__file__).read_text().splitlines()
    (line,) = [n for n, source in enumerate(text, 1) if source.endswith(f"# @{mark}")]
    path = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return f"{path}:{line}"


def _lookup(product_id: str) -> str:
    return {"p1": "x"}[product_id]


class Located(Behavior):
    service = CATALOG

    def GetProduct(self, request, ctx):
        if request.product_id == "long":
            raise ValueError("x" * 5000)  # @long
        return {"product_id": _lookup(request.product_id)}  # the helper raises # @helper

    def ListProducts(self, request, ctx):
        yield {"product_id": "first"}
        raise RuntimeError("sync stream broke")  # @stream

    async def GetCategoryTree(self, request, ctx):
        raise SystemExit(4)  # a BaseException out of async code # @exit


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code(), failed.value.details() or ""


@pytest.fixture(scope="module")
def located() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, behaviors=[Located], raise_behavior_errors=False) as emu:
        yield emu


UNKNOWN_CASES = {  # method: (request, what the caller reads, which line)
    "GetProduct": ({"product_id": "p9"}, "KeyError: 'p9'", "helper"),
    "ListProducts": ({}, "RuntimeError: sync stream broke", "stream"),
    "GetCategoryTree": ({}, "SystemExit: 4", "exit"),
}


@pytest.mark.parametrize("method", list(UNKNOWN_CASES))
def test_unknown_names_the_behaviours_method_and_line(
    located: Emulator, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    request, raised, mark = UNKNOWN_CASES[method]
    where = f"Located.{method} at {line_of(mark)}"
    stub = located.stub(CATALOG)
    with caplog.at_level(logging.ERROR, logger="emulator"):
        code, details = status_of(lambda: list(getattr(stub, method)(request)))
    assert (code, details) == (grpc.StatusCode.UNKNOWN, f"{raised} (in {where})")
    assert located.calls(f"{CATALOG}/{method}").last.details == details
    logged = [r.getMessage() for r in caplog.records]
    exception = raised.partition(":")[0]
    assert f"{CATALOG}/{method}: behaviour raised {exception} in {where}" in logged


def test_a_long_message_is_cut_but_keeps_the_place(located: Emulator) -> None:
    code, details = status_of(lambda: located.stub(CATALOG).GetProduct({"product_id": "long"}))
    assert code == grpc.StatusCode.UNKNOWN
    assert details.startswith("ValueError: xxx") and "more characters cut" in details
    assert details.endswith(f"(in Located.GetProduct at {line_of('long')})")
    assert len(details.encode()) <= 2048


def test_an_override_that_raises_names_its_own_line(located: Emulator) -> None:
    def broken(request, ctx):  # type: ignore[no-untyped-def]
        raise LookupError("not in the fixture")  # @override

    with located.override(GET_PRODUCT, broken):
        _, details = status_of(lambda: located.stub(CATALOG).GetProduct({"product_id": "p1"}))
    name = "test_an_override_that_raises_names_its_own_line.<locals>.broken"
    assert details == f"LookupError: not in the fixture (in {name} at {line_of('override')})"


def test_a_wrong_return_type_names_the_methods_line() -> None:
    with Emulator(protos=PROTOS, behaviors=[Buggy], raise_behavior_errors=False) as emu:
        code, details = status_of(lambda: emu.stub(CATALOG).GetCategoryTree({}))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith(f"Buggy.GetCategoryTree at {line_of('wrong-type')} returned int")

"""A behaviour that raises answers its caller UNKNOWN (the server keeps serving) and fails the test:
`Emulator` raises `BehaviorFailedError` when its block ends, unless told not to. The pytest
fixture's side is in tests/test_pytest_plugin.py."""

from __future__ import annotations

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

    def GetCategoryTree(self, request, ctx):
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

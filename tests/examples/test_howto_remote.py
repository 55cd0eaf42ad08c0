"""docs/remote.md: driving a running emulator (here `emulate` as a subprocess) from Python."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import BEHAVIORS, PROTOS, EmulateProcess


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with EmulateProcess("--proto", str(PROTOS), "--behaviors", str(BEHAVIORS)) as served:
        yield served.target


def test_the_client(target: str) -> None:
    # region client
    from emulator import EmulatorClient

    with EmulatorClient(target, session=f"checkout-{uuid.uuid4().hex}") as emu:
        emu.wait_until_ready(timeout=30)
        catalog = emu.stub("acme.shop.v1.Catalog")  # calls carry the session header
        with emu.stub_for(
            "acme.shop.v1.Catalog/GetProduct",
            match={"request": {"product_id": "p1"}},
            respond={"message": {"stock_count": 0}},
        ) as stub:
            assert catalog.GetProduct({"product_id": "p1"}).stock_count == 0
        assert stub.answered == 1
        with emu.fault(match={"method": "acme.shop.v1.Orders/*"}, abort={"code": "UNAVAILABLE"}):
            ...  # every Orders call of this session fails here
        emu.assert_called("acme.shop.v1.Catalog/GetProduct", times=1, request={"product_id": "p1"})
        print(emu.calls().describe())  # the session's calls, decoded with the served contracts
        emu.reset()  # this session's stubs, faults, scenarios and calls; nobody else's
    # endregion
    with EmulatorClient(target) as operator:
        assert operator.stubs.stats() == []


def test_errors(target: str) -> None:
    from emulator import ConfigError, EmulatorClient

    with EmulatorClient(target, session="errors") as emu:
        # region errors
        try:
            emu.stub_for("acme.shop.v1.Catalog/GetProdut", respond={"message": {}})
        except ConfigError as exc:
            print(exc)  # admin: method: "acme.shop.v1.Catalog/GetProdut" matches no method;
            #             did you mean "acme.shop.v1.Catalog/GetProduct"?
            # endregion
            assert "did you mean" in str(exc)
        else:
            raise AssertionError("a stub of a misspelt method was accepted")


def test_own_channels(target: str) -> None:
    from emulator import EmulatorClient

    with EmulatorClient(target, session="own-channel") as emu:
        # region own-channel
        channel = grpc.insecure_channel(emu.services_target)  # your client's own channel
        get = channel.unary_unary("/acme.shop.v1.Catalog/GetProduct")
        get(b"\x0a\x02p1", metadata=emu.session_metadata)  # tagged with the session by hand
        assert emu.calls("acme.shop.v1.Catalog/GetProduct").count == 1
        # endregion
        channel.close()
        emu.reset()


# region pytest
@pytest.mark.emulator(protos="protos/", behaviors="behaviors/")
def test_out_of_stock(emulator):
    # In-process, or the emulator at EMULATOR_TARGET in a session of this test's own.
    emulator.stub_for(
        "acme.shop.v1.Catalog/GetProduct",
        match={"request": {"product_id": "p1"}},
        respond={"message": {"stock_count": 0}},
    )
    reply = emulator.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
    assert reply.stock_count == 0
    emulator.assert_called("acme.shop.v1.Catalog/GetProduct", times=1)
    # endregion

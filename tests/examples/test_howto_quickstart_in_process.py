"""README, Quickstart: the emulator in-process, on a free port."""

from __future__ import annotations

import grpc
import pytest


@pytest.mark.usefixtures("in_repo_root")
def test_quickstart_in_process() -> None:
    # region quickstart
    from emulator import Emulator

    with Emulator(protos="protos/", behaviors="behaviors/", seed=7) as emu:
        product = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
        channel = emu.channel()  # a grpc.Channel for your own client code
        emu.assert_called("acme.shop.v1.Catalog/GetProduct", times=1, request={"product_id": "p1"})
        # endregion

        assert product.product_id == "p1"
        assert isinstance(channel, grpc.Channel)
        get = channel.unary_unary("/acme.shop.v1.Catalog/GetProduct")
        assert get(b"\x0a\x02p1", timeout=10) == product.SerializeToString()  # deterministic

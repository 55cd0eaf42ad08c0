"""docs/testing.md, `Emulator`: an inline behaviour, and keyword arguments as config keys."""

from __future__ import annotations

import re

import grpc
import pytest


@pytest.mark.usefixtures("in_repo_root")
def test_emulator_in_a_test() -> None:
    # region emulator
    from emulator import Behavior, Emulator

    class OutOfStock(Behavior):
        service = "acme.shop.v1.Catalog"

        def GetProduct(self, request, ctx):
            return {"product_id": request.product_id, "stock_count": 0}

    with Emulator(protos="protos/", behaviors=[OutOfStock], seed=7) as emu:
        target = emu.target  # "127.0.0.1:PORT"
        channel = emu.channel()  # grpc.Channel, closed at exit
        catalog = emu.stub("acme.shop.v1.Catalog")  # dynamic client: dicts or messages in
        stock_count = catalog.GetProduct({"product_id": "p1"}).stock_count  # → 0
        products = list(catalog.ListProducts({}))  # streams are iterators
        # endregion

        assert re.fullmatch(r"127\.0\.0\.1:\d+", target)
        assert isinstance(channel, grpc.Channel)
        assert stock_count == 0
        assert catalog.GetProduct({"product_id": "p1"}).WhichOneof("stock") == "stock_count"
        assert len(products) == 3  # defaults.stream_messages


@pytest.mark.usefixtures("in_repo_root")
def test_other_keyword_arguments_are_config_keys() -> None:
    from emulator import Emulator

    # Emulator(protos=..., defaults={"stream_messages": 5})
    with Emulator(protos="protos/", defaults={"stream_messages": 5}) as emu:
        assert len(list(emu.stub("acme.shop.v1.Catalog").ListProducts({}))) == 5

"""docs/behaviors.md: the `behaviors/catalog.py` example, loaded from a file like `--behaviors`."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from emulator import Emulator
from tests.conftest import PROTOS

CATALOG_PY = """
# region catalog
# behaviors/catalog.py
import grpc
from emulator import Behavior, RpcAbort

class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"               # full service name

    def GetProduct(self, request, ctx):            # unary: request → message, dict or None
        if not request.product_id:
            raise RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, "product_id is required")
        product = ctx.default_response()            # start from the deterministic default
        product.product_id = request.product_id
        return product

    async def ListProducts(self, request, ctx):    # server stream: an (async) generator
        for i in range(3):
            yield {"productId": f"p{i}", "name": f"Product {i}"}
# endregion
"""


def test_quickstart_behaviour(tmp_path: Path) -> None:
    behaviors = tmp_path / "behaviors"
    behaviors.mkdir()
    (behaviors / "catalog.py").write_text(CATALOG_PY, encoding="utf-8")

    with Emulator(protos=PROTOS, behaviors=behaviors) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        product = catalog.GetProduct({"product_id": "p1"})
        assert product.product_id == "p1"
        assert product.sku and product.name  # the rest is the deterministic default
        assert catalog.GetProduct({"product_id": "p1"}) == product

        with pytest.raises(grpc.RpcError) as info:
            catalog.GetProduct({})
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "product_id is required"

        listed = list(catalog.ListProducts({}))
        assert [(p.product_id, p.name) for p in listed] == [
            ("p0", "Product 0"),
            ("p1", "Product 1"),
            ("p2", "Product 2"),
        ]

        # methods without a behaviour still answer with defaults
        assert catalog.GetCategoryTree({}).category_id

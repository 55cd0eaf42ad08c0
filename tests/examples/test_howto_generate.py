"""docs/generate.md: a behaviour file on the typed base `emulate generate` wrote, checked by
`mypy --strict` and served by `emulate --behaviors`."""

from __future__ import annotations

from pathlib import Path

import grpc

from tests.conftest import PROTOS, EmulateProcess
from tests.test_generate import _env, _generate, _mypy

CATALOG_PY = """
# region typed
# behaviors/catalog.py
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from acme.shop.v1 import catalog_pb2
from acme.shop.v1.catalog_behaviors import CatalogBehavior
from emulator import CallContext


class Catalog(CatalogBehavior):  # service = "acme.shop.v1.Catalog", from the base
    def GetProduct(
        self, request: catalog_pb2.GetProductRequest, ctx: CallContext
    ) -> catalog_pb2.Product:
        return catalog_pb2.Product(product_id=request.product_id, name="Widget")

    def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, ctx: CallContext
    ) -> Iterator[dict[str, Any]]:
        for i in range(2):
            yield {"product_id": f"{request.category_id}-{i}"}

    # UpdateProduct and GetCategoryTree are not overridden: they keep their defaults.
# endregion
"""


def test_a_typed_behaviour_type_checks_and_serves(tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    assert _generate(gen, "protos").returncode == 0
    behaviors = tmp_path / "behaviors"
    behaviors.mkdir()
    (behaviors / "catalog.py").write_text(CATALOG_PY, encoding="utf-8")
    checked = _mypy(tmp_path, [behaviors / "catalog.py"], gen)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    served = EmulateProcess("--proto", str(PROTOS), "--behaviors", str(behaviors), env=_env(gen))
    with served, grpc.insecure_channel(served.target) as channel:
        assert "acme.shop.v1.Catalog (4 methods, behaviours: GetProduct, ListProducts)" in (
            served.header
        )
        product = channel.unary_unary("/acme.shop.v1.Catalog/GetProduct")(b"\n\x02p1", timeout=10)
        assert product == b"\n\x02p1\x1a\x06Widget"
        listed = list(channel.unary_stream("/acme.shop.v1.Catalog/ListProducts")(b"\n\x01c"))
        assert listed == [b"\n\x03c-0", b"\n\x03c-1"]

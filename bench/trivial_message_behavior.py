"""bench/trivial_behavior.py's GetProduct returning a message instead of a dict: the cost of
the dict -> message conversion is the difference between the two."""

from __future__ import annotations

from typing import Any

from emulator import Behavior


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"
    product: Any = None  # the Product class, taken from the first call's default response

    async def GetProduct(self, request: Any, ctx: Any) -> Any:
        cls = Catalog.product
        if cls is None:
            cls = Catalog.product = type(ctx.default_response())
        return cls(product_id=request.product_id, name="Bench Product", stock_count=42)

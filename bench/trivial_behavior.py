"""The benchmark's trivial behaviour: an async GetProduct that returns a small dict."""

from __future__ import annotations

from typing import Any

from emulator import Behavior


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    async def GetProduct(self, request: Any, ctx: Any) -> dict[str, Any]:
        return {"productId": request.product_id, "name": "Bench Product", "stockCount": 42}

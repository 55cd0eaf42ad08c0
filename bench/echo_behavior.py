"""The benchmark's bidi echo: acme.shop.v1.Orders/Chat sends back each message it receives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from emulator import Behavior


class Orders(Behavior):
    service = "acme.shop.v1.Orders"

    async def Chat(self, requests: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
        async for message in requests:
            yield message

"""docs/testing.md, pytest: an asyncio test with an aio channel on the test's loop.

The example in the docs relies on the ini options; here the module's marker configures it.
`ShopClient` stands for the user's code under test: a client over a real grpc.aio channel.
"""

from __future__ import annotations

import grpc
import pytest

pytestmark = pytest.mark.emulator(protos="protos/", behaviors="behaviors/")


def _get_product_request(product_id: str) -> bytes:
    """acme.shop.v1.GetProductRequest{product_id}: field 1, length-delimited."""
    data = product_id.encode()
    return b"\x0a" + bytes([len(data)]) + data


class ShopClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._get_product = channel.unary_unary("/acme.shop.v1.Catalog/GetProduct")

    async def fetch(self, product_id: str) -> bytes:
        return await self._get_product(_get_product_request(product_id), timeout=10)


# region async
async def test_async_client(emulator):
    async with emulator.aio_channel() as channel:
        client = ShopClient(channel)  # your code under test
        await client.fetch("p1")
    emulator.assert_called("acme.shop.v1.Catalog/GetProduct")
    # endregion

    emulator.assert_called("acme.shop.v1.Catalog/GetProduct", times=1, request={"product_id": "p1"})

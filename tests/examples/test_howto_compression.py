"""docs/compression.md: a behaviour compresses its answers, one stream message goes as is."""

from __future__ import annotations

import pytest

from tests.raw_grpc import raw_call


@pytest.mark.usefixtures("in_repo_root")
def test_a_behaviour_compresses_its_answers() -> None:
    # region behaviour
    from emulator import Behavior, Emulator

    TEXT = "A sturdy kettle that boils a litre in two minutes. " * 20

    class Catalog(Behavior):
        service = "acme.shop.v1.Catalog"

        def GetProduct(self, request, ctx):
            ctx.set_compression("gzip")  # or "deflate", "none", grpc.Compression.Gzip
            return {"product_id": request.product_id, "description": TEXT}

        def ListProducts(self, request, ctx):
            ctx.set_compression("gzip")  # for the whole call: before the first message
            yield {"name": "compressed", "description": TEXT}
            ctx.disable_next_message_compression()
            yield {"name": "sent as it is", "description": TEXT}
            yield {"name": "compressed again", "description": TEXT}

    with Emulator(protos="protos/", behaviors=[Catalog]) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        assert catalog.GetProduct({"product_id": "p1"}).description == TEXT
        assert len(list(catalog.ListProducts({}))) == 3  # grpcio decompresses them all
        # endregion
        # What the grpcio client does not show: each message's compressed flag.
        raw = raw_call(emu.target, "/acme.shop.v1.Catalog/ListProducts", [b""])
        assert raw.headers["grpc-encoding"] == "gzip"
        assert raw.flags == [1, 0, 1]
        raw = raw_call(emu.target, "/acme.shop.v1.Catalog/GetProduct", [b""])
        assert raw.flags == [1]

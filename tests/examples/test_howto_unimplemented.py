"""docs/unimplemented.md: a client meets a service the server does not have."""

from __future__ import annotations

import pytest


@pytest.mark.usefixtures("in_repo_root")
def test_a_client_meets_a_missing_service() -> None:
    # region missing-service
    import grpc
    import pytest

    from emulator import Emulator

    with Emulator(protos="protos/", unimplemented=["acme.shop.v1.Orders/*"]) as emu:
        with pytest.raises(grpc.RpcError) as caught:
            emu.stub("acme.shop.v1.Orders").CreateOrder({})
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        # acme.shop.v1.Orders/CreateOrder is marked unimplemented in the emulator's
        # configuration (unimplemented: "acme.shop.v1.Orders/*")
        print(caught.value.details())

        catalog = emu.stub("acme.shop.v1.Catalog")  # the rest still answers
        assert catalog.GetProduct({"product_id": "p1"}).product_id == "p1"
    # endregion
    assert caught.value.details() == (
        "acme.shop.v1.Orders/CreateOrder is marked unimplemented in the emulator's "
        'configuration (unimplemented: "acme.shop.v1.Orders/*")'
    )

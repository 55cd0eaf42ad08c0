"""docs/testing.md, pytest: the `emulator` fixture configured by the marker."""

from __future__ import annotations

# region marker
import pytest


@pytest.mark.emulator(protos="protos/", behaviors="behaviors/", seed=7)
def test_checkout(emulator):
    reply = emulator.stub("acme.shop.v1.Orders").CreateOrder({"line_items": [{"quantity": 1}]})
    assert reply.status == 1  # PENDING
    emulator.assert_called("acme.shop.v1.Orders/CreateOrder", times=1)
    # endregion

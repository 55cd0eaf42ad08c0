"""docs/journal.md: querying calls."""

from __future__ import annotations

import pytest

from emulator import Emulator


@pytest.mark.usefixtures("in_repo_root")
def test_journal_queries() -> None:
    with Emulator(protos="protos/", behaviors="behaviors/") as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")])
        catalog.GetProduct({"product_id": "42"})
        catalog.GetProduct({"product_id": "42"})
        list(catalog.ListProducts({}))

        # region queries
        # or emu.calls() / emu.calls("pkg.Svc")
        calls = emu.calls("acme.shop.v1.Catalog/GetProduct")
        assert (calls.count, calls.last.request.product_id) == (3, "42")
        assert [r.product_id for r in calls.requests] == ["p1", "42", "42"]
        matched = calls.filter(request={"product_id": "p1"}, metadata={"x-tenant": "acme"})
        emu.assert_called("acme.shop.v1.Catalog/GetProduct", times=2, request={"product_id": "42"})
        # endregion

        assert matched.count == 1
        assert emu.calls().count == 4
        assert emu.calls("acme.shop.v1.Catalog").count == 4

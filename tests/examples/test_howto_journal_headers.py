"""docs/journal.md: a record's headers as a mapping, repeated keys and secrets included."""

from __future__ import annotations

import pytest

from emulator import Emulator


@pytest.mark.usefixtures("in_repo_root")
def test_record_metadata_is_a_mapping() -> None:
    with Emulator(protos="protos/") as emu:
        emu.stub("acme.shop.v1.Catalog").GetProduct(
            {"product_id": "p1"},
            metadata=[("x-tenant", "acme"), ("x-tenant", "beta"), ("authorization", "Bearer t")],
        )
        # region headers
        record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
        assert record.metadata["x-tenant"] == "acme"  # the first value
        assert record.metadata.get_all("x-tenant") == ["acme", "beta"]  # every value, in order
        assert "X-Tenant" in record.metadata and record.metadata.get("x-missing", "-") == "-"
        assert record.metadata["authorization"] == "[redacted]"  # secrets stay redacted
        pairs = record.metadata.pairs()  # every (key, value) as sent; -bin values are bytes
        # endregion
        assert ("x-tenant", "beta") in pairs

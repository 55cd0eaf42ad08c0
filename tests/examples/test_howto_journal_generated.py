"""docs/journal.md: journalled messages as the classes of the user's own generated code."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROTOS


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[None]:
    """`acme.shop.v1` as `protoc --python_out` writes it, importable as a user's project has it."""
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={tmp_path}"]
    subprocess.run(
        [*protoc, "acme/common/v1/money.proto", "acme/shop/v1/catalog.proto"],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "acme" or m.startswith("acme.")]:
            del sys.modules[name]


@pytest.mark.usefixtures("in_repo_root", "generated")
def test_request_as_and_response_as() -> None:
    from emulator import Emulator

    with Emulator(protos="protos/") as emu:
        sent = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})

        # region convert
        from acme.shop.v1 import catalog_pb2  # your generated module

        record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
        request = record.request_as(catalog_pb2.GetProductRequest)
        assert request == catalog_pb2.GetProductRequest(product_id="p1")
        product = record.response_as(catalog_pb2.Product)  # also requests_as / responses_as
        # endregion

        assert isinstance(product, catalog_pb2.Product)
        # Deterministic: map entries may be written in any order.
        assert product.SerializeToString(deterministic=True) == sent.SerializeToString(
            deterministic=True
        )
        # Imported before the record was first read: the journal reads with its classes.
        assert isinstance(record.request, catalog_pb2.GetProductRequest)

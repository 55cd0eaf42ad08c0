"""docs/behaviors.md: a behaviour written with the user's own generated classes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from tests.conftest import PROTOS

CATALOG_PY = """
# region generated
# behaviors/catalog.py
from acme.shop.v1 import catalog_pb2  # your generated module (protoc --python_out)
from emulator import Behavior

class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        assert isinstance(request, catalog_pb2.GetProductRequest)  # holds
        return catalog_pb2.Product(product_id=request.product_id, name="Widget")
# endregion
"""


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """`acme.shop.v1` as `protoc --python_out` writes it, importable as a user's project has it
    (dropped from sys.modules afterwards, which makes the emulator forget it)."""
    out = tmp_path / "gen"
    out.mkdir()
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}"]
    subprocess.run(
        [*protoc, "acme/common/v1/money.proto", "acme/shop/v1/catalog.proto"],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "acme" or m.startswith("acme.")]:
            del sys.modules[name]


def test_a_behaviour_with_generated_classes(generated: Path) -> None:
    behaviors = generated / "behaviors"
    behaviors.mkdir()
    (behaviors / "catalog.py").write_text(CATALOG_PY, encoding="utf-8")
    with Emulator(protos=PROTOS, behaviors=behaviors) as emu:
        product = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
        assert (product.product_id, product.name) == ("p1", "Widget")  # the assert held

        from acme.shop.v1 import catalog_pb2  # type: ignore[import-not-found]

        record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
        assert record is not None
        assert record.request == catalog_pb2.GetProductRequest(product_id="p1")
        assert isinstance(record.response, catalog_pb2.Product)

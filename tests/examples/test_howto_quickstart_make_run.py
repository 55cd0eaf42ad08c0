"""README, Quickstart: `make run`, then grpcurl against it.

`make run` is `emulate --proto protos/ --behaviors behaviors/ --port 50051`; here on port 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, EmulateProcess

GET_PRODUCT = "acme.shop.v1.Catalog/GetProduct"


def test_make_run_then_grpcurl() -> None:
    with EmulateProcess("--proto", "protos/", "--behaviors", "behaviors/", cwd=ROOT) as proc:
        # $ make run
        assert proc.header.splitlines() == [
            f"emulator listening on {proc.target}",
            "  acme.shop.v1.Catalog (4 methods, behaviours: GetProduct, ListProducts)",
            "  acme.shop.v1.Orders (5 methods, behaviours: CreateOrder, UploadLineItems, Chat)",
            "  grpc.health.v1.Health, grpc.reflection.v1.ServerReflection (+v1alpha)",
        ]
        # $ grpcurl -plaintext -d '{"product_id": "p1"}' 127.0.0.1:50051 acme.shop.v1.Catalog/...
        grpcurl = Path(sys.executable).parent / "grpcurl"
        result = subprocess.run(
            [str(grpcurl), "-plaintext", "-d", '{"product_id": "p1"}', proc.target, GET_PRODUCT],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        code, _, err = proc.stop()
    assert result.returncode == 0, result.stderr
    product = json.loads(result.stdout)
    # { "productId": "p1", "sku": "SKU-...", "name": "...", "price": {...}, ... }
    assert product["productId"] == "p1"
    assert product["sku"].startswith("SKU-")
    assert product["name"]
    assert product["price"]["currencyCode"]
    assert code == 0, err

"""docs/stubs.md: declarative stubs, from files, in-process and per test.

The stub files the page shows (`<!-- stub-file: NAME -->` blocks) are read from the page itself
and served here, so every one of them runs; `tests/test_docs.py` checks them with `emulate check`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT

PAGES = (ROOT / "README.md", ROOT / "docs" / "stubs.md")


def stub_file(name: str, folder: Path) -> Path:
    """The `<!-- stub-file: NAME -->` block of the README or docs/stubs.md, written to
    `folder/NAME.yaml`."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    found = re.search(rf"<!-- stub-file: {name} -->\n```yaml\n(.*?)```", text, re.S)
    assert found, f"no stub-file block {name!r} in the README or docs/stubs.md"
    path = folder / f"{name}.yaml"
    path.write_text(found.group(1), encoding="utf-8")
    return path


@pytest.mark.usefixtures("in_repo_root")
def test_the_readme_stub_file(tmp_path: Path) -> None:
    from emulator import Emulator

    with Emulator(protos="protos/", stubs=[str(stub_file("shop", tmp_path))]) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        reply = catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "globex")])
        assert (reply.name, reply.stock_count) == ("Widget", 0)
        record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
        assert record.trailers["x-debug"] == "1"
        assert record.answered_by == "stub p1-out-of-stock"
        orders = emu.stub("acme.shop.v1.Orders")
        codes = []
        for _ in range(3):
            try:
                order = orders.CreateOrder({"customer_id": "c1"})
                codes.append("OK")
            except grpc.RpcError as exc:
                codes.append(exc.code().name)
        assert codes == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
        assert order.order_id == "c1-3"
        names = []
        with pytest.raises(grpc.RpcError) as ended:
            names.extend(p.name for p in catalog.ListProducts({}))
        assert names == ["first", "second"] and ended.value.code() is grpc.StatusCode.ABORTED


@pytest.mark.usefixtures("in_repo_root")
def test_the_first_stub_file(tmp_path: Path) -> None:
    from emulator import Emulator

    with Emulator(protos="protos/", stubs=[str(stub_file("catalog", tmp_path))]) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        widget = catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")])
        assert (widget.name, widget.stock_count, widget.price.units) == ("Widget", 0, 5)
        assert widget.price.currency_code  # the default's: merged, not replaced
        other = catalog.GetProduct({"product_id": "p1"})  # no x-tenant header: the default
        assert other.name != "Widget"
        record = emu.calls("acme.shop.v1.Catalog/GetProduct").last
        assert record.answered_by == "default"
        assert "header x-tenant: expected 'acme', got nothing (not set)" in str(
            record.near_misses[0]
        )
        sku = catalog.GetProduct({"product_id": "SKU-42"})
        assert sku.name == "Product SKU-42"


@pytest.mark.usefixtures("in_repo_root")
def test_a_retry_sequence(tmp_path: Path) -> None:
    from emulator import Emulator

    with Emulator(protos="protos/", stubs=[str(stub_file("retries", tmp_path))]) as emu:
        # region retry
        config = {
            "methodConfig": [
                {
                    "name": [{"service": "acme.shop.v1.Orders"}],
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.05s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
        options = [("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1)]
        with grpc.insecure_channel(emu.target, options=options) as channel:
            spec = emu.server.contracts.method("acme.shop.v1.Orders/CreateOrder")
            create = channel.unary_unary(
                spec.path,
                request_serializer=spec.input_class.SerializeToString,
                response_deserializer=spec.output_class.FromString,
            )
            order = create(spec.input_class(customer_id="c7"))  # retried by grpc itself
        assert order.order_id == "c7-1"
        codes = [r.code.name for r in emu.calls("acme.shop.v1.Orders/CreateOrder")]
        assert codes == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
        # endregion


@pytest.mark.usefixtures("in_repo_root")
def test_streams_and_bidi(tmp_path: Path) -> None:
    from emulator import Emulator

    with Emulator(protos="protos/", stubs=[str(stub_file("streams", tmp_path))]) as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        names = []
        with pytest.raises(grpc.RpcError) as ended:
            for product in catalog.ListProducts({"category_id": "c1"}):
                names.append(product.name)
        assert names == ["first", "second"]
        assert ended.value.code() is grpc.StatusCode.ABORTED
        chat = emu.stub("acme.shop.v1.Orders").Chat(iter([{"text": "hi"}, {"text": "bye"}]))
        assert [m.text for m in chat] == ["hello", "how can I help?", "goodbye"]


@pytest.mark.usefixtures("in_repo_root")
def test_a_scenario(tmp_path: Path) -> None:
    from emulator import Emulator

    with Emulator(protos="protos/", stubs=[str(stub_file("scenario", tmp_path))]) as emu:
        orders = emu.stub("acme.shop.v1.Orders")
        assert emu.stubs.scenario("order-o1") == "started"
        assert orders.CreateOrder({"customer_id": "c1"}).status == 1  # PENDING
        assert emu.stubs.scenario("order-o1") == "created"
        assert orders.CreateOrder({"customer_id": "c1"}).status == 2  # PAID
        assert emu.stubs.scenario("order-o1") == "paid"
        third = orders.CreateOrder({"customer_id": "c1"})  # no stub for `paid`: the default
        assert emu.calls("acme.shop.v1.Orders/CreateOrder").last.answered_by == "default"
        assert third.order_id != "o1"
        emu.reset()  # scenarios start again
        assert emu.stubs.scenario("order-o1") == "started"
        assert orders.CreateOrder({"customer_id": "c1"}).status == 1


@pytest.mark.usefixtures("in_repo_root")
def test_stubs_in_a_test() -> None:
    # region in-process
    from emulator import Emulator

    with Emulator(protos="protos/") as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        with emu.stub_for(
            "acme.shop.v1.Catalog/GetProduct",
            name="p1-gone",
            match={"request": {"product_id": "p1"}},
            respond={"status": {"code": "NOT_FOUND", "message": "no product p1"}},
        ) as stub:
            with pytest.raises(grpc.RpcError) as caught:
                catalog.GetProduct({"product_id": "p1"})
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
            catalog.GetProduct({"product_id": "p2"})  # no stub matches: the default answers
            assert stub.answered == 1
            [unmatched] = emu.unmatched("acme.shop.v1.Catalog/GetProduct")
            print(unmatched.near_misses[0])  # p1-gone: product_id: expected 'p1', got 'p2'
        assert catalog.GetProduct({"product_id": "p1"}).product_id == "p1"  # the stub is gone
    # endregion
    assert str(unmatched.near_misses[0]) == "p1-gone: product_id: expected 'p1', got 'p2'"

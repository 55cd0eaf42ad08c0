"""Default responses: deterministic across processes, schema-valid, realistic, all four kinds."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emulator import Emulator
from emulator.behavior import values
from emulator.behavior.defaults import fill
from tests.conftest import PROTOS, EmulateProcess

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"

# One call of every method of the example contract, as raw request bytes, in a fresh process:
# the bytes that come back are what must be identical across runs, processes and machines.
_CALL_ALL = r"""
import sys, grpc
target = sys.argv[1]
with grpc.insecure_channel(target) as ch:
    out = []
    for path, kind in [
        ("/acme.shop.v1.Catalog/GetProduct", "uu"), ("/acme.shop.v1.Catalog/ListProducts", "us"),
        ("/acme.shop.v1.Catalog/GetCategoryTree", "uu"), ("/acme.shop.v1.Orders/CreateOrder", "uu"),
        ("/acme.shop.v1.Orders/UploadLineItems", "su"), ("/acme.shop.v1.Orders/Chat", "ss"),
        ("/acme.shop.v1.Orders/WatchOrder", "us"), ("/acme.shop.v1.Catalog/UpdateProduct", "uu"),
    ]:
        req = b"\n\x02p1"
        if kind == "uu":
            out.append(ch.unary_unary(path)(req))
        elif kind == "us":
            out.extend(ch.unary_stream(path)(req))
        elif kind == "su":
            out.append(ch.stream_unary(path)(iter([req, b""])))
        else:
            out.extend(ch.stream_stream(path)(iter([req, b""])))
    sys.stdout.write(b"".join(x.hex().encode() + b"\n" for x in out).decode())
"""


def _all_responses(*args: str) -> str:
    with EmulateProcess("--proto", str(PROTOS), *args) as proc:
        result = subprocess.run(
            [sys.executable, "-c", _CALL_ALL, proc.target],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        code, _, _ = proc.stop()
        assert code == 0
    return result.stdout


def test_defaults_are_identical_across_processes_and_change_with_the_seed() -> None:
    first = _all_responses("--seed", "11")
    second = _all_responses("--seed", "11")
    assert first == second
    assert len(first.splitlines()) == 13  # 4 unary + 2x3 streamed + 1 client stream + 2 bidi
    other = _all_responses("--seed", "12")
    assert other != first


@pytest.fixture(scope="module")
def emu():
    with Emulator(protos=PROTOS, seed=5) as emu:
        yield emu


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_values_follow_field_names(emu: Emulator) -> None:
    order = emu.stub(ORDERS).CreateOrder({"customer_id": "c"})
    assert UUID.match(order.order_id)
    assert uuid.UUID(order.customer.customer_id)
    assert re.match(r"^[a-z]+\.[a-z]+@example\.com$", order.customer.email.replace(" ", ""))
    assert order.customer.first_name in values.FIRST_NAMES
    assert order.customer.last_name in values.LAST_NAMES
    assert order.customer.phone_number.startswith("+1-202-555-01")
    assert order.total.currency_code in values.CURRENCIES
    assert order.total.nanos % 10_000_000 == 0
    assert order.customer.shipping_address.country_code in values.COUNTRIES
    product = emu.stub(CATALOG).GetProduct({"product_id": "p"})
    assert product.image_url.startswith("https://images.example.com/")
    assert product.sku.startswith("SKU-")
    assert 1 <= product.rating.value <= 5


def test_structure_is_schema_valid(emu: Emulator) -> None:
    order = emu.stub(ORDERS).CreateOrder({})
    assert order.status != 0  # enums take declared non-zero values
    assert order.WhichOneof("payment") in ("card", "bank_transfer")  # exactly one member
    assert 1 <= len(order.line_items) <= 3
    assert 1 <= len(order.quantities_by_sku) <= 3
    low, high = values.TIMESTAMP_RANGE
    assert low <= order.created_at.seconds < high
    assert order.estimated_delivery.seconds > 0
    inner = timestamp_pb2.Timestamp()
    assert order.extension.Unpack(inner)  # Any packs a real message
    assert low <= inner.seconds < high
    assert order.metadata["source"] == "grpc-emulator"  # Struct
    # FieldMask names real fields of the resource beside it (Product, in UpdateProductRequest).
    contracts = emu.server.contracts
    product_fields = {
        f.name for f in contracts.message_class_by_name("acme.shop.v1.Product").DESCRIPTOR.fields
    }
    request = contracts.message_class_by_name("acme.shop.v1.UpdateProductRequest")()
    fill(request, emu.server.defaults.rng("any", b""))
    assert request.update_mask.paths
    assert set(request.update_mask.paths) <= product_fields


def test_recursion_is_bounded(emu: Emulator) -> None:
    tree = emu.stub(CATALOG).GetCategoryTree({})

    def depth(node, level=1):  # type: ignore[no-untyped-def]
        children = [depth(c, level + 1) for c in node.children]
        parent = [depth(node.parent, level + 1)] if node.HasField("parent") else []
        return max([level, *children, *parent])

    assert 2 <= depth(tree) <= 8


def test_stream_defaults(emu: Emulator) -> None:
    orders = emu.stub(ORDERS)
    assert len(list(emu.stub(CATALOG).ListProducts({}))) == 3
    # Client stream: one response that depends on every request.
    a = orders.UploadLineItems([{"quantity": 1}, {"quantity": 2}])
    b = orders.UploadLineItems([{"quantity": 1}, {"quantity": 3}])
    assert a != b
    assert a == orders.UploadLineItems([{"quantity": 1}, {"quantity": 2}])
    # Bidi: one response per request, each a function of its request.
    replies = list(orders.Chat([{"text": "a"}, {"text": "b"}, {"text": "a"}]))
    assert len(replies) == 3
    assert replies[0] == replies[2] != replies[1]


def test_stream_message_count_is_configurable() -> None:
    with Emulator(protos=PROTOS, defaults={"stream_messages": 5}) as emu:
        assert len(list(emu.stub(CATALOG).ListProducts({}))) == 5


def test_same_request_same_response_different_request_different(emu: Emulator) -> None:
    catalog = emu.stub(CATALOG)
    assert catalog.GetProduct({"product_id": "a"}) == catalog.GetProduct({"product_id": "a"})
    assert catalog.GetProduct({"product_id": "a"}) != catalog.GetProduct({"product_id": "b"})


def test_malformed_request_bytes_give_invalid_argument_and_the_server_stays_up(
    emu: Emulator,
) -> None:
    channel = emu.channel()
    for path in (f"/{CATALOG}/GetProduct", f"/{CATALOG}/ListProducts"):
        with pytest.raises(grpc.RpcError) as err:
            if path.endswith("ListProducts"):
                list(channel.unary_stream(path)(b"\xff\xff\xff\xff"))
            else:
                channel.unary_unary(path)(b"\xff\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "acme.shop.v1" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        channel.stream_unary(f"/{ORDERS}/UploadLineItems")(iter([b"", b"\xff\xff"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert emu.stub(CATALOG).GetProduct({"product_id": "still-up"}).product_id


def test_unknown_method_is_unimplemented(emu: Emulator) -> None:
    channel = emu.channel()
    for path in ("/acme.shop.v1.Catalog/NoSuchMethod", "/no.such.Service/Method"):
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(path)(b"")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_reports_serving_overall_and_per_service(emu: Emulator) -> None:
    health = health_pb2_grpc.HealthStub(emu.channel())
    for service in ("", CATALOG, ORDERS):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="no.Such"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

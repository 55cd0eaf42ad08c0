"""A record's `metadata` and `trailers` are `Headers`: read-only mappings from each key to its first
value, with `get_all` for repeated keys, case-insensitive keys and bytes for `-bin` headers."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from emulator import Emulator, Headers
from emulator.journal import REDACTED
from tests.conftest import PROTOS

CATALOG = "acme.shop.v1.Catalog"
GET_PRODUCT = f"{CATALOG}/GetProduct"
SENT = [
    ("x-tenant", "acme"),
    ("x-tenant", "evil"),
    ("trace-bin", b"\x00\x01\xff"),
    ("authorization", "Bearer not-for-the-journal"),
]


def answer(request, ctx):  # type: ignore[no-untyped-def]
    ctx.set_trailing_metadata([("x-hit", "1"), ("x-hit", "2"), ("x-blob-bin", b"\x02")])
    return {"product_id": request.product_id}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS) as emu, emu.override(GET_PRODUCT, answer):
        emu.stub(CATALOG).GetProduct({"product_id": "p1"}, metadata=SENT)
        yield emu


def test_metadata_is_a_mapping_of_first_values(emu: Emulator) -> None:
    metadata = emu.calls(GET_PRODUCT).last.metadata
    assert isinstance(metadata, Headers)
    assert metadata["x-tenant"] == "acme"
    assert metadata["X-Tenant"] == "acme"  # gRPC keys are lower-case: any case finds them
    assert metadata.get("x-tenant") == "acme"
    assert metadata.get("x-missing") is None and metadata.get("x-missing", "-") == "-"
    with pytest.raises(KeyError, match="x-missing"):
        metadata["x-missing"]
    assert "x-tenant" in metadata and "X-TENANT" in metadata and "x-missing" not in metadata


def test_get_all_gives_every_value_in_order(emu: Emulator) -> None:
    metadata = emu.calls(GET_PRODUCT).last.metadata
    assert metadata.get_all("x-tenant") == ["acme", "evil"]
    assert metadata.get_all("X-Tenant") == ["acme", "evil"]
    assert metadata.get_all("x-missing") == []


def test_keys_once_each_in_order_and_binary_values_as_bytes(emu: Emulator) -> None:
    metadata = emu.calls(GET_PRODUCT).last.metadata
    keys = list(metadata)
    assert [k for k in keys if k in {"x-tenant", "trace-bin", "authorization"}] == [
        "x-tenant",
        "trace-bin",
        "authorization",
    ]
    assert len(metadata) == len(keys) == len(set(keys))  # grpc adds its own (user-agent)
    assert list(metadata.keys()) == keys
    assert dict(metadata.items())["x-tenant"] == "acme"
    assert metadata["trace-bin"] == b"\x00\x01\xff"
    assert ("x-tenant", "evil") in metadata.pairs()


def test_secret_headers_stay_redacted(emu: Emulator) -> None:
    record = emu.calls(GET_PRODUCT).last
    assert record.metadata["authorization"] == REDACTED
    assert record.metadata.get_all("authorization") == [REDACTED]
    assert record.header("authorization") == REDACTED
    shown = repr(record.metadata) + repr(record.metadata.pairs()) + str(dict(record.metadata))
    assert "not-for-the-journal" not in shown


def test_trailers_are_headers_too(emu: Emulator) -> None:
    trailers = emu.calls(GET_PRODUCT).last.trailers
    assert isinstance(trailers, Headers)
    assert trailers["x-hit"] == "1" and trailers.get_all("x-hit") == ["1", "2"]
    assert trailers["x-blob-bin"] == b"\x02"
    assert list(trailers) == ["x-hit", "x-blob-bin"] and len(trailers) == 2


def test_read_only(emu: Emulator) -> None:
    metadata = emu.calls(GET_PRODUCT).last.metadata
    with pytest.raises(TypeError):
        metadata["x-tenant"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        metadata.pop("x-tenant")  # type: ignore[attr-defined]


def test_what_worked_on_pairs_still_works(emu: Emulator) -> None:
    trailers = emu.calls(GET_PRODUCT).last.trailers
    pairs = (("x-hit", "1"), ("x-hit", "2"), ("x-blob-bin", b"\x02"))
    assert trailers == pairs and trailers == list(pairs)  # records held these tuples
    assert ("x-hit", "2") in trailers and ("x-hit", "3") not in trailers
    assert hash(trailers) == hash(pairs)


def test_equality_with_a_dict_holds_when_no_key_repeats() -> None:
    assert Headers([("x-a", "1"), ("x-b", b"2")]) == {"x-a": "1", "x-b": b"2"}
    assert Headers([("X-A", "1")]) == {"x-a": "1"} == Headers([("x-a", "1")])
    assert Headers([("x-a", "1"), ("x-a", "2")]) != {"x-a": "1"}  # a dict cannot repeat a key
    assert Headers([("x-a", "1"), ("x-b", "2")]) != Headers([("x-b", "2"), ("x-a", "1")])
    assert Headers() == {} and not Headers() and Headers() != [1, 2]


def test_filter_and_assert_called_read_the_first_value(emu: Emulator) -> None:
    assert emu.calls(GET_PRODUCT).filter(metadata={"X-Tenant": "acme"}).count == 1
    assert emu.calls(GET_PRODUCT).filter(metadata={"x-tenant": "evil"}).count == 0
    emu.assert_called(GET_PRODUCT, times=1, metadata={"x-tenant": "acme"})
    with pytest.raises(AssertionError, match="header x-tenant: expected 'other', got 'acme'"):
        emu.assert_called(GET_PRODUCT, metadata={"x-tenant": "other"})


def test_a_call_without_trailers_has_empty_headers() -> None:
    with Emulator(protos=PROTOS) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        record = emu.calls(GET_PRODUCT).last
    assert record.trailers == {} and record.trailers == () and len(record.trailers) == 0
    assert record.code == grpc.StatusCode.OK

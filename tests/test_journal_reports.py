"""Journal reports never fail: summaries, `repr`, `describe()` and assert_called messages show a
request holding an `Any` of a contract type, an `Any` of an unknown type or an out-of-range
Timestamp (the pytest side is in tests/test_pytest_plugin.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import message_factory

from emulator import Emulator
from tests.conftest import PROTOS, reset_around

INBOX = "reports.v1.Inbox"
SEND = f"{INBOX}/Send"
UPDATE_PRODUCT = "acme.shop.v1.Catalog/UpdateProduct"
TOO_LATE = 10**13  # seconds: past year 9999, which JSON cannot write

PROTO = """
syntax = "proto3";

package reports.v1;

import "google/protobuf/any.proto";

service Inbox {
  rpc Send(Envelope) returns (Receipt);
}

message Letter {
  string text = 1;
}

message Envelope {
  google.protobuf.Any payload = 1;
  string to = 2;
}

message Receipt {
  string id = 1;
}
"""


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    root: Path = tmp_path_factory.mktemp("reports")
    (root / "reports" / "v1").mkdir(parents=True)
    (root / "reports" / "v1" / "inbox.proto").write_text(textwrap.dedent(PROTO))
    with Emulator(protos=[root]) as emu:
        yield emu


@pytest.fixture
def emu(inbox: Emulator) -> Iterator[Emulator]:
    yield from reset_around(inbox)


def contract_class(emu: Emulator, name: str) -> Any:
    """reports.v1 types exist only in the contracts' descriptor pool, never in the default."""
    pool = emu.server.contracts.pool
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def test_an_any_of_a_contract_type_is_shown_as_json(emu: Emulator) -> None:
    envelope = contract_class(emu, "reports.v1.Envelope")(to="ada")
    envelope.payload.Pack(contract_class(emu, "reports.v1.Letter")(text="hello"))
    emu.stub(INBOX).Send(envelope)

    record = emu.calls(SEND).last
    assert record is not None
    expected = (
        '{"payload": {"@type": "type.googleapis.com/reports.v1.Letter", "text": "hello"}, '
        '"to": "ada"}'
    )
    assert record.summary().endswith(expected)
    assert repr(record).endswith(expected + ">")
    assert emu.calls().describe() == record.summary()
    with pytest.raises(AssertionError) as failed:
        emu.assert_called(SEND, request={"to": "bob"})
    assert expected in str(failed.value)
    assert "to: expected 'bob', got 'ada'" in str(failed.value)


def test_an_any_of_an_unknown_type_falls_back_to_the_text_format(emu: Emulator) -> None:
    envelope = contract_class(emu, "reports.v1.Envelope")(to="ada")
    envelope.payload.type_url = "type.googleapis.com/nowhere.Unknown"
    envelope.payload.value = b"\x0a\x01x"
    emu.stub(INBOX).Send(envelope)
    summary = emu.calls().describe()
    assert 'type_url: "type.googleapis.com/nowhere.Unknown"' in summary
    assert 'to: "ada"' in summary


def test_an_out_of_range_timestamp_is_shown_in_the_text_format() -> None:
    with Emulator(protos=PROTOS) as emu:
        request = {"product": {"product_id": "p1", "created_at": {"seconds": TOO_LATE}}}
        emu.stub("acme.shop.v1.Catalog").UpdateProduct(request)
        record = emu.calls(UPDATE_PRODUCT).last
        assert record is not None
        text = f'{{product {{ product_id: "p1" created_at {{ seconds: {TOO_LATE} }} }}}}'
        assert record.summary().endswith(text)
        assert text in repr(record)
        assert text in emu.calls().describe()
        with pytest.raises(AssertionError) as failed:
            emu.assert_called(UPDATE_PRODUCT, request={"product": {"product_id": "p2"}})
        assert text in str(failed.value)
        assert "product.product_id: expected 'p2', got 'p1'" in str(failed.value)
        # A whole message to compare with: both sides are shown, neither as JSON.
        spec = emu.server.contracts.method(UPDATE_PRODUCT)
        assert spec is not None
        other = spec.input_class()
        other.product.created_at.seconds = TOO_LATE + 1
        with pytest.raises(AssertionError) as failed:
            emu.assert_called(UPDATE_PRODUCT, request=other)
        assert f"seconds: {TOO_LATE + 1}" in str(failed.value)


def test_long_requests_are_cut_short(emu: Emulator) -> None:
    emu.stub(INBOX).Send({"to": "x" * 500})
    record = emu.calls().last
    assert record is not None
    shown = record.summary().split(" ", 4)[-1]
    assert len(shown) == 120 and shown.endswith("...")

"""Stub matching as calls see it: the per-call check that builds no reasons (`Stub.matches`)
choosing the same stub the near-miss reports explain, and load errors in long stub files naming
the right line (each stub's lines are split from the file's once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.errors import ConfigError
from tests.conftest import PROTOS

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
GET_PRODUCT = f"{CATALOG}/GetProduct"

STUBS = [
    {
        "name": "regex",
        "method": GET_PRODUCT,
        "match": {"request": {"product_id": {"regex": "^p5[0-9][0-9]$"}}},
        "respond": {"message": {"name": "by regex"}},
    },
    {
        "name": "tenant",
        "method": GET_PRODUCT,
        "match": {"request": {"product_id": "p1"}, "metadata": {"x-tenant": "acme"}},
        "respond": {"message": {"name": "for acme"}},
    },
    {
        "name": "once",
        "method": GET_PRODUCT,
        "times": 1,
        "match": {"request": {"product_id": "p2"}},
        "respond": {"message": {"name": "just once"}},
    },
    {
        "name": "low",
        "method": GET_PRODUCT,
        "match": {"request": {"product_id": "p3"}},
        "respond": {"message": {"name": "low"}},
    },
    {
        "name": "high",
        "method": GET_PRODUCT,
        "priority": 5,
        "match": {"request": {"product_id": "p3"}},
        "respond": {"message": {"name": "high"}},
    },
    {
        "name": "any-x",
        "method": f"{ORDERS}/UploadLineItems",
        "match": {"request": {"product_id": "x"}, "message": "any"},
        "respond": {"message": {"item_count": 7}},
    },
    {
        "name": "hi",
        "method": f"{ORDERS}/Chat",
        "on_message": [
            {"match": {"text": {"regex": "^hi"}}, "reply": [{"message": {"text": "hello"}}]}
        ],
    },
]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(PROTOS, stubs=STUBS) as running:
        yield running


def test_each_condition_kind_decides_which_stub_answers(emu: Emulator) -> None:
    emu.reset()
    catalog = emu.stub(CATALOG)
    assert catalog.GetProduct({"product_id": "p500"}).name == "by regex"
    assert catalog.GetProduct({"product_id": "p1"}, metadata=[("x-tenant", "acme")]).name == (
        "for acme"
    )
    assert catalog.GetProduct({"product_id": "p2"}).name == "just once"
    assert catalog.GetProduct({"product_id": "p3"}).name == "high"  # priority over file order
    default = catalog.GetProduct({"product_id": "p1"}).name  # the header is missing
    assert default not in ("by regex", "for acme", "just once", "high", "low")
    assert catalog.GetProduct({"product_id": "p2"}).name != "just once"
    answered = [c.answered_by for c in emu.calls(method=GET_PRODUCT)]
    assert answered == [
        "stub regex",
        "stub tenant",
        "stub once",
        "stub high",
        "default",
        "default",  # `once` answered its one time
    ]


def test_calls_no_stub_matches_name_the_failed_conditions(emu: Emulator) -> None:
    emu.reset()
    emu.stub(CATALOG).GetProduct({"product_id": "p5000"})
    (missed,) = emu.unmatched(GET_PRODUCT)
    reasons = {m.stub: m.reasons for m in missed.near_misses}
    assert reasons["regex"] == ("product_id: expected a match for '^p5[0-9][0-9]$', got 'p5000'",)


def test_stream_modes_and_bidi_rules_match_without_reasons(emu: Emulator) -> None:
    emu.reset()
    orders = emu.stub(ORDERS)
    assert orders.UploadLineItems(iter([{"product_id": "a"}, {"product_id": "x"}])).item_count == 7
    other = orders.UploadLineItems(iter([{"product_id": "a"}, {"product_id": "b"}]))
    assert other.item_count != 7
    replies = list(orders.Chat(iter([{"text": "hi there"}, {"text": "nope"}, {"text": "hi"}])))
    assert [r.text for r in replies] == ["hello", "hello"]


def test_an_error_deep_in_a_long_stub_file_names_its_own_line(tmp_path: Path) -> None:
    good = "".join(
        f"- method: {GET_PRODUCT}\n  match:\n    request:\n      product_id: p{n}\n"
        for n in range(12)
    )
    bad = f"- method: {GET_PRODUCT}\n  match:\n    request:\n      nope: 1\n"
    path = tmp_path / "stubs.yaml"
    path.write_text(good + bad)
    with pytest.raises(ConfigError) as caught:
        Emulator(PROTOS, stubs=[str(path)])
    assert str(caught.value).startswith(f"{path}:52: stubs[12].match.request.nope: ")

"""Stubs in-process: `Emulator(stubs=[...])`, `emu.stubs.add()`, `emu.stub_for(...)`, `reset()`,
refusals at run time, and `async with`. Real grpc servers on 127.0.0.1, real clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from emulator import Emulator, EmulatorError
from emulator.errors import ConfigError
from tests.conftest import PROTOS

GET = "acme.shop.v1.Catalog/GetProduct"
CATALOG = "acme.shop.v1.Catalog"

FILE_STUBS = f"""
- name: file-p1
  method: {GET}
  match: {{request: {{product_id: p1}}}}
  respond: {{message: {{name: From the file}}}}
- name: file-retry
  method: {GET}
  match: {{request: {{product_id: retry}}}}
  sequence:
    - {{status: {{code: UNAVAILABLE, message: try again}}}}
    - {{message: {{name: Second time}}}}
- name: file-once
  method: {GET}
  match: {{request: {{product_id: once}}}}
  times: 1
  respond: {{message: {{name: Only once}}}}
- name: order-new
  method: {GET}
  match: {{request: {{product_id: o1}}}}
  scenario: order
  when_state: started
  set_state: paid
  respond: {{message: {{name: New}}}}
- name: order-paid
  method: {GET}
  match: {{request: {{product_id: o1}}}}
  scenario: order
  when_state: paid
  respond: {{message: {{name: Paid}}}}
"""
INLINE = {
    "name": "inline-p2",
    "method": GET,
    "match": {"request": {"product_id": "p2"}},
    "respond": {"message": {"name": "Written inline"}},
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    path = tmp_path_factory.mktemp("stubs") / "catalog.yaml"
    path.write_text(FILE_STUBS)
    with Emulator(PROTOS, stubs=[str(path), INLINE]) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator) -> Iterator[Emulator]:
    emu.reset()
    yield emu
    emu.reset()


def name_of(emu: Emulator, product_id: str) -> str:
    return str(emu.stub(CATALOG).GetProduct({"product_id": product_id}).name)


def test_file_and_inline_stubs_answer(fresh: Emulator) -> None:
    assert name_of(fresh, "p1") == "From the file"
    assert name_of(fresh, "p2") == "Written inline"
    calls = fresh.calls(GET)
    assert [c.answered_by for c in calls] == ["stub file-p1", "stub inline-p2"]
    stats = {s["name"]: s["answered"] for s in fresh.stubs.stats()}
    assert stats == {
        "file-p1": 1,
        "file-retry": 0,
        "file-once": 0,
        "order-new": 0,
        "order-paid": 0,
        "inline-p2": 1,
    }


def test_add_answers_from_the_next_call_and_undo_removes_it(fresh: Emulator) -> None:
    before = name_of(fresh, "p3")  # the default
    handle = fresh.stubs.add(
        {
            "method": GET,
            "match": {"request": {"product_id": "p3"}},
            "respond": {"message": {"name": "Added"}},
        }
    )
    assert name_of(fresh, "p3") == "Added"
    assert handle.answered == 1 and handle.active
    handle.undo()
    assert not handle.active
    assert name_of(fresh, "p3") == before
    assert handle.answered == 1  # counts stay readable on the handle
    assert fresh.calls(GET)[-1].answered_by != f"stub {handle.names[0]}"


def test_unnamed_stubs_added_at_run_time_do_not_clash(fresh: Emulator) -> None:
    one = fresh.stubs.add({"method": GET, "match": {"request": {"product_id": "a"}}})
    two = fresh.stubs.add({"method": GET, "match": {"request": {"product_id": "b"}}})
    three = fresh.stub_for(GET, match={"request": {"product_id": "c"}})
    names = {*one.names, *two.names, *three.names}
    assert len(names) == 3, names
    assert all(n.startswith("GetProduct@") for n in names)


def test_stub_for_rolls_back_at_the_end_of_the_block(fresh: Emulator) -> None:
    with fresh.stub_for(GET, match={"request": {"product_id": "p1"}}, priority=5,
                        respond={"message": {"name": "Scoped"}}) as stub:  # fmt: skip
        assert name_of(fresh, "p1") == "Scoped"  # beats the file's stub: higher priority
        assert stub.answered == 1
    assert name_of(fresh, "p1") == "From the file"
    assert len(fresh.stubs) == 6


def test_reset_drops_run_time_stubs_and_restarts_the_file_stubs(fresh: Emulator) -> None:
    fresh.stubs.add({"name": "runtime", "method": GET, "respond": {"message": {"name": "Any"}}})
    assert len(fresh.stubs) == 7
    # Move every kind of state along: a sequence, a `times`, a scenario.
    with pytest.raises(grpc.RpcError) as first:
        name_of(fresh, "retry")
    assert first.value.code() == grpc.StatusCode.UNAVAILABLE
    assert name_of(fresh, "retry") == "Second time"
    assert name_of(fresh, "once") == "Only once"
    assert name_of(fresh, "once") == "Any"  # used up: the next stub answers
    assert name_of(fresh, "o1") == "New"
    assert fresh.stubs.scenario("order") == "paid"
    assert name_of(fresh, "o1") == "Paid"

    fresh.reset()
    assert len(fresh.stubs) == 6
    assert "runtime" not in {s["name"] for s in fresh.stubs.stats()}
    assert all(s["answered"] == 0 for s in fresh.stubs.stats())
    assert fresh.stubs.scenario("order") == "started"
    with pytest.raises(grpc.RpcError) as again:
        name_of(fresh, "retry")  # the sequence from its start
    assert again.value.code() == grpc.StatusCode.UNAVAILABLE
    assert name_of(fresh, "once") == "Only once"  # `times` re-armed
    assert name_of(fresh, "o1") == "New"


@pytest.mark.parametrize(
    ("add", "says"),
    [
        (
            lambda emu: emu.stubs.add({"method": GET, "times": 0}),
            "emu.stubs.add(): times: must be at least 1, got 0",
        ),
        (
            lambda emu: emu.stubs.add({"method": GET, "respnd": {}}),
            "emu.stubs.add(): unknown key 'respnd' (did you mean 'respond'?)",
        ),
        (
            lambda emu: emu.stub_for(GET, match={"request": {"produkt_id": "p1"}}),
            f"emu.stub_for({GET!r}): match.request.produkt_id: acme.shop.v1.GetProductRequest "
            "has no field 'produkt_id'; did you mean 'product_id'?",
        ),
        (
            lambda emu: emu.stub_for(GET, respond={"message": {"availability": "SOLD"}}),
            f"emu.stub_for({GET!r}): respond.message.availability: 'SOLD' is not a value of "
            "acme.shop.v1.Availability",
        ),
        (
            lambda emu: emu.stub_for("acme.shop.v1.Catalog/GetProdukt"),
            "emu.stub_for('acme.shop.v1.Catalog/GetProdukt'): method: "
            '"acme.shop.v1.Catalog/GetProdukt" matches no method; did you mean',
        ),
        (  # in a list: the position in this call; the valid first stub is not added either
            lambda emu: emu.stubs.add(
                [{"name": "fine", "method": GET}, {"method": GET, "times": 0}]
            ),
            "emu.stubs.add(): stubs[1].times: must be at least 1",
        ),
        (
            lambda emu: emu.stubs.add({"name": "file-p1", "method": GET}),
            "a stub named 'file-p1' is already served (from ",
        ),
    ],
)
def test_bad_run_time_stubs_are_refused_and_the_server_keeps_serving(
    fresh: Emulator, add: object, says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        add(fresh)  # type: ignore[operator]
    assert isinstance(refused.value, EmulatorError)
    assert says in str(refused.value), str(refused.value)
    assert len(fresh.stubs) == 6  # nothing half-added
    assert name_of(fresh, "p1") == "From the file"


async def test_async_with_serves_stubs(tmp_path: Path) -> None:
    path = tmp_path / "stubs.yaml"
    path.write_text(FILE_STUBS)
    async with Emulator(PROTOS, stubs=[str(path)]) as emu:
        catalog = emu.stub(CATALOG)
        assert (await catalog.GetProduct({"product_id": "p1"})).name == "From the file"
        with emu.stub_for(GET, match={"request": {"product_id": "p9"}},
                          respond={"message": {"name": "Async"}}):  # fmt: skip
            assert (await catalog.GetProduct({"product_id": "p9"})).name == "Async"
        assert (await catalog.GetProduct({"product_id": "p9"})).name != "Async"
        emu.reset()
        assert emu.stubs.stats()[0]["answered"] == 0

"""Memory stays bounded: the default-response cache, long streams and the journal's bytes."""

from __future__ import annotations

import gc
import hashlib
import struct
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from emulator.behavior.defaults import CACHE_BYTES, CACHE_ENTRIES
from emulator.call import Messages
from emulator.config import Config
from emulator.environment import env_overrides
from emulator.errors import ConfigError
from tests.conftest import PROTOS, emulate

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
LIST_PRODUCTS = f"{CATALOG}/ListProducts"
UPLOAD = f"{ORDERS}/UploadLineItems"
CHAT = f"{ORDERS}/Chat"
MIB = 1024 * 1024


# -- the default-response cache ------------------------------------------------------------


def test_distinct_big_requests_leave_no_memory_behind() -> None:
    # GetProduct echoes product_id, so each 100 kB request also makes a 100 kB default: the old
    # cache kept both, keyed by the request bytes, for 4,096 calls (here 40 MB for 200 calls).
    with Emulator(protos=PROTOS, journal={"limit": 1}) as emu:
        catalog = emu.stub(CATALOG)
        catalog.GetProduct({"product_id": "warm-up"})
        gc.collect()
        tracing = tracemalloc.is_tracing()  # someone else's tracing stays on
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(200):
                reply = catalog.GetProduct({"product_id": f"{index:04d}" + "x" * 100_000})
                assert reply.product_id.startswith(f"{index:04d}")
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            if not tracing:
                tracemalloc.stop()
        defaults = emu.server.defaults
        assert 0 < defaults.cache_bytes <= CACHE_BYTES
        assert grown < CACHE_BYTES + 4 * MIB, f"{grown / MIB:.1f} MiB kept after 200 calls"


def test_the_cache_is_bounded_by_entries_too() -> None:
    with Emulator(protos=PROTOS) as emu:
        defaults = emu.server.defaults
        spec = emu.server.contracts.method(f"{ORDERS}/Ping")
        assert spec is not None
        for index in range(CACHE_ENTRIES + 500):
            defaults.response_bytes(spec, b"", index)
        assert defaults.cache_entries == CACHE_ENTRIES


def test_reset_frees_big_cached_defaults_and_answers_the_same_again() -> None:
    with Emulator(protos=PROTOS) as emu:
        catalog = emu.stub(CATALOG)
        first = [catalog.GetProduct({"product_id": f"p{i}" + "x" * 40_000}) for i in range(50)]
        defaults = emu.server.defaults
        assert defaults.cache_entries >= 50 and defaults.cache_bytes > MIB
        emu.reset()
        assert defaults.cache_entries == 0 and defaults.cache_bytes == 0
        again = [catalog.GetProduct({"product_id": f"p{i}" + "x" * 40_000}) for i in range(50)]
        assert again == first


def test_reset_keeps_a_small_cache_of_defaults_every_test_asks_for() -> None:
    with Emulator(protos=PROTOS) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        entries = emu.server.defaults.cache_entries
        emu.reset()
        assert emu.server.defaults.cache_entries == entries > 0


# -- long streams ----------------------------------------------------------------------------


def test_a_long_server_stream_keeps_its_first_and_last_messages_and_counts() -> None:
    with Emulator(protos=PROTOS, journal={"keep_messages": 3}) as emu:
        spec = emu.server.contracts.method(LIST_PRODUCTS)
        assert spec is not None

        async def many(request: Any, ctx: Any) -> AsyncIterator[Any]:
            for index in range(10_000):
                yield spec.output_class(product_id=f"p{index}")

        emu.override(LIST_PRODUCTS, many)
        received = list(emu.stub(CATALOG).ListProducts({"category_id": "c1"}))
        assert len(received) == 10_000
        record = emu.calls(LIST_PRODUCTS).last
        assert record is not None and record.ok
        assert record.response_count == 10_000 and record.request_count == 1
        kept = [r.product_id for r in record.responses]
        assert kept == ["p0", "p1", "p2", "p9997", "p9998", "p9999"]
        assert record.response is not None and record.response.product_id == "p9999"
        assert record.request is not None and record.request.category_id == "c1"
        assert emu.server.journal.kept_bytes == sum(
            m.ByteSize() for m in (*record.requests, *record.responses)
        )


def _items(emu: Emulator, count: int, changed_at: int | None = None) -> list[Any]:
    spec = emu.server.contracts.method(UPLOAD)
    assert spec is not None
    return [spec.input_class(quantity=i + (i == changed_at)) for i in range(count)]


def test_a_long_client_stream_keeps_ends_and_its_default_covers_every_request() -> None:
    with Emulator(protos=PROTOS, journal={"keep_messages": 2}) as emu:
        orders = emu.stub(ORDERS)
        summary = orders.UploadLineItems(_items(emu, 2_000))
        record = emu.calls(UPLOAD).last
        assert record is not None
        assert record.request_count == 2_000 and record.response_count == 1
        assert [r.quantity for r in record.requests] == [0, 1, 1998, 1999]
        assert record.response == summary
        # The default is a function of all the requests, dropped ones included...
        assert orders.UploadLineItems(_items(emu, 2_000)) == summary
        assert orders.UploadLineItems(_items(emu, 2_000, changed_at=1_000)) != summary
        assert orders.UploadLineItems(_items(emu, 1_999)) != summary
    # ...and the same in another emulator, whatever it keeps.
    with Emulator(protos=PROTOS) as other:
        assert other.stub(ORDERS).UploadLineItems(_items(other, 2_000)) == summary
        assert other.stub(ORDERS).UploadLineItems(_items(other, 1)) != summary


def test_a_long_bidi_stream_answers_each_message_and_keeps_the_ends() -> None:
    texts = [{"text": f"m{i}"} for i in range(1_000)]
    with Emulator(protos=PROTOS, journal={"keep_messages": 2}) as emu:
        orders = emu.stub(ORDERS)
        replies = list(orders.Chat(texts))
        assert [r.text for r in replies] == [t["text"] for t in texts]  # echoes its request
        alone = list(orders.Chat([texts[-1]]))
        assert replies[-1] == alone[0]  # keyed by the latest request, as before
        record = emu.calls(CHAT).first
        assert record is not None
        assert record.request_count == record.response_count == 1_000
        assert [r.text for r in record.requests] == ["m0", "m1", "m998", "m999"]
        assert list(record.responses) == [*replies[:2], *replies[-2:]]


def test_messages_count_everything_and_keep_the_ends() -> None:
    messages = Messages(2, digest=True)
    expected = hashlib.sha256()
    for index in range(10):
        data = b"x" * index
        messages.append(data)
        expected.update(struct.pack(">I", len(data)) + data)
    assert len(messages) == messages.count == 10 and messages.dropped == 6
    assert list(messages) == [b"", b"x", b"x" * 8, b"x" * 9]
    assert messages[0] == b"" and messages[-1] == b"x" * 9 and messages[8] == b"x" * 8
    with pytest.raises(IndexError, match="not kept"):
        messages[5]
    with pytest.raises(IndexError):
        messages[10]
    assert messages.total_bytes == sum(range(10)) and messages.kept_bytes == 0 + 1 + 8 + 9
    assert messages.digest() == expected.digest()
    assert not Messages()  # empty: falsy
    with pytest.raises(IndexError):
        Messages()[-1]


# -- the journal's byte bound ------------------------------------------------------------------


def test_the_journal_drops_its_oldest_calls_beyond_max_bytes() -> None:
    with Emulator(protos=PROTOS, journal={"max_bytes": 50_000}) as emu:
        catalog = emu.stub(CATALOG)
        for index in range(10):
            catalog.GetProduct({"product_id": f"{index}" + "x" * 10_000})  # ~20 kB a call
        calls = emu.calls()
        sizes = [r.request.ByteSize() + r.response.ByteSize() for r in calls]
        assert 1 <= calls.count < 10
        assert [r.index for r in calls] == list(range(11 - calls.count, 11))  # the newest kept
        assert sum(sizes) == emu.server.journal.kept_bytes
        assert sum(sizes) <= 50_000 < sum(sizes) + min(sizes)
        emu.reset()
        assert emu.server.journal.kept_bytes == 0


def test_the_newest_call_is_kept_whatever_its_size() -> None:
    with Emulator(protos=PROTOS, journal={"max_bytes": "1KiB"}) as emu:
        catalog = emu.stub(CATALOG)
        for index in range(3):
            catalog.GetProduct({"product_id": f"{index}" + "x" * 5_000})
        calls = emu.calls()
        assert [r.index for r in calls] == [3]
        emu.assert_called(f"{CATALOG}/GetProduct", times=1)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [(1000, 1000), ("64MiB", 64 * MIB), ("512 KiB", 512 * 1024), ("2MB", 2_000_000), ("7", 7)],
)
def test_max_bytes_takes_sizes(value: object, size: int) -> None:
    assert Config.from_mapping({"journal": {"max_bytes": value}}).journal.max_bytes == size


@pytest.mark.parametrize(
    ("journal", "problem"),
    [
        ({"max_bytes": "lots"}, "journal.max_bytes: expected a size such as 64MiB"),
        ({"max_bytes": 0}, "journal.max_bytes: a size must be at least 1 byte"),
        ({"max_bytes": True}, "journal.max_bytes: expected a size"),
        ({"keep_messages": 0}, "journal.keep_messages: must be at least 1, got 0"),
    ],
)
def test_bad_journal_bounds_are_refused_by_key(journal: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Config.from_mapping({"journal": journal})


def test_bad_journal_bound_in_a_file_names_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "emulator.yaml"
    config.write_text("journal:\n  limit: 5\n  max_bytes: 12 parsecs\n")
    result = emulate("check", "--proto", str(PROTOS), "--config", str(config))
    assert result.returncode == 2
    assert f"emulate: error: {config}:3: journal.max_bytes: expected a size" in result.stderr
    assert "Traceback" not in result.stderr


def test_journal_bounds_come_from_the_environment() -> None:
    overrides = env_overrides(
        {"EMULATOR_JOURNAL_MAX_BYTES": "1MiB", "EMULATOR_JOURNAL_KEEP_MESSAGES": "5"}
    )
    config = Config().with_overrides(overrides)
    assert config.journal.max_bytes == MIB and config.journal.keep_messages == 5


def test_the_documented_journal_example_is_valid() -> None:
    import yaml

    docs = (PROTOS.parent / "docs" / "configuration.md").read_text()
    line = next(row for row in docs.splitlines() if row.startswith("journal: {limit"))
    journal = Config.from_mapping(yaml.safe_load(line), source="configuration.md").journal
    assert (journal.limit, journal.max_bytes, journal.keep_messages) == (10_000, 64 * MIB, 100)
    assert journal == Config().journal  # the example shows the defaults

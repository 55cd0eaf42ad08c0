"""The admin API over gRPC: every operation, sessions, bad input and who may use it.

A real emulator on 127.0.0.1 (port 0) and grpcio clients calling `emulator.admin.v1.Admin`
with the messages of the shipped admin.proto; the emulated service is called with its own
dynamic stubs.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from emulator import Emulator
from emulator.admin.descriptor import pb, service
from emulator.errors import ConfigError
from tests.conftest import PROTOS, EmulateProcess

CATALOG = "acme.shop.v1.Catalog"
GET = f"{CATALOG}/GetProduct"


class Admin:
    """A grpcio client of the admin service."""

    def __init__(self, target: str, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.channel = grpc.insecure_channel(target)
        self.metadata = tuple(metadata)

    def __call__(self, operation: str, /, **fields: Any) -> Any:
        request = getattr(pb, f"{operation}Request")(**fields)
        call = self.channel.unary_unary(
            f"/emulator.admin.v1.Admin/{operation}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=getattr(
                pb, service().methods_by_name[operation].output_type.name
            ).FromString,
        )
        return call(request, metadata=self.metadata, timeout=10)

    def watch(self, **fields: Any) -> Any:
        call = self.channel.unary_stream(
            "/emulator.admin.v1.Admin/WatchCalls",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.CallRecord.FromString,
        )
        return call(pb.WatchCallsRequest(**fields), metadata=self.metadata, timeout=10)


def struct(value: dict[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    out = struct_pb2.Struct()
    out.update(value)
    return out


def stub(product: str, name: str, title: str) -> Any:
    return struct(
        {
            "name": name,
            "method": GET,
            "match": {"request": {"product_id": product}},
            "respond": {"message": {"name": title}},
        }
    )


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(protos=PROTOS, seed=3) as emu:
        yield emu


@pytest.fixture
def admin(emu: Emulator) -> Iterator[Admin]:
    emu.reset()
    client = Admin(emu.target)
    yield client
    client.channel.close()


def product(emu: Emulator, product_id: str, session: str | None = None) -> Any:
    metadata = [("x-emulator-session", session)] if session else []
    return emu.stub(CATALOG).GetProduct({"product_id": product_id}, metadata=metadata)


def bad_request(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations of a refused admin call."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


# -- info and reflection ------------------------------------------------------------------------


def test_get_info_names_the_version_seed_contracts_and_session_header(
    emu: Emulator, admin: Admin
) -> None:
    info = admin("GetInfo")
    assert info.version == "0.1.0"
    assert info.seed == 3
    assert len(info.contract_fingerprint) == 64
    assert info.session_header == "x-emulator-session"
    services = {s.name: list(s.methods) for s in info.services}
    assert services[CATALOG] == ["GetProduct", "ListProducts", "UpdateProduct", "GetCategoryTree"]
    assert info.uptime_seconds > 0
    # The same contracts give the same fingerprint, whatever the seed.
    with Emulator(protos=PROTOS, seed=4) as other:
        assert Admin(other.target)("GetInfo").contract_fingerprint == info.contract_fingerprint


# -- stubs and sessions -------------------------------------------------------------------------


def test_a_session_stub_answers_only_its_session(emu: Emulator, admin: Admin) -> None:
    added = admin("AddStubs", session="s1", stubs=[stub("p1", "cheap", "From s1")])
    assert [(s.name, s.session, list(s.methods)) for s in added.stubs] == [("cheap", "s1", [GET])]
    admin("AddStubs", session="s2", stubs=[stub("p1", "cheap", "From s2")])  # the same name
    assert product(emu, "p1", "s1").name == "From s1"
    assert product(emu, "p1", "s2").name == "From s2"
    assert product(emu, "p1").name != "From s1"  # no session: the default
    assert product(emu, "p1", "s3").name not in ("From s1", "From s2")
    listed = admin("ListStubs", session="s1")
    assert [(s.name, s.answered) for s in listed.stubs] == [("cheap", 1)]
    assert sorted(s.session for s in admin("ListStubs").stubs) == ["s1", "s2"]


def test_a_session_stub_comes_before_a_shared_one(emu: Emulator, admin: Admin) -> None:
    shared = stub("p1", "shared", "Shared")
    shared["priority"] = 10
    admin("AddStubs", stubs=[shared])
    admin("AddStubs", session="s1", stubs=[stub("p1", "mine", "Mine")])
    assert product(emu, "p1", "s1").name == "Mine"
    assert product(emu, "p1", "s2").name == "Shared"
    assert product(emu, "p1").name == "Shared"


def test_the_session_header_of_the_admin_call_names_the_session(emu: Emulator) -> None:
    emu.reset()
    tagged = Admin(emu.target, [("x-emulator-session", "h1")])
    tagged("AddStubs", stubs=[stub("p1", "via-header", "Header")])
    assert product(emu, "p1", "h1").name == "Header"
    assert [s.session for s in tagged("ListStubs").stubs] == ["h1"]


def test_stubs_as_yaml_text_and_removal_by_name(emu: Emulator, admin: Admin) -> None:
    text = f"""
- name: yaml-one
  method: {GET}
  match: {{request: {{product_id: p7}}}}
  respond: {{message: {{name: From YAML}}}}
- name: yaml-two
  method: {GET}
  respond: {{message: {{name: Any other}}}}
"""
    added = admin("AddStubs", session="t", text=text)
    assert [s.name for s in added.stubs] == ["yaml-one", "yaml-two"]
    assert product(emu, "p7", "t").name == "From YAML"
    removed = admin("RemoveStubs", session="t", names=["yaml-one"])
    assert [s.name for s in removed.stubs] == ["yaml-one"]
    assert product(emu, "p7", "t").name == "Any other"
    assert [s.name for s in admin("RemoveStubs", session="t").stubs] == ["yaml-two"]
    assert admin("ListStubs", session="t").stubs == []


def test_a_bad_stub_is_invalid_argument_with_a_field_violation(emu: Emulator, admin: Admin) -> None:
    admin("AddStubs", session="s1", stubs=[stub("p1", "kept", "Kept")])
    bad = struct({"method": GET, "match": {"request": {"no_such_field": 1}}, "respond": {}})
    with pytest.raises(grpc.RpcError) as raised:
        admin("AddStubs", session="s1", stubs=[bad])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = bad_request(raised.value)
    assert field == "stubs[0].match.request.no_such_field"
    assert "no_such_field" in description and "GetProductRequest" in description
    # Nothing already accepted is lost, and the server keeps serving.
    assert product(emu, "p1", "s1").name == "Kept"
    with pytest.raises(grpc.RpcError) as raised:
        admin("AddStubs", session="s1", text="- method: [unclosed")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = bad_request(raised.value)
    assert field == "text" and "not valid YAML" in description and "admin:1" in description
    two = [stub("p2", "fine", "Fine"), struct({"method": "acme.shop.v1.Nope/Get"})]
    with pytest.raises(grpc.RpcError) as raised:
        admin("AddStubs", session="s1", stubs=two)
    assert bad_request(raised.value)[0][0] == "stubs[1].method"
    assert product(emu, "p2", "s1").name != "Fine"  # all or nothing: the good one is not added
    with pytest.raises(grpc.RpcError) as raised:
        admin("AddStubs", session="s1")
    assert bad_request(raised.value)[0][0] == "stubs"


def test_removing_a_stub_that_is_not_there_is_not_found(admin: Admin) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        admin("RemoveStubs", session="s1", names=["ghost"])
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "ghost" in (raised.value.details() or "")


def test_bytes_that_do_not_parse_are_invalid_argument(emu: Emulator, admin: Admin) -> None:
    call = admin.channel.unary_unary("/emulator.admin.v1.Admin/AddStubs")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"\xff\xff\xff", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert admin("GetInfo").version  # still serving


# -- faults ---------------------------------------------------------------------------------


def test_a_session_fault_fires_only_for_its_session(emu: Emulator, admin: Admin) -> None:
    rule = struct({"name": "down", "match": {"method": GET}, "abort": {"code": "UNAVAILABLE"}})
    added = admin("AddFault", session="s1", rule=rule)
    assert (added.name, added.session, added.active) == ("down", "s1", True)
    admin("AddFault", session="s2", rule=rule)  # the same name in another session
    with pytest.raises(grpc.RpcError) as raised:
        product(emu, "p1", "s1")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert product(emu, "p1").product_id == "p1"
    assert product(emu, "p1", "s3").product_id == "p1"
    [listed] = admin("ListFaults", session="s1").faults
    assert (listed.name, listed.matched, listed.injected) == ("down", 1, 1)
    removed = admin("RemoveFault", session="s1", name="down")
    assert (removed.active, removed.injected) == (False, 1)
    assert product(emu, "p1", "s1").product_id == "p1"
    assert [f.session for f in admin("ListFaults", session="s2").faults] == ["s2"]


def test_a_fault_as_yaml_text_and_a_bad_one(emu: Emulator, admin: Admin) -> None:
    text = f"name: slow-fail\nmatch: {{method: {GET}}}\nabort: {{code: NOT_FOUND}}\n"
    admin("AddFault", session="s1", text=text)
    with pytest.raises(grpc.RpcError) as raised:
        product(emu, "p1", "s1")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        admin("AddFault", text="name: x\nabort: {code: NO_SUCH_CODE}\n")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = bad_request(raised.value)
    assert field == "text.abort.code" and "NO_SUCH_CODE" in description
    assert "admin:2" in description
    with pytest.raises(grpc.RpcError) as raised:
        admin("RemoveFault", name="never-added")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# -- the journal ----------------------------------------------------------------------------


def test_list_calls_filters_by_session_method_metadata_and_request(
    emu: Emulator, admin: Admin
) -> None:
    product(emu, "p1", "s1")
    product(emu, "p2", "s1")
    product(emu, "p3", "s2")
    list(emu.stub(CATALOG).ListProducts({}, metadata=[("x-emulator-session", "s1")]))
    mine = admin("ListCalls", session="s1")
    assert [c.method for c in mine.calls] == [GET, GET, f"{CATALOG}/ListProducts"]
    assert mine.total == 3 and not mine.next_page_token
    first = mine.calls[0]
    assert (first.session, first.code, first.answered_by) == ("s1", "OK", "default")
    assert json.loads(json.dumps(dict(first.requests[0]))) == {"productId": "p1"}
    assert first.raw_requests[0] == b"\n\x02p1"
    assert first.responses[0]["productId"] == "p1"
    assert first.metadata["x-emulator-session"] == "s1"
    only_get = admin("ListCalls", session="s1", method=f"{CATALOG}/GetProduct")
    assert len(only_get.calls) == 2
    by_request = admin("ListCalls", method=GET, request=struct({"product_id": "p3"}))
    assert [c.session for c in by_request.calls] == ["s2"]
    by_header = admin("ListCalls", metadata={"x-emulator-session": "s2"})
    assert [c.requests[0]["productId"] for c in by_header.calls] == ["p3"]
    raw = admin("ListCalls", session="s1", raw_only=True)
    assert len(raw.calls[0].requests) == 0 and raw.calls[0].raw_requests


def test_list_calls_pages_and_since_index(emu: Emulator, admin: Admin) -> None:
    for n in range(5):
        product(emu, f"p{n}")
    page = admin("ListCalls", page_size=2)
    assert [c.index for c in page.calls] == [1, 2] and page.total == 5
    page = admin("ListCalls", page_size=2, page_token=page.next_page_token)
    assert [c.index for c in page.calls] == [3, 4]
    page = admin("ListCalls", page_size=2, page_token=page.next_page_token)
    assert [c.index for c in page.calls] == [5] and not page.next_page_token
    assert [c.index for c in admin("ListCalls", since_index=3).calls] == [4, 5]
    with pytest.raises(grpc.RpcError) as raised:
        admin("ListCalls", page_size=20_000)
    assert bad_request(raised.value)[0][0] == "page_size"
    with pytest.raises(grpc.RpcError) as raised:
        admin("ListCalls", method="acme.shop.v1.Catalg/*")
    [(field, description)] = bad_request(raised.value)
    assert field == "method" and "Catalog" in description


def test_list_calls_pages_are_the_records_protobuf_writes(emu: Emulator, admin: Admin) -> None:
    """ListCalls writes its pages as wire bytes by hand: every field of every kind of record
    parses back as the CallRecord message protobuf builds from the same record."""
    admin("AddStubs", stubs=[stub("p1", "only-p1", "One")])
    rule = struct({"name": "down", "match": {"method": GET}, "abort": {"code": "UNAVAILABLE"}})
    product(emu, "p1", "s1")  # a stub answers
    product(emu, "p2 ünïcode " + "x" * 200, "s1")  # a near miss; a long, non-ASCII request
    emu.stub(CATALOG).GetProduct(
        {"product_id": "p3"}, metadata=[("x-blob-bin", b"\x00\xff"), ("authorization", "t")]
    )
    admin("AddFault", rule=rule)
    with pytest.raises(grpc.RpcError):
        product(emu, "p4")  # a fault fired: code, details and the rule's name
    admin("RemoveFault", name="down")
    list(emu.stub(CATALOG).ListProducts({}))  # a stream: many responses
    from emulator.admin.convert import call_record

    records = emu.calls()
    assert len(records) == 5 and records[1].near_misses and records[3].faults
    for raw_only in (False, True):
        page = admin("ListCalls", raw_only=raw_only)
        assert page.total == 5
        expected = [call_record(r, "x-emulator-session", raw_only=raw_only) for r in records]
        assert list(page.calls) == expected
    assert page.calls[2].metadata["x-blob-bin"] == "AP8="  # base64, as gRPC's text form
    page = admin("ListCalls", page_size=2, since_index=1)
    assert [c.index for c in page.calls] == [2, 3] and page.next_page_token and page.total == 5


def test_after_a_listing_the_forms_of_new_calls_are_made_in_the_lulls() -> None:
    """Once a client has listed the journal, the emulator makes the forms the next ListCalls
    needs while it waits (a big page then answers from them), the same as made on demand."""
    import time

    from emulator.admin.convert import encoded_record

    with Emulator(protos=PROTOS, seed=3) as emu:
        own = Admin(emu.target)
        for n in range(3):
            product(emu, f"p{n}")
        assert emu.server.admin is not None
        preparer = emu.server.admin.operations.preparer
        assert preparer._task is None  # nobody listed: nothing made ahead
        own("ListCalls", raw_only=True)
        for n in range(20):
            product(emu, f"q{n}")
        assert len(emu.calls()) == 23  # a read makes the records: the forms are still made
        journal = emu.server.journal

        def made(json: bool) -> bool:
            entries = list(journal._entries)
            return all(
                type(e[2]) is not tuple and e[2].exported and (len(e[2].exported) > 1) == json
                for e in entries
            )

        deadline = time.monotonic() + 10
        while not made(json=False):  # raw forms only: that is what was listed
            assert time.monotonic() < deadline, "the raw forms were not made in a lull"
            time.sleep(0.01)
        own("ListCalls")  # JSON from now on
        for n in range(5):
            product(emu, f"r{n}")
        while not made(json=True) or len(journal._entries) != 28:
            assert time.monotonic() < deadline, "the JSON forms were not made in a lull"
            time.sleep(0.01)
        page = own("ListCalls")
        fresh = pb.CallList()
        for record in emu.calls():
            record.exported = None
            fresh.calls.add().MergeFromString(encoded_record(record, "x-emulator-session"))
        assert list(page.calls) == list(fresh.calls) and len(page.calls) == 28
        own.channel.close()
    assert preparer._task is None  # stopped with the emulator


def test_a_call_whose_forms_cannot_be_made_ahead_stops_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message json_format refuses (say a Value holding NaN) is left to the listing, which
    answers for it; the other calls' forms are made, and the emulator stops cleanly."""
    import time

    from emulator.admin import prepare

    real = prepare.encoded_record

    def refusing(record: Any, header: str, *, raw_only: bool = False) -> bytes:
        if record.index == 2:
            raise ValueError("Fail to serialize Infinity for Value")
        return real(record, header, raw_only=raw_only)

    monkeypatch.setattr(prepare, "encoded_record", refusing)
    with Emulator(protos=PROTOS, seed=3) as emu:
        own = Admin(emu.target)
        own("ListCalls")
        for n in range(4):
            product(emu, f"p{n}")
        journal = emu.server.journal
        deadline = time.monotonic() + 10
        while not all(
            type(e[2]) is not tuple and (e[2].exported or e[2].index == 2)
            for e in list(journal._entries)
        ):
            assert time.monotonic() < deadline, "the other calls' forms were not made"
            time.sleep(0.01)
        assert len(own("ListCalls").calls) == 4
        own.channel.close()
        assert emu.server.admin is not None
        preparer = emu.server.admin.operations.preparer
    assert preparer._task is None


def test_while_a_listing_is_built_the_lulls_are_left_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big ListCalls makes the forms itself, in a thread: the emulator makes none ahead
    meanwhile (the two took turns at the interpreter, and the listing took twice as long),
    and goes on once it has answered."""
    import threading
    import time

    from emulator.admin.operations import Operations

    building, release = threading.Event(), threading.Event()
    real = Operations._list_calls

    def slow(self: Operations, *args: Any) -> Any:
        building.set()
        release.wait(10)
        return real(self, *args)

    with Emulator(protos=PROTOS, seed=3) as emu:
        own = Admin(emu.target)
        own("ListCalls")  # from now on, forms are made in the lulls
        assert emu.server.admin is not None
        preparer = emu.server.admin.operations.preparer
        looks = [0]
        getter = preparer._journal

        def counted() -> Any:
            looks[0] += 1
            return getter()

        preparer._journal = counted
        monkeypatch.setattr(Operations, "_list_calls", slow)
        listing = threading.Thread(target=own, args=("ListCalls",))
        listing.start()
        assert building.wait(10)
        for n in range(3):
            product(emu, f"p{n}")
        journal = emu.server.journal

        def made() -> list[bool]:
            return [type(e[2]) is not tuple and bool(e[2].exported) for e in journal._entries]

        deadline = time.monotonic() + 10
        first = looks[0]
        while looks[0] < first + 5:  # lulls of several ticks pass while the listing runs
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert made() == [False] * 3
        release.set()
        listing.join(10)
        while made() != [True] * 3:
            assert time.monotonic() < deadline, "no forms made after the listing"
            time.sleep(0.01)
        own.channel.close()


def test_secret_headers_are_redacted_in_calls(emu: Emulator, admin: Admin) -> None:
    emu.stub(CATALOG).GetProduct(
        {"product_id": "p1"}, metadata=[("authorization", "Bearer hunter2"), ("x-t", "v")]
    )
    [call] = admin("ListCalls").calls
    assert call.metadata["authorization"] == "[redacted]"
    assert "hunter2" not in str(call)


def test_watch_calls_streams_calls_as_they_finish(emu: Emulator, admin: Admin) -> None:
    product(emu, "before", "w")
    stream = admin.watch(session="w")
    assert next(stream).requests[0]["productId"] == "before"
    product(emu, "other-session", "x")
    product(emu, "after", "w")
    assert next(stream).requests[0]["productId"] == "after"
    stream.cancel()


def test_verify_passes_or_reports_the_near_misses(emu: Emulator, admin: Admin) -> None:
    product(emu, "p1", "s1")
    product(emu, "p2", "s1")
    product(emu, "p9", "s2")
    ok = admin("Verify", session="s1", method=GET, times=2)
    assert (ok.ok, ok.count, ok.report) == (True, 2, "")
    missed = admin("Verify", session="s1", method=GET, request=struct({"product_id": "p9"}))
    assert (missed.ok, missed.count) == (False, 0)
    assert "expected at least 1 call to acme.shop.v1.Catalog/GetProduct" in missed.report
    assert "product_id: expected 'p9', got 'p1'" in missed.report
    assert admin("Verify", session="s2", method=GET, request=struct({"product_id": "p9"})).ok
    assert admin("Verify", session="s1", method=GET, at_least=1, at_most=2).ok
    too_many = admin("Verify", session="s1", method=GET, at_most=1)
    assert not too_many.ok and "expected at most 1 call" in too_many.report
    with pytest.raises(grpc.RpcError) as raised:
        admin("Verify", method="acme.shop.v1.Catalog/Nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# -- reset, clock, health, scenarios ----------------------------------------------------------


def test_reset_of_a_session_leaves_the_others(emu: Emulator, admin: Admin) -> None:
    for session in ("s1", "s2"):
        admin("AddStubs", session=session, stubs=[stub("p1", "mine", session)])
        admin(
            "AddFault",
            session=session,
            rule=struct(
                {"name": "f", "match": {"method": "*/ListProducts"}, "abort": {"code": "ABORTED"}}
            ),
        )
        admin("SetScenario", session=session, name="cart", state="full")
        product(emu, "p1", session)
    done = admin("Reset", session="s1")
    assert list(done.parts) == ["journal", "stubs", "scenarios", "faults"]
    assert admin("ListStubs", session="s1").stubs == admin("ListStubs", session="s0").stubs
    assert [s.session for s in admin("ListStubs").stubs] == ["s2"]
    assert [f.session for f in admin("ListFaults", session="s1").faults] == []
    assert admin("GetScenario", session="s1", name="cart").state == "started"
    assert admin("GetScenario", session="s2", name="cart").state == "full"
    assert admin("ListCalls", session="s1").calls == []
    assert len(admin("ListCalls", session="s2").calls) == 1
    assert product(emu, "p1", "s2").name == "s2"


def test_reset_by_part_and_unknown_parts(emu: Emulator, admin: Admin) -> None:
    admin("AddStubs", stubs=[stub("p1", "kept", "Kept")])
    product(emu, "p1")
    assert list(admin("Reset", parts=["journal"]).parts) == ["journal"]
    assert admin("ListCalls").calls == []
    assert product(emu, "p1").name == "Kept"  # stubs stay
    with pytest.raises(grpc.RpcError) as raised:
        admin("Reset", parts=["journal", "everything"])
    [(field, description)] = bad_request(raised.value)
    assert field == "parts" and "'everything'" in description and "scenarios" in description
    assert len(admin("Reset").parts) == 8
    assert admin("ListStubs").stubs == []


def test_set_clock_freezes_advances_and_resets(emu: Emulator, admin: Admin) -> None:
    moment = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    request = pb.SetClockRequest()
    request.freeze.FromDatetime(moment)
    frozen = admin("SetClock", freeze=request.freeze)
    assert frozen.frozen and frozen.now.ToDatetime(tzinfo=datetime.UTC) == moment
    moved = admin("SetClock", advance_seconds=90)
    assert moved.now.ToDatetime(tzinfo=datetime.UTC) == moment + datetime.timedelta(seconds=90)
    assert emu.clock.now() == moment + datetime.timedelta(seconds=90)
    running = admin("SetClock", reset=True)
    assert not running.frozen
    assert abs(
        running.now.ToDatetime(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
    ) < datetime.timedelta(seconds=60)


def test_set_health_reports_through_grpc_health(emu: Emulator, admin: Admin) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    admin("SetHealth", service=CATALOG, status="NOT_SERVING")
    health = health_pb2_grpc.HealthStub(admin.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=CATALOG), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as raised:
        admin("SetHealth", service="no.Such", status="SERVING")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        admin("SetHealth", service=CATALOG, status="SLEEPY")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    emu.reset()
    answer = health.Check(health_pb2.HealthCheckRequest(service=CATALOG), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_scenarios_per_session_move_session_stubs(emu: Emulator, admin: Admin) -> None:
    text = f"""
- name: empty-cart
  method: {GET}
  scenario: cart
  when_state: started
  set_state: full
  respond: {{message: {{name: first}}}}
- name: full-cart
  method: {GET}
  scenario: cart
  when_state: full
  respond: {{message: {{name: then}}}}
"""
    admin("AddStubs", session="a", text=text)
    admin("AddStubs", session="b", text=text)
    assert product(emu, "p", "a").name == "first"
    assert product(emu, "p", "a").name == "then"
    assert admin("GetScenario", session="a", name="cart").state == "full"
    assert product(emu, "p", "b").name == "first"  # b's scenario had not moved
    admin("SetScenario", session="a", name="cart", state="started")
    assert product(emu, "p", "a").name == "first"


# -- the admin API's own port, and its guard -------------------------------------------------


def test_admin_port_of_its_own_serves_admin_and_reflection_only() -> None:
    with Emulator(protos=PROTOS, admin={"port": 0}) as emu:
        port = emu.server.admin.port
        assert port and port != emu.server.port
        assert Admin(f"127.0.0.1:{port}")("GetInfo").version
        from tests.test_third_party_clients import grpcurl

        listed = grpcurl(f"127.0.0.1:{port}", "list")
        assert listed.split() == [
            "emulator.admin.v1.Admin",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        on_main = grpcurl(emu.target, "list")
        assert "emulator.admin.v1.Admin" not in on_main.split()
        with pytest.raises(grpc.RpcError) as raised:
            Admin(emu.target)("GetInfo")
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_admin_enabled_false_serves_no_admin_api() -> None:
    with Emulator(protos=PROTOS, admin={"enabled": False}) as emu:
        with pytest.raises(grpc.RpcError) as raised:
            Admin(emu.target)("GetInfo")
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_token_guards_the_admin_api_and_never_shows() -> None:
    with Emulator(protos=PROTOS, admin={"token": "s3cret-admin"}) as emu:
        with pytest.raises(grpc.RpcError) as raised:
            Admin(emu.target)("GetInfo")
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "s3cret" not in (raised.value.details() or "")
        wrong = Admin(emu.target, [("authorization", "Bearer nope")])
        with pytest.raises(grpc.RpcError):
            wrong("GetInfo")
        good = Admin(emu.target, [("authorization", "Bearer s3cret-admin")])
        assert "s3cret" not in str(good("GetInfo"))
        good("AddStubs", stubs=[stub("p1", "guarded", "Guarded")])
        assert product(emu, "p1").name == "Guarded"
        # Admin calls are not in the user's journal.
        assert [c.method for c in emu.calls()] == [GET]


def test_the_emulated_services_tokens_do_not_open_the_admin_api() -> None:
    auth = {"tokens": {"svc-token": {"principal": "ci"}}}
    with Emulator(protos=PROTOS, auth=auth, admin={"token": "adm"}) as emu:
        with pytest.raises(grpc.RpcError) as raised:
            Admin(emu.target, [("authorization", "Bearer svc-token")])("GetInfo")
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert Admin(emu.target, [("authorization", "Bearer adm")])("GetInfo").version


def test_an_unguarded_admin_api_on_a_network_address_refuses_to_start() -> None:
    with pytest.raises(ConfigError) as raised:
        Emulator(protos=PROTOS, server={"host": "0.0.0.0"})
    message = str(raised.value)
    assert "admin.token" in message and "admin.allow_unauthenticated" in message
    assert "0.0.0.0" in message


def test_allow_unauthenticated_starts_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="emulator"),
        Emulator(
            protos=PROTOS, server={"host": "0.0.0.0"}, admin={"allow_unauthenticated": True}
        ) as emu,
    ):
        assert Admin(f"127.0.0.1:{emu.server.port}")("GetInfo").version
    assert any("accepts every caller" in r.getMessage() for r in caplog.records)


def test_emulate_refuses_an_unguarded_admin_api_with_one_line() -> None:
    from tests.conftest import emulate

    done = emulate("--proto", str(PROTOS), "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emulate: error: admin: ")


def test_emulate_banner_names_the_admin_ports() -> None:
    with EmulateProcess(
        "--proto", str(PROTOS), "--admin-port", "0", "--admin-http-port", "0"
    ) as proc:
        [line] = [x for x in proc.header.splitlines() if x.strip().startswith("admin:")]
        assert "emulator.admin.v1.Admin on port " in line
        assert "JSON over HTTP at http://127.0.0.1:" in line
        port = int(line.split("on port ")[1].split(",")[0])
        assert Admin(f"127.0.0.1:{port}")("GetInfo").version


def test_mtls_admin_identities_admit_only_the_listed_clients() -> None:
    from emulator.security import CertificateAuthority

    ca = CertificateAuthority()
    server, ci, bob = (
        ca.issue("emulator"),
        ca.issue("ci", client=True),
        ca.issue("bob", client=True),
    )
    tls = {"cert": server.cert_pem.decode(), "key": server.key_pem.decode()}
    tls["client_ca"] = ca.cert_pem.decode()
    config = {"identities": ["ci"], "port": 0}  # a port of its own, with the same credentials
    with Emulator(protos=PROTOS, tls=tls, admin=config) as emu:
        target = f"127.0.0.1:{emu.server.admin.port}"

        def as_client(cert: Any) -> Admin:
            client = Admin.__new__(Admin)
            creds = grpc.ssl_channel_credentials(ca.cert_pem, cert.key_pem, cert.cert_pem)
            client.channel, client.metadata = grpc.secure_channel(target, creds), ()
            return client

        assert as_client(ci)("GetInfo").version
        with pytest.raises(grpc.RpcError) as raised:
            as_client(bob)("GetInfo")
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_admin_identities_without_mutual_tls_are_refused_at_start() -> None:
    with pytest.raises(ConfigError) as raised:
        Emulator(protos=PROTOS, admin={"identities": ["ci"]})
    assert "admin.identities" in str(raised.value) and "tls.client_ca" in str(raised.value)


def test_a_page_is_built_with_the_collector_held_off_and_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full collections were a third of a 10,000-call page's time: none run while it is built,
    and the collector is as it was afterwards (still off if a test had turned it off)."""
    import gc

    from emulator.admin.operations import Operations

    seen: list[bool] = []
    real = Operations._page

    def watched(self: Operations, *args: Any) -> Any:
        seen.append(gc.isenabled())
        return real(self, *args)

    monkeypatch.setattr(Operations, "_page", watched)
    with Emulator(protos=PROTOS, seed=3) as emu:
        product(emu, "p1")
        own = Admin(emu.target)
        assert len(own("ListCalls").calls) == 1
        assert seen == [False] and gc.isenabled()
        gc.disable()
        try:
            assert len(own("ListCalls", raw_only=True).calls) == 1
            assert seen == [False, False] and not gc.isenabled()
        finally:
            gc.enable()
        own.channel.close()


def test_the_collector_comes_back_when_a_page_fails() -> None:
    import gc

    from emulator.admin.operations import collections_paused

    with pytest.raises(RuntimeError), collections_paused():
        assert not gc.isenabled()
        raise RuntimeError("a page that could not be built")
    assert gc.isenabled()

"""Telemetry with real parts: spans received by a real OTLP receiver (opentelemetry-proto's
TraceService, served here), /metrics scraped with curl and parsed by prometheus-client's parser,
the access log read back from its file."""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from emulator import Emulator
from tests.conftest import PROTOS, trace_receiver, wait_until

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span exported to it."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend((resource.resource, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    found = Receiver()
    with trace_receiver(found) as port:
        yield found, port


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_spans_reach_an_otlp_receiver_inside_the_callers_trace(
    receiver: tuple[Receiver, int],
) -> None:
    found, port = receiver
    telemetry = {"traces": {"endpoint": f"http://127.0.0.1:{port}"}}
    auth = {"tokens": {"good-token": {"principal": "ci"}}, "exempt": [f"{CATALOG}/*"]}
    faults = [
        {"name": "flaky", "match": {"method": f"{ORDERS}/Ping"}, "abort": {"code": "UNAVAILABLE"}}
    ]
    with Emulator(protos=PROTOS, telemetry=telemetry, auth=auth, faults=faults) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"}, metadata=[("traceparent", PARENT)])
        list(emu.stub(CATALOG).ListProducts({}))
        with pytest.raises(grpc.RpcError):  # no token: refused
            emu.stub(ORDERS).CreateOrder({})
        with pytest.raises(grpc.RpcError):  # a fault
            emu.stub(ORDERS).Ping({}, metadata=[("authorization", "Bearer good-token")])
        port_served = emu.server.port
    spans = {span.name: (resource, span) for resource, span in found.spans}
    gets = [
        (s.trace_id.hex(), attributes(s)) for _, s in found.spans if s.name.endswith("/GetProduct")
    ]
    assert len(gets) == 1, gets
    resource, get = spans[f"{CATALOG}/GetProduct"]
    assert get.trace_id.hex() == TRACE_ID
    assert get.parent_span_id.hex() == "00f067aa0ba902b7"
    assert get.kind == get.SPAN_KIND_SERVER
    attrs = attributes(get)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == CATALOG and attrs["rpc.method"] == "GetProduct"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == port_served
    assert attrs["emulator.responder"] == "default"
    assert [e.name for e in get.events] == ["responder"]
    assert {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"] == (
        "grpc-emulator"
    )
    _, stream = spans[f"{CATALOG}/ListProducts"]
    assert attributes(stream)["rpc.response.messages"] == 3
    assert stream.trace_id.hex() != TRACE_ID  # no traceparent: a trace of its own
    _, refused = spans[f"{ORDERS}/CreateOrder"]
    assert attributes(refused)["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert attributes(refused)["error.type"] == "UNAUTHENTICATED"
    assert [e.name for e in refused.events] == ["auth.refused"]
    assert refused.status.code == refused.status.STATUS_CODE_ERROR
    _, faulted = spans[f"{ORDERS}/Ping"]
    events = {e.name: e for e in faulted.events}
    assert set(events) == {"auth.admitted", "fault"}
    fault = {kv.key: kv.value.string_value for kv in events["fault"].attributes}
    assert fault == {"emulator.fault.rule": "flaky", "emulator.fault.kind": "abort"}
    assert attributes(faulted)["enduser.id"] == "ci"


def test_emu_spans_keeps_the_finished_spans_and_reset_clears_them() -> None:
    with Emulator(protos=PROTOS, telemetry={"traces": {"enabled": True}}) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        [span] = emu.spans()
        assert span.name == f"{CATALOG}/GetProduct"
        assert span.attributes["rpc.method"] == "GetProduct"
        assert span.attributes["emulator.responder"] == "default"  # no behaviour: no child
        # A request id made for the call: on the span and, as a proxy would add it, a header.
        made = span.attributes["emulator.request_id"]
        assert len(made) == 32
        assert emu.calls()[0].metadata["x-request-id"] == made
        emu.reset()
        assert emu.spans() == []


def test_the_sampler_decides_as_the_sdk_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsampled = f"00-{TRACE_ID}-00f067aa0ba902b7-00"  # the caller's trace, not sampled
    out = tmp_path / "access.jsonl"
    telemetry = {"traces": {"enabled": True}}
    log = {"access": "all", "access_file": str(out)}
    with Emulator(protos=PROTOS, telemetry=telemetry, log=log) as emu:
        emu.stub(CATALOG).GetProduct({}, metadata=[("traceparent", unsampled)])
        assert emu.spans() == []  # ParentBased: an unsampled parent's child is not recorded
        emu.stub(CATALOG).GetProduct({}, metadata=[("traceparent", PARENT)])
        [span] = emu.spans()
        assert span.context.trace_flags.sampled and span.parent is not None
        assert span.parent.is_remote
        lines = wait_until(
            lambda: (
                len(found := out.read_text().splitlines()) == 2 and found if out.exists() else None
            )
        )
    # Not recorded, it still has ids of the caller's trace, for the log to name.
    first, second = (json.loads(line) for line in lines)
    assert first["trace_id"] == second["trace_id"] == TRACE_ID
    assert first["span_id"] and first["span_id"] != second["span_id"]
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the standard variable holds
    with Emulator(protos=PROTOS, telemetry=telemetry) as emu:
        emu.stub(CATALOG).GetProduct({}, metadata=[("traceparent", PARENT)])
        assert emu.spans() == []


def test_a_behaviour_gets_a_child_span_of_its_own_time() -> None:
    import time as _time

    def slow(request: Any, ctx: Any) -> None:
        _time.sleep(0.02)  # the behaviour's own work, as the child span should show

    with Emulator(protos=PROTOS, telemetry={"traces": {"enabled": True}}) as emu:
        with emu.override(f"{CATALOG}/GetProduct", slow):
            emu.stub(CATALOG).GetProduct({"product_id": "p1"})
        child, parent = emu.spans()
    assert (child.name, parent.name) == ("behaviour", f"{CATALOG}/GetProduct")
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.attributes["emulator.responder"].startswith("override")
    took = (child.end_time - child.start_time) / 1e9
    assert 0.02 <= took <= (parent.end_time - parent.start_time) / 1e9


def scrape(port: int) -> dict[str, Any]:
    text = subprocess.run(
        ["curl", "-sf", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_metrics_are_served_and_parse(tmp_path: Path) -> None:
    stubs = [
        {
            "name": "p1",
            "method": f"{CATALOG}/GetProduct",
            "match": {"request": {"product_id": "p1"}},
            "respond": {"message": {"name": "One"}},
        }
    ]
    faults = [{"name": "down", "match": {"method": f"{ORDERS}/Ping"}, "abort": {"code": "ABORTED"}}]
    telemetry = {"metrics": {"port": 0}}
    with Emulator(protos=PROTOS, telemetry=telemetry, stubs=stubs, faults=faults) as emu:
        stub = emu.stub(CATALOG)
        stub.GetProduct({"product_id": "p1"})
        stub.GetProduct({"product_id": "p2"})
        with pytest.raises(grpc.RpcError):
            emu.stub(ORDERS).Ping({})
        families = scrape(emu.server.telemetry.metrics_port)
    duration = families["rpc_server_call_duration_seconds"]
    counts = samples(
        duration,
        "rpc_server_call_duration_seconds_count",
        rpc_method="GetProduct",
        rpc_grpc_status_code="0",
        responder="stub",
    )
    assert counts == [1.0]
    assert samples(duration, "rpc_server_call_duration_seconds_count", responder="default") == [1.0]
    aborted = str(grpc.StatusCode.ABORTED.value[0])
    assert samples(
        duration, "rpc_server_call_duration_seconds_count", rpc_grpc_status_code=aborted
    ) == [1.0]
    assert samples(
        families["emulator_faults_injected"],
        "emulator_faults_injected_total",
        rule="down",
        kind="abort",
    ) == [1.0]
    assert samples(families["emulator_stub_matches"], "emulator_stub_matches_total", stub="p1") == [
        1.0
    ]
    assert samples(families["emulator_stub_misses"], "emulator_stub_misses_total") == [1.0]
    assert samples(
        families["rpc_server_calls_in_flight"],
        "rpc_server_calls_in_flight",
        rpc_method="GetProduct",
    ) == [0.0]
    assert samples(families["emulator_journal_records"], "emulator_journal_records") == [3.0]
    assert "process_resident_memory_bytes" in families


def test_the_access_log_has_a_line_per_call_and_no_token(tmp_path: Path) -> None:
    out = tmp_path / "access.jsonl"
    auth = {"tokens": {"tok-secret": {"principal": "ci"}}}
    log = {"access": "all", "access_file": str(out)}
    telemetry = {"traces": {"enabled": True}}
    with Emulator(protos=PROTOS, log=log, auth=auth, telemetry=telemetry) as emu:
        emu.stub(CATALOG).GetProduct(
            {"product_id": "p1"},
            metadata=[
                ("authorization", "Bearer tok-secret"),
                ("x-request-id", "req-42"),
                ("x-emulator-session", "s9"),
            ],
        )
        with pytest.raises(grpc.RpcError):
            emu.stub(CATALOG).GetProduct({})
        [span, _] = emu.spans()
        # Flushed while serving (once the event loop's turn is over), not only at the stop.
        lines = wait_until(
            lambda: (
                len(found := out.read_text().splitlines()) == 2 and found if out.exists() else None
            )
        )
    assert "tok-secret" not in out.read_text()
    first, second = (json.loads(line) for line in lines)
    assert first["method"] == f"{CATALOG}/GetProduct" and first["code"] == "OK"
    assert first["principal"] == "ci" and first["session"] == "s9"
    assert first["request_id"] == "req-42" and first["responder"] == "default"
    assert first["trace_id"] == format(span.context.trace_id, "032x")
    assert second["code"] == "UNAUTHENTICATED" and len(second["request_id"]) == 32
    assert second["details"]


def test_the_request_id_comes_back_in_the_response_headers() -> None:
    faults = [{"name": "f", "match": {"method": f"{ORDERS}/Ping"}, "abort": {"code": "ABORTED"}}]
    with Emulator(protos=PROTOS, log={"access": "errors"}, faults=faults) as emu:
        channel = emu.channel()
        unary = channel.unary_unary(f"/{CATALOG}/GetProduct")
        _, call = unary.with_call(b"", metadata=[("x-request-id", "mine-1")], timeout=10)
        assert dict(call.initial_metadata())["x-request-id"] == "mine-1"
        _, call = unary.with_call(b"", timeout=10)
        made = dict(call.initial_metadata())["x-request-id"]
        assert len(made) == 32
        assert emu.calls()[-1].metadata["x-request-id"] == made
        stream = channel.unary_stream(f"/{CATALOG}/ListProducts")(b"", timeout=10)
        assert dict(stream.initial_metadata())["x-request-id"]
        assert len(list(stream)) == 3
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(f"/{ORDERS}/Ping")(
                b"", metadata=[("x-request-id", "r-9")], timeout=10
            )
        assert dict(failed.value.initial_metadata())["x-request-id"] == "r-9"


def test_the_request_id_can_come_back_in_the_trailers_instead() -> None:
    faults = [{"name": "f", "match": {"method": f"{ORDERS}/Ping"}, "abort": {"code": "ABORTED"}}]

    def answer(request: Any, ctx: Any) -> None:
        ctx.set_trailing_metadata([("x-from-behaviour", "yes")])

    telemetry = {"request_id_response": "trailers"}
    with Emulator(
        protos=PROTOS, log={"access": "errors"}, telemetry=telemetry, faults=faults
    ) as emu:
        channel = emu.channel()
        unary = channel.unary_unary(f"/{CATALOG}/GetProduct")
        _, call = unary.with_call(b"", timeout=10)
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32 and "x-request-id" not in dict(call.initial_metadata())
        assert emu.calls()[-1].metadata["x-request-id"] == made
        with emu.override(f"{CATALOG}/GetProduct", answer):
            _, call = unary.with_call(b"", metadata=[("x-request-id", "r-2")], timeout=10)
        trailers = dict(call.trailing_metadata())
        assert trailers["x-request-id"] == "r-2" and trailers["x-from-behaviour"] == "yes"
        stream = channel.unary_stream(f"/{CATALOG}/ListProducts")(b"", timeout=10)
        assert len(list(stream)) == 3
        assert dict(stream.trailing_metadata())["x-request-id"]
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(f"/{ORDERS}/Ping")(
                b"", metadata=[("x-request-id", "r-9")], timeout=10
            )
        assert failed.value.code() == grpc.StatusCode.ABORTED
        assert dict(failed.value.trailing_metadata())["x-request-id"] == "r-9"


def test_the_request_id_need_not_come_back_at_all() -> None:
    with Emulator(
        protos=PROTOS, log={"access": "errors"}, telemetry={"request_id_response": "off"}
    ) as emu:
        unary = emu.channel().unary_unary(f"/{CATALOG}/GetProduct")
        _, call = unary.with_call(b"", timeout=10)
        back = {*dict(call.initial_metadata()), *dict(call.trailing_metadata())}
        assert "x-request-id" not in back
        assert len(emu.calls()[-1].metadata["x-request-id"]) == 32  # still made, and journalled


def test_the_request_id_joins_the_headers_a_behaviour_sends() -> None:
    def answer(request: Any, ctx: Any) -> None:
        ctx.set_initial_metadata([("x-from-behaviour", "yes")])

    with Emulator(protos=PROTOS, log={"access": "errors"}) as emu:
        with emu.override(f"{CATALOG}/GetProduct", answer):
            unary = emu.channel().unary_unary(f"/{CATALOG}/GetProduct")
            _, call = unary.with_call(b"", metadata=[("x-request-id", "r-1")], timeout=10)
        headers = dict(call.initial_metadata())
        assert headers["x-request-id"] == "r-1" and headers["x-from-behaviour"] == "yes"


def test_the_access_log_time_is_utc_to_the_millisecond_as_datetime_writes_it() -> None:
    from emulator.telemetry.access import AccessLog

    log = AccessLog("all", session_header="x", request_id=str, trace_ids=lambda call: ("", ""))
    for started in (0.0, 0.9999996, 1700000000.5, 1700000000.0005, 1764990000.123456, 2e9 - 1e-7):
        expected = datetime.datetime.fromtimestamp(started, datetime.UTC)
        assert log._time(started) == expected.isoformat(timespec="milliseconds"), started

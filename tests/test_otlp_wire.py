"""The bytes otlp_wire writes against opentelemetry's own encoder, over spans a real
TracerProvider made, and WireSpanExporter sending them to a real OTLP/gRPC receiver."""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as standard_encode
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from emulator import Emulator
from emulator.telemetry import otlp_exporter, otlp_wire
from emulator.telemetry.otlp_exporter import WireSpanExporter
from emulator.telemetry.otlp_wire import encode_spans
from tests.conftest import PROTOS, trace_receiver, wait_until

CATALOG = "acme.shop.v1.Catalog"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(autouse=True)
def _fast_path_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """encode_spans falls back to the standard encoder for spans it cannot write: were it to
    here, the comparisons below would compare the standard encoder with itself."""
    if "fallback" in request.node.name:
        return

    def refuse(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        raise AssertionError("otlp_wire fell back to the standard encoder")

    monkeypatch.setattr(trace_encoder, "encode_spans", refuse)


def assert_same(spans: Sequence[ReadableSpan]) -> bytes:
    """Our bytes parse into the standard encoder's message; they are its bytes, too (protobuf
    writes fields in number order, as otlp_wire does: the stronger check of field presence)."""
    ours = encode_spans(spans)
    expected = standard_encode(spans)
    assert ExportTraceServiceRequest.FromString(ours) == expected
    assert ours == expected.SerializeToString()
    return ours


def provider(resource: Resource, limits: SpanLimits | None = None) -> tuple[TracerProvider, Any]:
    made = TracerProvider(resource=resource, span_limits=limits)
    found = InMemorySpanExporter()
    made.add_span_processor(SimpleSpanProcessor(found))
    return made, found


class Level(enum.IntEnum):
    HIGH = 7


class Tag(str):
    """A str subclass: the standard encoder takes it as a string."""


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


PLAIN: dict[str, Any] = {
    "str": "value",
    "empty": "",
    "unicode": "héllo ✓ 日本 \U0001f600",
    "true": True,
    "false": False,
    "zero": 0,
    "one": 1,
    "negative": -1,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "big": 2**40 + 3,
    "float.zero": 0.0,
    "float.negative.zero": -0.0,
    "float": 1.5,
    "float.tiny": 5e-324,
    "inf": math.inf,
    "minus.inf": -math.inf,
    "strs": ("a", "", "ü"),
    "bools": (True, False),
    "ints": (0, -1, 2**63 - 1, -(2**63)),
    "floats": (1.5, -2.25),
    "empty.list": (),
    "with.none": ("a", None),
    "": "empty key",
    "ключ": "unicode key",
}
EXTENDED: dict[str, Any] = {  # what the SDK keeps beyond the plain types: the fallback's
    "bytes": b"\x00\xff",
    "none": None,
    "mapping": {"k": 1, "nested": {"x": ["y", 2]}},
    "mixed": [1, "a", 2.5, True],
    "nested": [[1, 2], ["a"]],
    "enum": Level.HIGH,
    "str.subclass": Tag("tagged"),
    "opaque": Opaque(),  # str()'d by the SDK
}
TOO_BIG = {"int64.max+1": 2**63, "int64.min-1": -(2**63) - 1, "uint64": 2**64 - 1}


def rich_spans() -> list[ReadableSpan]:
    """Spans of every shape the SDK makes, from two providers and three scopes, interleaved."""
    first, found_first = provider(
        Resource.create({"service.name": "first", "deployment": ("a", "b"), "n": 3})
    )
    limits = SpanLimits(
        max_span_attributes=3,
        max_events=2,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )
    second, found_second = provider(
        Resource({"service.name": "second"}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
        limits,
    )
    tracers = [
        first.get_tracer("scope.one", "1.2.3", schema_url="https://example.com/s", attributes={}),
        first.get_tracer("scope.two"),
        first.get_tracer("scope.three", "0.1", attributes={"scope.attr": "v", "scope.n": 5}),
        second.get_tracer("limited", "9"),
    ]
    remote = TraceContextTextMapPropagator().extract(
        {"traceparent": TRACEPARENT, "tracestate": "vendor=value,other=x"}
    )
    remote_context = trace.get_current_span(remote).get_span_context()
    local_context = SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(0)
    )
    for index, tracer in enumerate(tracers):
        root = tracer.start_span("root", kind=SpanKind.SERVER, attributes=PLAIN)
        root.add_event("plain", PLAIN)
        root.add_event("no attributes")
        root.add_event("", {"at": "timed"}, timestamp=1_700_000_000_000_000_001)
        root.set_attributes(EXTENDED)
        root.set_status(Status(StatusCode.ERROR, "broke: ünïcode"))
        child = tracer.start_span(
            f"child ✓ {index}",
            context=trace.set_span_in_context(root),
            kind=SpanKind.CLIENT,
            links=[
                Link(remote_context, {"link.attr": 1, "link.more": "x"}),
                Link(local_context),
            ],
            start_time=1,
        )
        child.set_status(StatusCode.OK)
        child.end(end_time=2**63)
        with_remote_parent = tracer.start_span(
            "", context=remote, kind=SpanKind.PRODUCER, attributes={"k": "v"}
        )
        with_remote_parent.set_status(Status(StatusCode.ERROR))  # no description
        with_remote_parent.end()
        tracer.start_span("consumer", kind=SpanKind.CONSUMER).end()
        tracer.start_span("internal").end()
        root.end()
    spans = list(found_first.get_finished_spans()) + list(found_second.get_finished_spans())
    spans += [
        # Built by hand: no scope, plain dicts, no end, each its own (equal) empty resource.
        ReadableSpan("raw", context=local_context, attributes={"a": 1, "": "x"}, start_time=5),
        ReadableSpan("raw 2", context=local_context, parent=remote_context),
    ]
    random.Random(7).shuffle(spans)  # the grouping, not the order they were made in, decides
    return spans


def test_rich_spans_encode_as_the_standard_encoder_does() -> None:
    spans = rich_spans()
    encoded = ExportTraceServiceRequest.FromString(assert_same(spans))
    # What the spans were made to hold is there: groups, drops, flags, a remote parent.
    assert len(encoded.resource_spans) == 3  # two providers, the equal empty resources as one
    limited = [s for r in encoded.resource_spans for sc in r.scope_spans for s in sc.spans]
    assert any(s.dropped_attributes_count for s in limited)
    assert any(s.dropped_events_count for s in limited)
    assert any(s.dropped_links_count for s in limited)
    assert any(s.flags == 0x300 and s.trace_state == "vendor=value,other=x" for s in limited)
    for one in spans:  # and one at a time
        assert_same([one])


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == b"" == standard_encode([]).SerializeToString()


def test_values_that_do_not_fit_are_dropped_and_logged_as_the_standard_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made, found = provider(Resource.create({}))
    span = made.get_tracer("t").start_span("s", attributes={**TOO_BIG, "kept": 1})
    span.set_attribute("array.too.big", (1, 2**64))
    span.set_attribute("\ud800", "lone surrogate key")
    span.add_event("e", {"surrogate": "\udfff", "kept": True})
    span.end()
    [finished] = found.get_finished_spans()
    context = finished.get_span_context()
    odd_key: dict[Any, Any] = {1: "int key", "kept": 2}
    by_hand = ReadableSpan("by hand", context=context, attributes=odd_key)
    with caplog.at_level(logging.ERROR):
        encoded = ExportTraceServiceRequest.FromString(assert_same([finished, by_hand]))
    [kept, kept_by_hand] = [
        s for r in encoded.resource_spans for scope in r.scope_spans for s in scope.spans
    ]
    assert [kv.key for kv in kept.attributes] == ["kept"]
    assert [kv.key for kv in kept.events[0].attributes] == ["kept"]
    assert [kv.key for kv in kept_by_hand.attributes] == ["kept"]
    ours = [r for r in caplog.records if r.name == otlp_wire.__name__]
    assert len(ours) == len(TOO_BIG) + 4  # a line per attribute left out, as theirs logs


def odd_event() -> Any:
    class Odd(Event):
        @property
        def dropped_attributes(self) -> int:
            return -1

    return Odd("odd", timestamp=1)


def test_spans_the_sdk_would_not_make_fallback_to_the_standard_encoder() -> None:
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    odd = ReadableSpan(b"a name in bytes", context=context)  # type: ignore[arg-type]
    assert_same([odd])
    negative = ReadableSpan("negative", context=context, events=[odd_event()])
    with pytest.raises(ValueError):  # a uint32 below 0: theirs refuses it, so ours does
        standard_encode([negative])
    with pytest.raises(ValueError):
        encode_spans([negative])
    with pytest.raises(AttributeError):  # the standard encoder's own error
        encode_spans([ReadableSpan("no context")])


def test_nan_encodes_as_the_standard_encoder_does() -> None:
    made, found = provider(Resource.create({}))
    made.get_tracer("t").start_span("s", attributes={"nan": math.nan}).end()
    spans = found.get_finished_spans()
    assert encode_spans(spans) == standard_encode(spans).SerializeToString()  # NaN != NaN


def emulator_like(count: int, request_ids: bool = True) -> list[ReadableSpan]:
    made, found = provider(Resource.create({"service.name": "grpc-emulator"}))
    tracer = made.get_tracer("grpc-emulator")
    for index in range(count):
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": CATALOG,
            "rpc.method": ("GetProduct", "ListProducts")[index % 2],
            "server.address": "127.0.0.1",
            "server.port": 50051,
        }
        if request_ids:
            attributes["emulator.request_id"] = f"{index:032x}"
        span = tracer.start_span(
            f"{CATALOG}/GetProduct", kind=SpanKind.SERVER, attributes=attributes
        )
        span.set_attributes({"rpc.grpc.status_code": index % 3, "emulator.responder": "default"})
        span.add_event("responder")
        span.end()
    return list(found.get_finished_spans())


def test_a_key_with_other_values_and_types_is_not_answered_from_the_cache() -> None:
    made, found = provider(Resource.create({}))
    tracer = made.get_tracer("t")
    for value in ("a", "b", True, 1, 1.0, False, 0, "", 0.0, -1, "1"):
        tracer.start_span("s", attributes={"k": value}).end()
        tracer.start_span("e").add_event("e", {"k": value})
    spans = found.get_finished_spans()
    for span in spans:  # one at a time, the cache filled by the ones before
        assert_same([span])
    assert_same(spans)


def test_a_cleared_or_overflowing_cache_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = emulator_like(64)
    first = assert_same(spans)
    otlp_wire._SPAN_ATTRIBUTES.clear()
    otlp_wire._EVENT_ATTRIBUTES.clear()
    assert encode_spans(spans) == first
    monkeypatch.setattr(otlp_wire, "_CACHE_MAX", 5)  # cleared over and over as spans go by
    otlp_wire._SPAN_ATTRIBUTES.clear()
    for _ in range(3):
        assert encode_spans(spans) == first
        assert len(otlp_wire._SPAN_ATTRIBUTES) <= 5
    assert_same(rich_spans())


def test_resources_and_scopes_of_new_providers_are_not_taken_for_old_ones() -> None:
    # Providers made and dropped one after another: ids get reused, the cache must not care.
    for index in range(20):
        made, found = provider(Resource.create({"service.name": f"s{index}"}))
        made.get_tracer(f"scope{index}", str(index)).start_span("s").end()
        encoded = ExportTraceServiceRequest.FromString(assert_same(found.get_finished_spans()))
        [resource] = encoded.resource_spans
        assert resource.scope_spans[0].scope.name == f"scope{index}"


# A real receiver: opentelemetry-proto's TraceService, keeping each request and its headers.


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[tuple[ExportTraceServiceRequest, dict[str, str]]] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.requests.append((request, dict(context.invocation_metadata())))
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Any]:
        with self.lock:
            return [
                span
                for request, _ in self.requests
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    found = Receiver()
    with trace_receiver(found) as port:
        yield found, port


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_the_exporter_delivers_what_the_standard_encoder_would_have_sent(
    receiver: tuple[Receiver, int], compression: grpc.Compression | None
) -> None:
    found, port = receiver
    exporter = WireSpanExporter(
        endpoint=f"http://127.0.0.1:{port}",
        insecure=True,
        headers={"x-team": "emulator"},
        compression=compression,
    )
    spans = rich_spans()
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        # The channel made again, as after UNAVAILABLE: still our stub, still bytes.
        exporter._initialize_channel_and_stub()
        assert isinstance(exporter._client, otlp_exporter._BytesTraceServiceStub)
        assert exporter.export(spans[:3]) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    [(first, headers), (second, _)] = found.requests
    assert first == standard_encode(spans)
    assert second == standard_encode(spans[:3])
    assert headers["x-team"] == "emulator"


def test_the_exporter_reads_the_otlp_variables(
    receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, port = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-from-env=yes")
    exporter = WireSpanExporter()
    try:
        assert exporter.export(emulator_like(3)) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    [(request, headers)] = found.requests
    assert headers["x-from-env"] == "yes"
    assert len(request.resource_spans[0].scope_spans[0].spans) == 3


def test_the_emulator_exports_through_otlp_wire(
    receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, port = receiver
    encoded: list[int] = []

    def counting(spans: Sequence[ReadableSpan]) -> bytes:
        encoded.append(len(spans))
        return encode_spans(spans)

    monkeypatch.setattr(otlp_exporter, "encode_spans", counting)
    telemetry = {"traces": {"endpoint": f"http://127.0.0.1:{port}"}}
    with Emulator(protos=PROTOS, telemetry=telemetry) as emu:
        emu.stub(CATALOG).GetProduct({"product_id": "p1"}, metadata=[("traceparent", TRACEPARENT)])
        [span] = wait_until(found.spans)
        assert span.name == f"{CATALOG}/GetProduct"
        assert span.trace_id.hex() == TRACEPARENT.split("-")[1]
        assert span.flags == 0x300  # its parent is the caller's, a remote one
    assert sum(encoded) == 1

"""Micro-benchmark: opentelemetry's `encode_spans` against emulator.telemetry.otlp_wire's.

    python bench/otlp_encode.py [--spans 512] [--rounds 15]

One batch of `--spans` spans shaped like the emulator's (tracing interceptor's attributes and
events, a unique request id each, half with a remote parent), made by a real TracerProvider, is
encoded `--rounds` times by each, alternating. Standard: `encode_spans(spans)` alone, and with
the `SerializeToString()` grpc then runs in the exporter's thread (what a batch really costs).
Ours: "steady", as in a running emulator (the caches hold the common values, each request id is
new), "warm" (every value a hit) and "cold" (the caches cleared before each round). Prints the
medians (and bests) in µs per span; single thread, a few seconds of CPU. Checks first that both
encoders agree on the batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as standard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from emulator.telemetry import otlp_wire

SERVICE = "acme.shop.v1.Catalog"
METHODS = ("GetProduct", "ListProducts", "SearchProducts")


def emulator_spans(count: int) -> list[ReadableSpan]:
    """What emulator/telemetry/traces.py makes per call."""
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-emulator"}))
    found = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(found))
    tracer = provider.get_tracer("grpc-emulator")
    propagator = TraceContextTextMapPropagator()
    for index in range(count):
        method = METHODS[index % len(METHODS)]
        carrier = {"traceparent": f"00-{index + 1:032x}-{index + 1:016x}-01"} if index % 2 else {}
        span = tracer.start_span(
            f"{SERVICE}/{method}",
            context=propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": SERVICE,
                "rpc.method": method,
                "server.address": "127.0.0.1",
                "server.port": 50051,
                "network.peer.address": "127.0.0.1",
                "emulator.request_id": f"{index:032x}",
            },
        )
        failed = index % 10 == 0
        attributes: dict[str, Any] = {
            "rpc.grpc.status_code": 14 if failed else 0,
            "rpc.request.messages": 1,
            "rpc.response.messages": 3 if method == "ListProducts" else 1,
            "emulator.responder": "default",
        }
        if failed:
            attributes["error.type"] = "UNAVAILABLE"
        span.set_attributes(attributes)
        span.add_event("responder")
        if failed:
            fault = {"emulator.fault.rule": "flaky", "emulator.fault.kind": "abort"}
            span.add_event("fault", fault)
            span.set_status(Status(StatusCode.ERROR, "injected"))
        span.end()
    trace.get_tracer_provider()  # nothing global is set: the provider above is ours alone
    return list(found.get_finished_spans())


def clear_caches() -> None:
    for cache in (
        otlp_wire._SPAN_ATTRIBUTES,
        otlp_wire._EVENT_ATTRIBUTES,
        otlp_wire._LINK_ATTRIBUTES,
        otlp_wire._RESOURCES,
        otlp_wire._SCOPES,
    ):
        cache.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    spans = emulator_spans(args.spans)
    expected = standard(spans)
    assert ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(spans)) == expected
    assert otlp_wire.encode_spans(spans) == expected.SerializeToString()

    steady_times: list[float] = []

    def cold() -> None:
        clear_caches()
        otlp_wire.encode_spans(spans)

    def steady() -> None:
        cache = otlp_wire._SPAN_ATTRIBUTES
        for key in [key for key in cache if key[0] == "emulator.request_id"]:
            del cache[key]  # a new batch: new request ids (outside the timed call)
        started = time.perf_counter()
        otlp_wire.encode_spans(spans)
        steady_times.append(time.perf_counter() - started)

    variants: dict[str, Callable[[], object]] = {
        "standard encode_spans": lambda: standard(spans),
        "standard + SerializeToString": lambda: standard(spans).SerializeToString(),
        "otlp_wire, steady": steady,
        "otlp_wire, warm caches": lambda: otlp_wire.encode_spans(spans),
        "otlp_wire, cold caches": cold,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    times["otlp_wire, steady"] = steady_times  # its own timing: the encoding alone
    base = statistics.median(times["standard + SerializeToString"])
    print(f"{args.spans} emulator-like spans, {args.rounds} rounds: µs a span, median (best)")
    for name, runs in times.items():
        median, best = statistics.median(runs), min(runs)
        per_span, best_per_span = median / args.spans * 1e6, best / args.spans * 1e6
        print(
            f"  {name:30} {per_span:7.2f} ({best_per_span:6.2f})"
            f"  {base / median:5.1f}x faster than standard + serialize"
        )


if __name__ == "__main__":
    main()

"""A server span per call, of every kind, after OpenTelemetry's RPC semantic conventions.

A chain interceptor rather than opentelemetry-instrumentation-grpc's server interceptor: only the
chain sees what a span of an emulator should say — which stub, behaviour or default answered,
the faults injected, the auth decision — and it sees refused, faulted and unimplemented calls
like any other. The span's parent is the caller's W3C `traceparent`, so the emulator's spans sit
inside the test's (or the system under test's) trace.

Spans go to OTLP/gRPC (`telemetry.traces.endpoint`, or the standard `OTEL_EXPORTER_OTLP_*`
variables; `otlp_exporter.py` sends them) and the last `telemetry.traces.keep` stay in memory for
`emu.spans()`. The provider is the emulator's own, never the global one: a test's own tracing
set-up is left alone.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.telemetry.config import OTLP_ENV, TracesConfig

__all__ = ["Kept", "TracingInterceptor", "trace_ids"]

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_PARENT = Context()
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class Kept(SpanProcessor):
    """The last `keep` finished spans, for tests to read."""

    def __init__(self, keep: int) -> None:
        self.spans: deque[ReadableSpan] = deque(maxlen=keep)

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class TracingInterceptor(Interceptor):
    """Starts a span when a call starts, ends it with the call's status."""

    def __init__(
        self,
        config: TracesConfig,
        address: Callable[[], tuple[str, int | None]],
        request_id: Callable[[Call], str] = lambda call: "",
    ) -> None:
        self._address = address  # (host, port) the server listens on, once it does
        self._request_id = request_id
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name})
        )
        self.kept = Kept(config.keep)
        self.provider.add_span_processor(self.kept)
        if config.endpoint or any(os.environ.get(v) for v in OTLP_ENV):
            # opentelemetry's exporter, its requests written as bytes (otlp_wire): its own
            # encoder costs tens of µs a span, holding the GIL the event loop needs.
            from emulator.telemetry.otlp_exporter import WireSpanExporter

            endpoint = config.endpoint or None  # None: the exporter reads OTEL_EXPORTER_OTLP_*
            insecure = None if endpoint is None else not endpoint.startswith("https://")
            exporter = WireSpanExporter(endpoint=endpoint, insecure=insecure)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("grpc-emulator")

    def spans(self) -> list[ReadableSpan]:
        return list(self.kept.spans)

    def clear(self) -> None:
        self.kept.spans.clear()

    def shutdown(self) -> None:
        """Export what is left (the batch processor's queue) and stop."""
        self.provider.shutdown()

    async def before(self, call: Call) -> None:
        parent = _NO_PARENT  # a root span, whatever context the server's task inherited
        for key, _ in call.metadata:
            if key == "traceparent":  # (only then a carrier: most calls come without one)
                parent = _PROPAGATOR.extract({k: v for k, v in call.metadata if isinstance(v, str)})
                break
        host, port = self._address()
        spec = call.spec
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": spec.service,
            "rpc.method": spec.method,
            "server.address": host,
        }
        if port is not None:
            attributes["server.port"] = port
        peer = _peer_address(call.peer)
        if peer:
            attributes["network.peer.address"] = peer
        request_id = self._request_id(call)
        if request_id:
            attributes["emulator.request_id"] = request_id
        span = self._tracer.start_span(
            f"{spec.service}/{spec.method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=int(call.started * 1e9),
        )
        self.set_state(call, span)

    def after(self, call: Call) -> None:
        span = self.state(call)
        if span is None:
            return
        code = call.code
        # One set_attributes: the SDK checks each value, and takes its lock, per call of it.
        attributes: dict[str, Any] = {
            "rpc.grpc.status_code": code.value[0],
            "rpc.request.messages": call.requests.count,
            "rpc.response.messages": call.responses.count,
        }
        if call.answered_by:
            attributes["emulator.responder"] = call.answered_by
        if call.principal:
            attributes["enduser.id"] = call.principal
        if code != grpc.StatusCode.OK:
            attributes["error.type"] = code.name
        span.set_attributes(attributes)
        if call.answered_by:
            span.add_event("responder")  # what answered: the emulator.responder attribute
        if code in _REFUSED and not call.answered_by:
            span.add_event(
                "auth.refused", {"rpc.grpc.status_code": code.value[0], "reason": call.details}
            )
        elif call.principal or call.identities:
            span.add_event("auth.admitted", {"enduser.id": call.principal or call.identities[0]})
        for rule, kind in zip(call.faults, call.fault_kinds, strict=False):
            span.add_event("fault", {"emulator.fault.rule": rule, "emulator.fault.kind": kind})
        if code != grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, call.details))
        if call.behaviour_time is not None:  # the behaviour's own time, as a child span
            first, last = call.behaviour_time
            child = self._tracer.start_span(
                "behaviour",
                context=trace.set_span_in_context(span),
                kind=SpanKind.INTERNAL,
                attributes={"emulator.responder": call.answered_by},
                start_time=int(first * 1e9),
            )
            child.end(end_time=int(last * 1e9))
        span.end(end_time=int((call.started + call.duration) * 1e9))


def _peer_address(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` → `127.0.0.1`; `ipv6:[::1]:5000` → `::1`."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def trace_ids(call: Call, interceptor: TracingInterceptor | None) -> tuple[str, str]:
    """The call's trace and span ids in hex ("" without a span)."""
    span = interceptor.state(call) if interceptor is not None else None
    if span is None:
        return "", ""
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

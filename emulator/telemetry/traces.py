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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from emulator.call import Call
from emulator.chain import Interceptor
from emulator.telemetry.config import OTLP_ENV, TracesConfig

__all__ = ["Kept", "TracingInterceptor", "trace_ids"]

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_PARENT = Context()
_OK = Status(StatusCode.UNSET)  # what the SDK's span keeps for a call without an error
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class Kept(SpanProcessor):
    """The last `keep` finished spans, for tests to read."""

    def __init__(self, keep: int) -> None:
        self.spans: deque[ReadableSpan] = deque(maxlen=keep)

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class _Open:
    """A call's span while the call runs: its ids, its parent's, and (when it is recorded)
    the attributes it starts with."""

    __slots__ = ("attributes", "context", "parent")

    def __init__(
        self, context: SpanContext, parent: SpanContext | None, attributes: dict[str, Any] | None
    ) -> None:
        self.context = context
        self.parent = parent
        self.attributes = attributes  # None: not sampled, nothing is recorded

    def get_span_context(self) -> SpanContext:
        return self.context


class TracingInterceptor(Interceptor):
    """Opens a span when a call starts, and records it, finished, with the call's status.

    The span is made whole when the call ends, as a ReadableSpan handed to the processors, not
    through the SDK's live Span: that takes a lock and checks every attribute on each change,
    about half of what tracing cost a call, for a span no code outside this class ever sees
    open. It decides as the SDK's tracer does: the provider's sampler (so OTEL_TRACES_SAMPLER
    holds), id generator and resource; an unsampled call keeps its ids and records nothing."""

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
        self._processors: list[SpanProcessor] = [self.kept]
        if config.endpoint or any(os.environ.get(v) for v in OTLP_ENV):
            # opentelemetry's exporter, its requests written as bytes (otlp_wire): its own
            # encoder costs tens of µs a span, holding the GIL the event loop needs.
            from emulator.telemetry.otlp_exporter import WireSpanExporter

            endpoint = config.endpoint or None  # None: the exporter reads OTEL_EXPORTER_OTLP_*
            insecure = None if endpoint is None else not endpoint.startswith("https://")
            exporter = WireSpanExporter(endpoint=endpoint, insecure=insecure)
            self._processors.append(BatchSpanProcessor(exporter))
        for processor in self._processors:  # (the provider's shutdown flushes them)
            self.provider.add_span_processor(processor)
        self._sampler = self.provider.sampler
        self._ids = self.provider.id_generator
        self._resource = self.provider.resource
        self._scope = InstrumentationScope("grpc-emulator")

    def spans(self) -> list[ReadableSpan]:
        return list(self.kept.spans)

    def clear(self) -> None:
        self.kept.spans.clear()

    def shutdown(self) -> None:
        """Export what is left (the batch processor's queue) and stop."""
        self.provider.shutdown()

    async def before(self, call: Call) -> None:
        spec = call.spec
        name = spec.name  # `pkg.Service/Method`
        host, port = self._address()
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
        carrier: Context = _NO_PARENT  # a root span, whatever context the task inherited
        parent: SpanContext | None = None
        for key, _ in call.metadata:
            if key == "traceparent":  # (only then a carrier: most calls come without one)
                carrier = _PROPAGATOR.extract(
                    {k: v for k, v in call.metadata if isinstance(v, str)}
                )
                found = trace.get_current_span(carrier).get_span_context()
                parent = found if found.is_valid else None
                break
        ids = self._ids
        trace_id = ids.generate_trace_id() if parent is None else parent.trace_id
        sampled = self._sampler.should_sample(carrier, trace_id, name, SpanKind.SERVER, attributes)
        decision = sampled.decision
        flags = TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        random_id = (
            ids.is_trace_id_random() if parent is None else parent.trace_flags.random_trace_id
        )
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampled.trace_state,
        )
        recorded = dict(sampled.attributes or {}) if decision is not Decision.DROP else None
        self.set_state(call, _Open(context, parent, recorded))

    def after(self, call: Call) -> None:
        span = self.state(call)
        if span is None or span.attributes is None:
            return
        code = call.code
        attributes = span.attributes
        attributes["rpc.grpc.status_code"] = code.value[0]
        attributes["rpc.request.messages"] = call.requests.count
        attributes["rpc.response.messages"] = call.responses.count
        if call.answered_by:
            attributes["emulator.responder"] = call.answered_by
        if call.principal:
            attributes["enduser.id"] = call.principal
        if code != grpc.StatusCode.OK:
            attributes["error.type"] = code.name
        now = time.time_ns()
        events: list[Event] = []
        if call.answered_by:  # what answered: the emulator.responder attribute
            events.append(Event("responder", None, now))
        if code in _REFUSED and not call.answered_by:
            refusal = {"rpc.grpc.status_code": code.value[0], "reason": call.details}
            events.append(Event("auth.refused", refusal, now))
        elif call.principal or call.identities:
            admitted = {"enduser.id": call.principal or call.identities[0]}
            events.append(Event("auth.admitted", admitted, now))
        for rule, kind in zip(call.faults, call.fault_kinds, strict=False):
            fault = {"emulator.fault.rule": rule, "emulator.fault.kind": kind}
            events.append(Event("fault", fault, now))
        status = _OK if code == grpc.StatusCode.OK else Status(StatusCode.ERROR, call.details)
        if call.behaviour_time is not None:  # the behaviour's own time, as a child span
            first, last = call.behaviour_time
            self._record(
                ReadableSpan(
                    "behaviour",
                    SpanContext(
                        span.context.trace_id,
                        self._ids.generate_span_id(),
                        is_remote=False,
                        trace_flags=span.context.trace_flags,
                        trace_state=span.context.trace_state,
                    ),
                    span.context,
                    self._resource,
                    {"emulator.responder": call.answered_by},
                    kind=SpanKind.INTERNAL,
                    start_time=int(first * 1e9),
                    end_time=int(last * 1e9),
                    instrumentation_scope=self._scope,
                )
            )
        self._record(
            ReadableSpan(
                call.spec.name,
                span.context,
                span.parent,
                self._resource,
                attributes,
                events,
                kind=SpanKind.SERVER,
                status=status,
                start_time=int(call.started * 1e9),
                end_time=int((call.started + call.duration) * 1e9),
                instrumentation_scope=self._scope,
            )
        )

    def _record(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)


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

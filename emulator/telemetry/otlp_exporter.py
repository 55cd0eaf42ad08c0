"""The OTLP/gRPC span exporter, sending the bytes `otlp_wire` writes instead of a message.

opentelemetry's `OTLPSpanExporter` as it is — endpoint, `OTEL_EXPORTER_OTLP_*` variables,
headers, timeout, compression, retries with backoff, a new channel on UNAVAILABLE — with two
changes: `_translate_data` returns the request already serialized (`otlp_wire.encode_spans`),
and the client's `Export` has no request serializer, so grpc sends those bytes as they are.
Both are private hooks of the exporter (opentelemetry-exporter-otlp-proto-grpc 1.27 to 1.45
have them); tests/test_otlp_wire.py sends through a real receiver to notice if they change.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan

from emulator.telemetry.otlp_wire import encode_spans

__all__ = ["WireSpanExporter"]

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class _BytesTraceServiceStub:
    """TraceServiceStub with requests that are bytes already: grpc passes a request through
    untouched when the method has no request serializer."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
            _registered_method=True,
        )


class WireSpanExporter(OTLPSpanExporter):
    """`OTLPSpanExporter`, its requests encoded by `otlp_wire` (the same bytes, far faster)."""

    def _initialize_channel_and_stub(self) -> None:
        # The mixin's __init__ sets _stub to TraceServiceStub and then calls this, as its
        # reconnection on UNAVAILABLE does again later: setting it here holds for both.
        self._stub = _BytesTraceServiceStub
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]

    # A bytes "request": what _BytesTraceServiceStub.Export takes, not the message it declares.
    def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:  # type: ignore[override]
        return encode_spans(data)

"""The `telemetry:` and `log:` sections of emulator.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OTLP_ENV", "LogConfig", "MetricsConfig", "TelemetryConfig", "TracesConfig", "wanted"]

# The standard variables that name where OTLP traces go: set, they turn traces on.
OTLP_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@dataclass(frozen=True, kw_only=True)
class TracesConfig:
    """OpenTelemetry traces: a server span per call, exported over OTLP."""

    enabled: bool = field(
        default=False,
        metadata={
            "help": "make a span per call (on by itself when OTEL_EXPORTER_OTLP_ENDPOINT or "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set)"
        },
    )
    endpoint: str = field(
        default="",
        metadata={
            "help": "OTLP/gRPC endpoint to export spans to (unset: the OTEL_EXPORTER_OTLP_* "
            "variables; none set: spans are only kept in memory)"
        },
    )
    service_name: str = field(
        default="grpc-emulator", metadata={"help": "the `service.name` of the spans' resource"}
    )
    keep: int = field(
        default=1000, metadata={"help": "finished spans kept in memory (`emu.spans()`)"}
    )


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics, as text on an HTTP endpoint."""

    port: int | None = field(
        default=None, metadata={"help": "serve /metrics on this port (0: a free one; unset: off)"}
    )
    host: str = field(
        default="", metadata={"help": "address of the metrics port (unset: server.host)"}
    )
    path: str = field(default="/metrics", metadata={"help": "the path metrics are served at"})


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    """Traces, metrics and request ids."""

    traces: TracesConfig = field(default_factory=TracesConfig, metadata={"help": "traces"})
    metrics: MetricsConfig = field(default_factory=MetricsConfig, metadata={"help": "metrics"})
    request_id_header: str = field(
        default="x-request-id",
        metadata={
            "help": "the request id header: taken from the request or made, sent back to the "
            "caller (`request_id_response`), and in the log, the journal and the span"
        },
    )
    request_id_response: Literal["headers", "trailers", "off"] = field(
        default="headers",
        metadata={
            "help": "where the request id goes back to the caller: the response headers, the "
            "trailers (cheaper: they go with the status) or nowhere"
        },
    )


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """What is logged per call (log lines follow `log_format` and `log_stream`)."""

    access: Literal["off", "errors", "all"] = field(
        default="off", metadata={"help": "an access log line per call: all, only failed, or none"}
    )
    access_file: str = field(
        default="", metadata={"help": "write access lines to this file instead of the log"}
    )


def traces_wanted(config: TracesConfig) -> bool:
    return config.enabled or bool(config.endpoint) or any(os.environ.get(v) for v in OTLP_ENV)


def wanted(telemetry: TelemetryConfig, log: LogConfig) -> bool:
    """Whether any telemetry is on (without importing any of it)."""
    return (
        traces_wanted(telemetry.traces) or telemetry.metrics.port is not None or log.access != "off"
    )

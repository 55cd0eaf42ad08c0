"""Prometheus metrics of the calls, in a registry of the emulator's own, served as text.

Names follow OpenTelemetry's RPC metrics where there is one (`rpc.server.call.duration` →
`rpc_server_call_duration_seconds`); the rest are the emulator's (`emulator_*`). Labels are
bounded: methods come from the contracts, responders are their kind (`stub`, `behaviour`,
`override`, `default`, `unimplemented`), faults and stubs their configured names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from emulator.call import Call
from emulator.chain import Interceptor

__all__ = ["MetricsInterceptor"]

_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# Seconds: from a cached default (well under a millisecond) to a deadline-long stream.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_MESSAGES = (1, 2, 5, 10, 50, 100, 1000, 10000)


class MetricsInterceptor(Interceptor):
    def __init__(
        self, journal_size: Callable[[], float], journal_dropped: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Labelled children by method (and status and responder): bounded by the contracts.
        self._methods: dict[str, tuple[Any, Any, Any]] = {}
        self._durations: dict[tuple[str, Any, str], Any] = {}
        method = ["rpc_service", "rpc_method"]
        self.duration = Histogram(
            "rpc_server_call_duration_seconds",
            "Duration of calls the emulator served",
            [*method, "rpc_grpc_status_code", "responder"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "rpc_server_calls_in_flight", "Calls being served now", method, registry=r
        )
        self.requests = Histogram(
            "rpc_server_requests_per_rpc",
            "Request messages per call",
            method,
            buckets=_MESSAGES,
            registry=r,
        )
        self.responses = Histogram(
            "rpc_server_responses_per_rpc",
            "Response messages per call",
            method,
            buckets=_MESSAGES,
            registry=r,
        )
        self.faults = Counter(
            "emulator_faults_injected",
            "Faults injected, by rule and kind",
            ["rule", "kind"],
            registry=r,
        )
        self.refusals = Counter(
            "emulator_auth_refusals", "Calls security refused, by status", ["reason"], registry=r
        )
        self.stub_matches = Counter(
            "emulator_stub_matches", "Calls a stub answered", [*method, "stub"], registry=r
        )
        self.stub_misses = Counter(
            "emulator_stub_misses",
            "Calls to a method with stubs that no stub matched",
            method,
            registry=r,
        )
        journal = Gauge("emulator_journal_records", "Calls the journal keeps", registry=r)
        journal.set_function(journal_size)
        dropped = Gauge(
            "emulator_journal_dropped_records",
            "Calls the journal has dropped (its bounds)",
            registry=r,
        )
        dropped.set_function(journal_dropped)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def _per_method(self, spec: Any) -> tuple[Any, Any, Any]:
        """The method's labelled children, looked up once: `labels()` takes a lock each time."""
        found = self._methods.get(spec.path)
        if found is None:
            names = (spec.service, spec.method)
            found = self._methods[spec.path] = (
                self.in_flight.labels(*names),
                self.requests.labels(*names),
                self.responses.labels(*names),
            )
        return found

    async def before(self, call: Call) -> None:
        self._per_method(call.spec)[0].inc()
        self.set_state(call, True)

    def after(self, call: Call) -> None:
        spec = call.spec
        in_flight, requests, responses = self._per_method(spec)
        if self.state(call):
            in_flight.dec()
        answered = call.answered_by
        responder = answered.split(" ", 1)[0] if answered else "none"
        code = call.code
        key = (spec.path, code, responder)
        duration = self._durations.get(key)
        if duration is None:
            duration = self._durations[key] = self.duration.labels(
                spec.service, spec.method, str(code.value[0]), responder
            )
        duration.observe(call.duration)
        requests.observe(call.requests.count)
        responses.observe(call.responses.count)
        for rule, kind in zip(call.faults, call.fault_kinds, strict=False):
            self.faults.labels(rule, kind).inc()
        if code in _REFUSED and not answered:
            self.refusals.labels(code.name).inc()
        if answered.startswith("stub "):
            self.stub_matches.labels(spec.service, spec.method, answered[5:]).inc()
        elif call.near_misses:
            self.stub_misses.labels(spec.service, spec.method).inc()

    def text(self) -> tuple[bytes, str]:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


async def serve_metrics(
    metrics: MetricsInterceptor, host: str, port: int, path: str
) -> tuple[Any, int]:
    """/metrics over HTTP on the emulator's event loop; the runner and the port bound."""
    from aiohttp import web

    from emulator._aiohttp import serve_app

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.text()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get(path, scrape)
    return await serve_app(app, host, port, "telemetry.metrics.port")

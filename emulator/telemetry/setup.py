"""The telemetry interceptors a configuration asks for, first in the chain (so refused and
faulted calls are traced, counted and logged like any other), and the metrics port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.chain import Interceptor
from emulator.config import Config
from emulator.telemetry.config import traces_wanted

__all__ = ["Telemetry"]


class Telemetry:
    """What `telemetry:` and `log.access` turn on; `interceptors` go first in the chain."""

    def __init__(
        self,
        config: Config,
        address: Callable[[], tuple[str, int | None]],
        journal_size: Callable[[], float],
        journal_dropped: Callable[[], float],
    ) -> None:
        from emulator.telemetry.request_ids import RequestIds

        self.config = config
        self.request_ids = RequestIds(
            config.telemetry.request_id_header, config.telemetry.request_id_response
        )
        self.tracing: Any = None
        self.metrics: Any = None
        self.access: Any = None
        self.metrics_port: int | None = None
        self._runner: Any = None
        interceptors: list[Interceptor] = [self.request_ids]
        if traces_wanted(config.telemetry.traces):
            from emulator.telemetry.traces import TracingInterceptor

            self.tracing = TracingInterceptor(config.telemetry.traces, address, self.request_ids.of)
            interceptors.append(self.tracing)
        if config.telemetry.metrics.port is not None:
            from emulator.telemetry.metrics import MetricsInterceptor

            self.metrics = MetricsInterceptor(journal_size, journal_dropped)
            interceptors.append(self.metrics)
        if config.log.access != "off":
            from emulator.telemetry.access import AccessLog
            from emulator.telemetry.traces import trace_ids

            self.access = AccessLog(
                config.log.access,
                session_header=config.admin.session_header,
                request_id=self.request_ids.of,
                trace_ids=lambda call: trace_ids(call, self.tracing),
                path=config.log.access_file,
            )
            # Last of the telemetry: its `after` runs first, while the span is still open.
            interceptors.append(self.access)
        self.interceptors = interceptors

    async def start(self, server: Any) -> None:
        metrics = self.config.telemetry.metrics
        if self.metrics is not None and metrics.port is not None:
            from emulator.telemetry.metrics import serve_metrics

            host = metrics.host or self.config.server.host
            self._runner, self.metrics_port = await serve_metrics(
                self.metrics, host, metrics.port, metrics.path
            )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.tracing is not None:
            self.tracing.shutdown()
        if self.access is not None:
            self.access.close()

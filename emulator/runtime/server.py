"""`EmulatorServer`: contracts, behaviours and defaults wired into one running grpc.aio server.

What follows from the contracts is one `Snapshot` (`emulator.runtime.snapshot`), which `swap()`
replaces while the server runs; the rest (chain, clock, journal, state) lasts as long as it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import CodeType
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.discovery import BehaviorSource
from emulator.behavior.registry import Registry
from emulator.chain import Chain, Interceptor
from emulator.clock import Clock
from emulator.config import Config
from emulator.contracts import Contracts
from emulator.errors import ConfigError, EmulatorError
from emulator.faults.health import HealthWindows
from emulator.faults.max_duration import MaxDurationInterceptor
from emulator.faults.setup import build_faults
from emulator.journal import Journal
from emulator.runtime.compression import compression_name
from emulator.runtime.handlers import Dispatcher
from emulator.runtime.health import health_handler
from emulator.runtime.reflection import ReflectionHandler
from emulator.runtime.routes import EmulatorHandler
from emulator.runtime.snapshot import Runtime, Snapshot, build_snapshot, check_snapshot
from emulator.runtime.watchdog import LoopWatchdog
from emulator.security.setup import BuiltinGuard, build_security, warn_if_exposed
from emulator.telemetry.config import wanted as telemetry_wanted
from emulator.validation.interceptor import ValidationInterceptor

__all__ = ["Companion", "EmulatorServer"]

log = logging.getLogger("emulator")

SYNC_STREAM_THREADS = 1024  # sync client/bidi stream behaviours running at once
# Names of the threads that run sync behaviours: `emulate` looks for them when it exits.
WORKER_THREADS = ("emulator-behavior", "emulator-stream")


class Companion(Protocol):
    """Something that serves beside the emulator (the admin API's own ports): started once the
    emulator's port is bound, before `emulator listening on`; stopped before it."""

    async def start(self, server: EmulatorServer) -> None: ...

    async def stop(self) -> None: ...


class EmulatorServer:
    """Loads and checks everything on construction (so errors come before any port is bound);
    `start()` binds and serves on the running event loop."""

    snapshot: Snapshot
    """What is served now: read it, replace it only with `swap()`."""

    def __init__(
        self,
        config: Config,
        *,
        behaviors: Sequence[BehaviorSource] = (),
        contracts: Contracts | None = None,
    ) -> None:
        self.config = config
        self._behaviors = tuple(behaviors)
        self.state: dict[str, Any] = {}
        self.clock = Clock()
        # Threads start on first use: none is left behind when what follows refuses to load.
        self.executor = ThreadPoolExecutor(
            max_workers=config.server.workers, thread_name_prefix=WORKER_THREADS[0]
        )
        # Sync behaviours reading a request stream hold a thread while the client is idle: a
        # pool of its own, which grows with them, keeps them from starving every other call.
        self.stream_executor = ThreadPoolExecutor(
            max_workers=SYNC_STREAM_THREADS, thread_name_prefix=WORKER_THREADS[1]
        )
        compression = compression_name(config.server.compression, "server.compression")
        self.dispatcher = Dispatcher(
            seed=config.seed,
            state=self.state,
            clock=self.clock.now,
            keep_messages=config.journal.keep_messages,
            # Health and reflection stay uncompressed: probes and grpcurl read them whatever
            # the contract's clients are made to cope with.
            compression=None if compression == "identity" else compression,
        )
        proxy = None
        if config.proxy.upstream or config.proxy.record:  # (imported only then)
            from emulator.contracts import load_contracts
            from emulator.journal import SECRET_HEADERS
            from emulator.record.setup import build_proxy

            # Loaded here, once, so that the recorder's rules are checked against them.
            contracts = contracts or load_contracts(config.protos, config.import_paths)
            secrets = SECRET_HEADERS | {h.lower() for h in config.journal.redact_headers}
            proxy = build_proxy(config, contracts, secrets)
        self._runtime = Runtime(self.dispatcher, self.executor, self.stream_executor, proxy)
        self.snapshot = build_snapshot(
            config, self._behaviors, contracts=contracts, runtime=self._runtime
        )
        if config.locked:
            from emulator.contracts.lock import check_lock

            check_lock(self.contracts.fingerprints, Path(config.locked))
        self.clock.listeners.append(self._anchor)
        self.journal = Journal(
            config.journal.limit, config.journal.redact_headers, max_bytes=config.journal.max_bytes
        )
        self.security = build_security(config)
        check_snapshot(config, self.snapshot)
        self.faults = build_faults(config, clock=self.clock)
        self.validation = ValidationInterceptor(config.validation, self.snapshot.contracts)
        self.dispatcher.responses = self.validation.plan.responses
        budgets = MaxDurationInterceptor(config.max_duration)
        self.companions: list[Companion] = []
        self.telemetry: Any = None  # emulator.telemetry.setup.Telemetry, when configured
        telemetry: list[Interceptor] = []
        if telemetry_wanted(config.telemetry, config.log):
            from emulator.telemetry.setup import Telemetry

            self.telemetry = Telemetry(
                config,
                lambda: (self.host, self.port),
                lambda: self.journal.size,
                lambda: self.journal.dropped,
            )
            telemetry = self.telemetry.interceptors
            self.companions.append(self.telemetry)
        # Telemetry sees every call, refused ones too; then security: nothing after it sees a
        # call the policy refuses. Validation after faults (a fault configured for a method
        # fires whatever the request), before the responder.
        interceptors = [
            *telemetry,
            *self.security.interceptors,
            self.faults,
            self.validation,
            self.journal,
        ]
        self.dispatcher.chain = Chain([*interceptors, budgets] if budgets else interceptors)
        self.journal.settle = self.dispatcher.inflight.settle
        self.watchdog = LoopWatchdog(config.server.loop_block_warning, self._behaviour_code)
        self.health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.health_windows = HealthWindows(
            self.health,
            self.clock,
            [rule.config for rule in self.faults.rules if rule.config.health is not None],
            self.contracts,
        )
        self.port: int | None = None
        # Served beside the emulated services, outside their chain (the admin API); and, in
        # `companions`, what starts once the port is bound and stops first (the admin API's and
        # the metrics' own ports).
        self.extra_handlers: list[grpc.GenericRpcHandler] = []
        self.admin: Any = None  # the admin API, once emulator.admin.serve attaches it
        self.reloader: Any = None  # emulator.runtime.reload.Reloader, once attached

    @property
    def proxy(self) -> Any:
        """The proxy (`emulator.record.setup.Proxy`) when proxy.upstream is set, else None."""
        return self._runtime.proxy

    @property
    def contracts(self) -> Contracts:
        return self.snapshot.contracts

    @property
    def registry(self) -> Registry:
        return self.snapshot.registry

    @property
    def defaults(self) -> DefaultResponses:
        return self.snapshot.defaults

    def _anchor(self, frozen_at: datetime.datetime | None) -> None:
        self.snapshot.defaults.anchor(frozen_at)

    @property
    def host(self) -> str:
        return self.config.server.host

    @property
    def target(self) -> str:
        return _address(self.host, self.port)

    @property
    def services(self) -> list[str]:
        """Every service reflection lists: the contracts' own (less those `unimplemented_hidden`
        hides), then health and reflection."""
        return list(self.snapshot.services)

    def build_snapshot(
        self,
        behaviors: Sequence[BehaviorSource] | None = None,
        *,
        contracts: Contracts | None = None,
    ) -> Snapshot:
        """A snapshot for `swap()`: `contracts` (by default this server's protos, compiled
        again) with the config's behaviours and `behaviors` (by default the server's own), their
        files run afresh. Behaviours that do not fit raise BehaviorError here; the config's
        checks are swap()'s."""
        return build_snapshot(
            self.config,
            self._behaviors if behaviors is None else behaviors,
            contracts=contracts,
            runtime=self._runtime,
        )

    async def swap(self, snapshot: Snapshot) -> Snapshot:
        """Serve `snapshot` from the next call on; returns the snapshot it replaces.

        Calls in flight finish on the snapshot they started with. The config's checks run on
        `snapshot` first: if a method pattern no longer matches, ConfigError, and the current
        one keeps serving. Health then reports the new services (SERVING, or what a health
        fault window says) and stops reporting the ones gone; reflection lists the new ones.
        A test's overrides lived in the old registry and end with it. Run it on the server's
        event loop (from another thread: `asyncio.run_coroutine_threadsafe`).
        """
        if snapshot.runtime is not self._runtime:
            raise EmulatorError(
                "this snapshot was built for another server: build it with this server's "
                "build_snapshot()"
            )
        check_snapshot(self.config, snapshot)
        plan = self.validation.prepare(snapshot.contracts)  # (ContractError: nothing changes)
        old = self.snapshot
        snapshot.defaults.anchor(self.clock.frozen)
        self.snapshot = snapshot  # the swap: each new call reads this reference once
        self.validation.use(plan)
        self.dispatcher.responses = plan.responses
        for warning in snapshot.warnings:
            log.warning("%s", warning)
        snapshot.defaults.anchor(self.clock.frozen)  # the clock may have moved meanwhile
        if self._server is not None:
            await self._report_health(old.health_services, snapshot.health_services)
            await self.health_windows.cover(snapshot.contracts)
        return old

    async def _report_health(self, old: Iterable[str], new: Iterable[str]) -> None:
        """SERVING for services new to the snapshot (one served before keeps its status, which
        a health fault may have set); services no longer served are forgotten."""
        before, after = list(old), list(new)
        for name in after:
            if name not in before:
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        for name in before:
            if name in after:
                continue
            # Watchers are told SERVICE_UNKNOWN; a Check answers NOT_FOUND, as for any service
            # never served (grpcio's servicer has no call to forget one).
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            self.health._server_status.pop(name, None)

    async def start(self, on_listening: Callable[[], None] | None = None) -> int:
        """Bind and serve; `on_listening` runs once the port is known, before any warning, so
        the command line's `emulator listening on` stays the first line even in stdout logs."""
        identity, auth = self.security.identity, self.security.auth
        guarded = identity is not None or auth is not None
        server = grpc.aio.server(
            interceptors=[BuiltinGuard(identity, auth)] if guarded else None,
            options=self._server_options(),
        )
        server.add_generic_rpc_handlers(
            (
                EmulatorHandler(self),
                ReflectionHandler(self),
                health_handler(self.health),
                *self.extra_handlers,
            )
        )
        address = _address(self.host, self.config.server.port)
        credentials = self.security.credentials
        try:
            if credentials is None:
                port = int(server.add_insecure_port(address))
            else:
                port = int(server.add_secure_port(address, credentials))
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot listen on {address}: {exc}; choose another --port (0 picks a free one) "
                "or a --host of this machine"
            ) from None
        if port == 0:
            raise ConfigError(
                f"cannot listen on {address}: the address is in use or not local; "
                "choose another --port (0 picks a free one) or --host"
            )
        await server.start()
        self._loop = asyncio.get_running_loop()
        self.dispatcher.inflight.loop_thread = threading.get_ident()
        self.watchdog.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._report_health((), self.snapshot.health_services)
        self._server, self.port = server, port
        try:
            for companion in self.companions:
                await companion.start(self)
        except BaseException:
            await self.stop(0)
            raise
        if on_listening is not None:
            on_listening()
        # After the banner (its first line is what scripts wait for): which contracts these are,
        # as GetInfo and --journal-out lines say too, so a run's logs tell which were served.
        log.info(
            "contracts: fingerprint %s (%d files%s)",
            self.contracts.fingerprint,
            len(self.contracts.fingerprints.files),
            f", as locked in {self.config.locked}" if self.config.locked else "",
        )
        warn_if_exposed(self.config)
        for warning in self.snapshot.warnings:
            log.warning("%s", warning)
        self.faults.restart_clock()  # fault windows count from here
        await self.health_windows.start()  # and health windows too, in the same clock
        return port

    def run_on_loop(self, step: Coroutine[Any, Any, None], timeout: float = 5.0) -> None:
        """Run `step` on the server's event loop: at once from another thread (a sync test
        waits for it), as a task from the loop itself (it runs at the next turn)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            step.close()  # not serving: nothing to change
            return
        if threading.get_ident() == self.dispatcher.inflight.loop_thread:
            task = loop.create_task(step)
            self._tasks.add(task)  # a reference, or the task may be collected mid-way
            task.add_done_callback(self._tasks.discard)
            return
        asyncio.run_coroutine_threadsafe(step, loop).result(timeout)

    def _server_options(self) -> list[tuple[str, int]]:
        options = [("grpc.so_reuseport", 0)]  # port 0 must mean a port no one else holds
        server = self.config.server
        if server.max_connection_age is not None:  # GOAWAY after this age
            options.append(("grpc.max_connection_age_ms", int(server.max_connection_age * 1000)))
            options.append(("grpc.max_connection_age_grace_ms", 1000))
        if server.max_concurrent_streams is not None:
            options.append(("grpc.max_concurrent_streams", server.max_concurrent_streams))
        if server.max_metadata_size is not None:
            # grpc refuses headers over the soft limit some of the time and over the hard
            # limit always: raise both, or big tokens fail at random.
            options.append(("grpc.max_metadata_size", server.max_metadata_size))
            options.append(("grpc.absolute_max_metadata_size", server.max_metadata_size))
        return options

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls; let in-flight ones finish within `grace` seconds."""
        if self._server is None:
            return
        for companion in reversed(self.companions):
            await companion.stop()
        self.health_windows.stop()
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.server.grace_period if grace is None else grace)
        self._server = None
        if self._runtime.proxy is not None:
            await self._runtime.proxy.close()  # after the last call: recordings written
        self.watchdog.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.stream_executor.shutdown(wait=False, cancel_futures=True)

    def _behaviour_code(self) -> list[tuple[CodeType, str]]:
        """Each behaviour method's code, so the watchdog can name the one holding the loop."""
        found = []
        for impl in self.registry:
            func = getattr(impl.func, "__func__", impl.func)
            code = getattr(func, "__code__", None)
            if code is not None:
                found.append((code, f"{impl.spec.name} ({impl.origin})"))
        return found


def _address(host: str, port: int | None) -> str:
    """`host:port`, an IPv6 address in brackets (given with or without them)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"

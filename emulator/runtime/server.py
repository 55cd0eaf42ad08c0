"""`EmulatorServer`: contracts, behaviours and defaults wired into one running grpc.aio server."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import CodeType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.discovery import BehaviorSource
from emulator.behavior.registry import Registry
from emulator.chain import Chain
from emulator.clock import Clock
from emulator.config import Config
from emulator.contracts import Contracts, load_contracts
from emulator.contracts.builtin import HEALTH_SERVICE, REFLECTION_SERVICES
from emulator.contracts.patterns import check_patterns
from emulator.errors import ConfigError
from emulator.faults.health import HealthWindows
from emulator.faults.max_duration import MaxDurationInterceptor
from emulator.faults.setup import build_faults
from emulator.journal import Journal
from emulator.respond.behavior import BehaviorResponder
from emulator.respond.unimplemented import UnimplementedResponder
from emulator.runtime.compression import compression_name
from emulator.runtime.handlers import Dispatcher, EmulatorHandler
from emulator.runtime.health import health_handler
from emulator.runtime.reflection import ReflectionHandler
from emulator.runtime.watchdog import LoopWatchdog
from emulator.security.setup import BuiltinGuard, build_security, check_policy, warn_if_exposed

__all__ = ["EmulatorServer"]

log = logging.getLogger("emulator")

SYNC_STREAM_THREADS = 1024  # sync client/bidi stream behaviours running at once
# Names of the threads that run sync behaviours: `emulate` looks for them when it exits.
WORKER_THREADS = ("emulator-behavior", "emulator-stream")


class EmulatorServer:
    """Loads and checks everything on construction (so errors come before any port is bound);
    `start()` binds and serves on the running event loop."""

    def __init__(
        self,
        config: Config,
        *,
        behaviors: Sequence[BehaviorSource] = (),
        contracts: Contracts | None = None,
    ) -> None:
        self.config = config
        self.contracts = contracts or load_contracts(config.protos, config.import_paths)
        self.registry = Registry(self.contracts, [*config.behaviors, *behaviors])
        self.defaults = DefaultResponses.from_config(self.contracts, config)
        self.clock = Clock()
        self.clock.listeners.append(self.defaults.anchor)
        self.journal = Journal(
            config.journal.limit, config.journal.redact_headers, max_bytes=config.journal.max_bytes
        )
        self.security = build_security(config)
        check_patterns(config.method_patterns(), self.contracts)
        check_policy(config, self.contracts)
        self.faults = build_faults(config, self.contracts, clock=self.clock)
        self.state: dict[str, Any] = {}
        self.executor = ThreadPoolExecutor(
            max_workers=config.server.workers, thread_name_prefix=WORKER_THREADS[0]
        )
        # Sync behaviours reading a request stream hold a thread while the client is idle: a
        # pool of its own, which grows with them, keeps them from starving every other call.
        self.stream_executor = ThreadPoolExecutor(
            max_workers=SYNC_STREAM_THREADS, thread_name_prefix=WORKER_THREADS[1]
        )
        self.unimplemented = UnimplementedResponder(
            self.contracts.methods, config.unimplemented, config.unimplemented_hidden
        )
        for impl in self.registry:
            if impl.spec.path in self.unimplemented.messages:
                log.warning(
                    "%s (%s) never runs: the config marks the method unimplemented",
                    impl.spec.name,
                    impl.origin,
                )
        behaviours = BehaviorResponder(
            self.registry,
            self.defaults,
            self.contracts.pool,
            executor=self.executor,
            stream_executor=self.stream_executor,
        )
        budgets = MaxDurationInterceptor(config.max_duration, self.contracts.methods)
        # Security first: nothing after it sees a call the policy refuses.
        interceptors = [*self.security.interceptors, self.faults, self.journal]
        compression = compression_name(config.server.compression, "server.compression")
        self.dispatcher = Dispatcher(
            self.contracts,
            self.defaults,
            # Unimplemented methods first: nothing else answers them.
            responders=[self.unimplemented, behaviours] if self.unimplemented else [behaviours],
            state=self.state,
            clock=self.clock.now,
            chain=Chain([*interceptors, budgets] if budgets else interceptors),
            keep_messages=config.journal.keep_messages,
            # Health and reflection stay uncompressed: probes and grpcurl read them whatever
            # the contract's clients are made to cope with.
            compression=None if compression == "identity" else compression,
        )
        self.journal.settle = self.dispatcher.inflight.settle
        self.watchdog = LoopWatchdog(config.server.loop_block_warning, self._behaviour_code)
        self.health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health_windows = HealthWindows(
            self.health,
            self.clock,
            [rule.config for rule in self.faults.rules if rule.config.health is not None],
            self.contracts,
        )
        self.port: int | None = None

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
        hidden = self.unimplemented.hidden_services
        own = [name for name in self.contracts.services if name not in hidden]
        return [*own, HEALTH_SERVICE, *REFLECTION_SERVICES]

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
                EmulatorHandler(self.dispatcher),
                ReflectionHandler(self.contracts, self.services, self.unimplemented.hidden),
                health_handler(self.health),
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
        serving = health_pb2.HealthCheckResponse.SERVING
        await self.health.set("", serving)
        for name in self.contracts.services:
            # A hidden service is one the server does not have: health answers NOT_FOUND
            # (Watch: SERVICE_UNKNOWN) for it, as grpc servers do for any unknown name.
            if name not in self.unimplemented.hidden_services:
                await self.health.set(name, serving)
        self._server, self.port = server, port
        if on_listening is not None:
            on_listening()
        warn_if_exposed(self.config)
        self.faults.restart_clock()  # fault windows count from here
        await self._health_windows.start()  # and health windows too, in the same clock
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
        self._health_windows.stop()
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.server.grace_period if grace is None else grace)
        self._server = None
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

"""In-process emulators for tests: `with Emulator(...) as emu:` or `async with Emulator(...)`.

Sync code gets the server on a background event-loop thread; async code runs it on its own loop.
Either way it binds 127.0.0.1 on a free port and leaves no thread, task or port behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from emulator.behavior.base import Behavior
from emulator.behavior.discovery import BehaviorSource
from emulator.channels import PemValue, channel_security
from emulator.client import DynamicStub
from emulator.clock import Clock
from emulator.config import Config
from emulator.control import ControlPlane, FaultHandle, Override, closest
from emulator.errors import BehaviorFailedError, EmulatorError
from emulator.journal import CallList
from emulator.runtime.server import EmulatorServer
from emulator.stubs.controls import StubControls, StubHandle

__all__ = ["Emulator", "FaultHandle", "Override", "StubHandle"]

PathLike = str | os.PathLike[str]


class Emulator:
    """An emulator bound to 127.0.0.1 on a free port, for the length of a `with` block.

        with Emulator(protos="protos/", behaviors="behaviors/", seed=7) as emu:
            reply = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
            emu.assert_called("acme.shop.v1.Catalog/GetProduct", request={"product_id": "p1"})

    `behaviors` may be paths, modules, `Behavior` classes or instances; other keyword arguments
    are emulator.yaml keys (`defaults={"stream_messages": 5}`, `journal={"limit": 100}`, ...).

    With `tls=...`, `channel()`, `aio_channel()` and `stub()` speak TLS: `client_tls={"ca": ...,
    "cert": ..., "key": ...}` gives the CA they trust and, for mutual TLS, the client identity
    they present (see `emulator.channels`). A behaviour that raises (its caller gets UNKNOWN)
    fails the test when the `with` block ends, with `BehaviorFailedError`, unless
    `raise_behavior_errors=False`.
    """

    def __init__(
        self,
        protos: PathLike | Sequence[PathLike] = (),
        behaviors: BehaviorSource | Sequence[BehaviorSource] = (),
        *,
        seed: int = 0,
        client_tls: Mapping[str, PemValue] | None = None,
        raise_behavior_errors: bool = True,
        **config: Any,
    ) -> None:
        proto_list = [protos] if isinstance(protos, str | os.PathLike) else list(protos)
        sources: list[BehaviorSource] = (
            list(behaviors) if isinstance(behaviors, list | tuple) else [behaviors]  # type: ignore[list-item]
        )
        server = {"host": "127.0.0.1", "port": 0, **dict(config.pop("server", {}))}
        data = {"protos": [os.fspath(p) for p in proto_list], "seed": seed, "server": server}
        self.config = Config.from_mapping({**data, **config}, source="Emulator(...)")
        self._client_tls = channel_security(self.config, client_tls)
        self.raise_behavior_errors = raise_behavior_errors
        self._server = EmulatorServer(self.config, behaviors=sources)
        self._control = ControlPlane(self._server)
        from emulator.admin.serve import attach_admin

        attach_admin(self._control)  # (admin.enabled: false leaves it out)
        from emulator.runtime.reload import attach_reload

        attach_reload(self._control)  # emu.reload(); with reload=True, on file changes too
        from emulator.journal_out import attach_journal_out

        self._journal_out = attach_journal_out(self._server)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: list[grpc.Channel] = []
        self._aio_channels: list[grpc.aio.Channel] = []
        self._stub_channel: grpc.Channel | grpc.aio.Channel | None = None
        self._tasks_before: set[asyncio.Task[Any]] = set()
        self._state = "new"  # new → running → stopped

    # -- what tests use ---------------------------------------------------------------------

    @property
    def server(self) -> EmulatorServer:
        return self._server

    @property
    def control(self) -> ControlPlane:
        """The control plane this emulator's methods use (overrides, faults, clock, state,
        health, journal, reset)."""
        return self._control

    @property
    def target(self) -> str:
        """`127.0.0.1:PORT`, for clients that take an address."""
        self._require_running()
        return self._server.target

    @property
    def clock(self) -> Clock:
        """The emulator clock: `freeze(at)`, `advance(seconds)`; drives `ctx.now()` and the
        timestamps of default responses."""
        return self._control.clock

    @property
    def state(self) -> dict[str, Any]:
        """The `ctx.state` every behaviour shares."""
        return self._control.state

    def channel(
        self, *, client_cert: PemValue | None = None, client_key: PemValue | None = None
    ) -> grpc.Channel:
        """A grpc.Channel to the emulator, closed when the emulator stops. With TLS it trusts
        `client_tls["ca"]` and presents the client certificate of `client_tls`, or
        `client_cert`/`client_key` (PEM or paths) to call as someone else."""
        channel: grpc.Channel = self._open(grpc, client_cert, client_key)
        self._channels.append(channel)
        return channel

    def aio_channel(
        self, *, client_cert: PemValue | None = None, client_key: PemValue | None = None
    ) -> grpc.aio.Channel:
        """A grpc.aio.Channel for asyncio tests, on the caller's event loop, speaking TLS as
        `channel()` does. Inside `async with Emulator(...)` it is closed for you; otherwise use
        `async with` on it."""
        channel: grpc.aio.Channel = self._open(grpc.aio, client_cert, client_key)
        if self._loop is None:
            self._aio_channels.append(channel)
        return channel

    def _open(self, kind: Any, client_cert: PemValue | None, client_key: PemValue | None) -> Any:
        """A channel from `kind` (grpc or grpc.aio, which open channels alike)."""
        target = self.target
        tls = self._client_tls
        if tls is None:
            if client_cert is not None or client_key is not None:
                raise EmulatorError("client_cert and client_key need an emulator serving TLS")
            return kind.insecure_channel(target)
        creds = tls.credentials(client_cert, client_key)
        return kind.secure_channel(target, creds, options=tls.options())

    def stub(self, service: str) -> DynamicStub:
        """A client for `service` (full name) whose methods take dicts or messages. Inside
        `async with Emulator(...)` it runs on a grpc.aio channel: await unary calls and
        `async for` over streams."""
        self._require_running()
        contracts = self._server.contracts
        spec = contracts.services.get(service)
        if spec is None:
            raise EmulatorError(
                f"no service {service!r} in the contracts{closest(service, contracts.services)}"
            )
        if self._stub_channel is None:
            self._stub_channel = self.channel() if self._loop else self.aio_channel()
        return DynamicStub(self._stub_channel, spec, contracts)

    def spans(self) -> list[Any]:
        """The finished spans of the calls so far (OpenTelemetry `ReadableSpan`s, the last
        `telemetry.traces.keep`), oldest first; traces must be on (`telemetry.traces`)."""
        telemetry = self._server.telemetry
        if telemetry is None or telemetry.tracing is None:
            raise EmulatorError(
                "emu.spans() needs traces: Emulator(..., telemetry={'traces': {'enabled': True}})"
            )
        spans: list[Any] = telemetry.tracing.spans()
        return spans

    def calls(self, method: str | None = None) -> CallList:
        """Calls so far (since the last reset), oldest first: all of them, those of one method
        (`pkg.Service/Method`) or those of one service (`pkg.Service`). Works after exit too."""
        return self._control.calls(method)

    def assert_called(
        self,
        method: str,
        *,
        times: int | None = None,
        request: Mapping[str, Any] | Message | None = None,
        metadata: Mapping[str, str] | None = None,
        at_least: int | None = None,
        at_most: int | None = None,
    ) -> CallList:
        """Assert calls to `method` whose request contains `request` (partial, by field) and
        whose headers include `metadata`: `times` of them (or at least `at_least`, at most
        `at_most`; none given: at least one). On failure the message shows the closest calls
        and how each differs."""
        return self._control.verify(
            method,
            times=times,
            request=request,
            metadata=metadata,
            at_least=at_least,
            at_most=at_most,
        )

    def assert_not_called(self, method: str) -> None:
        self.assert_called(method, times=0)

    def override(
        self,
        target: str | type[Behavior] | Behavior,
        fn: Callable[..., Any] | None = None,
    ) -> Override:
        """Give methods other logic, now; undone when the `with` block ends or at `reset()`.

        with emu.override("acme.shop.v1.Catalog/GetProduct", lambda req, ctx: {"name": "x"}):
            ...
        with emu.override(OutageCatalog):   # a Behavior class or instance
            ...
        """
        self._require_not_stopped()
        return self._control.override(target, fn)

    @property
    def stubs(self) -> StubControls:
        """Declarative stubs: `emu.stubs.add({...})`, `emu.stubs.stats()`, `unused()`,
        `scenario(name)`; stubs added here go when undone or at `reset()`."""
        return self._control.stubs

    def stub_for(self, method: str, **stub: Any) -> StubHandle:
        """A stub of `method` for the length of a `with` block (or until `reset()`):

        with emu.stub_for("acme.shop.v1.Catalog/GetProduct",
                          match={"request": {"product_id": "p1"}},
                          respond={"message": {"stock_count": 0}}):
            ...
        """
        self._require_not_stopped()
        return self._control.stubs.for_method(method, **stub)

    def unmatched(self, method: str | None = None) -> CallList:
        """Calls to methods with stubs that no stub matched; each record's `near_misses` name
        the closest stubs and the conditions that failed."""
        return self._control.unmatched(method)

    def fault(self, **rule: Any) -> FaultHandle:
        """Inject a fault now, as one `faults:` entry of emulator.yaml; undone when the `with`
        block ends or at `reset()`.

            with emu.fault(name="outage", match={"method": "acme.shop.v1.Orders/*"},
                           when={"calls": [1, 2]}, abort={"code": "UNAVAILABLE"}):
                ...
        """
        self._require_not_stopped()
        return self._control.add_fault(rule, source="emu.fault(...)")

    def set_health(self, service: str, status: str) -> None:
        """Make grpc.health report `status` (SERVING, NOT_SERVING, ...) for `service` ("" for
        the whole server) until set again or `reset()`. Inside `async with Emulator(...)`,
        `await emu.control.set_health(service, status)` instead."""
        self._require_running()
        if self._loop is None:
            raise EmulatorError(
                "emu.set_health() is for sync tests: inside `async with Emulator(...)`, "
                "`await emu.control.set_health(service, status)`"
            )
        self._server.run_on_loop(self._control.set_health(service, status))

    def reload(self) -> Any:
        """Contracts, behaviour files and stub files read again and served from the next call
        on (as `--reload` does on a change); the `ReloadResult` says what was reloaded, or
        why not (the previous ones keep serving). Inside `async with Emulator(...)`,
        `await emu.server.reloader.reload()` instead."""
        self._require_running()
        loop = self._loop
        if loop is None:
            raise EmulatorError(
                "emu.reload() is for sync tests: inside `async with Emulator(...)`, "
                "`await emu.server.reloader.reload()`"
            )
        reloader = self._server.reloader
        return asyncio.run_coroutine_threadsafe(reloader.reload("emu.reload()"), loop).result(120)

    @property
    def behavior_errors(self) -> list[tuple[str, BaseException]]:
        """(method, exception) of each call a behaviour failed by raising (or by returning the
        wrong type) since the last reset; RpcAbort is not a failure."""
        return self._control.behavior_errors

    def check_behavior_errors(self) -> None:
        """Raise `BehaviorFailedError` (the first exception as its cause) if a behaviour failed
        since the last reset, and forget those failures; the `with` block's end does this too."""
        __tracebackhide__ = True  # pytest shows the behaviour's traceback, not these frames
        failures = self.behavior_errors
        if not failures:
            return
        self._control.clear_behavior_errors()
        for _, exc in failures:
            exc.__traceback__ = _from_the_behavior(exc.__traceback__)
        raise BehaviorFailedError(failures) from failures[0][1]

    def fault_stats(self) -> dict[str, dict[str, int]]:
        """Per fault rule in force (configured, or `emu.fault()` not yet undone): calls it
        `matched` and faults it `injected`. A removed fault's counts stay on its handle."""
        return self._control.fault_stats()

    def reset(self) -> None:
        """Journal, overrides, stubs added at run time (every stub's counters, sequences and
        scenarios restarted), faults (and their counters), shared state, clock, per-call rngs
        and behaviour failures back to the start."""
        self._control.reset()

    # -- checks ------------------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._state != "running":
            when = "has stopped" if self._state == "stopped" else "is not running yet"
            raise EmulatorError(
                f"the emulator {when}: use it inside `with Emulator(...) as emu:` "
                "(or `async with`); calls() and assert_called() still work after it stops"
            )

    def _require_not_stopped(self) -> None:
        if self._state == "stopped":
            self._require_running()

    def _starting(self) -> None:
        if self._state != "new":
            raise EmulatorError("an Emulator starts once: create a new one to start again")

    # -- sync: a background event-loop thread ------------------------------------------------

    def __enter__(self) -> Emulator:
        self._starting()
        started: Future[None] = Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._server.start())
            except BaseException as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="emulator-loop", daemon=True)
        self._thread.start()
        started.result()
        self._state = "running"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_sync_channels()
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._close_journal_out()
        self._raise_failures(exc)

    # -- async: on the caller's loop ---------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        self._starting()
        self._tasks_before = asyncio.all_tasks()
        await self._server.start()
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_sync_channels()
        for channel in self._aio_channels:
            await channel.close()
        self._aio_channels.clear()
        await self._server.stop(0)
        await _settle(self._tasks_before)
        self._close_journal_out()
        self._raise_failures(exc)

    def _raise_failures(self, exc: BaseException | None) -> None:
        # Only when the block itself ended well: its own exception says more, and is kept.
        __tracebackhide__ = True
        if exc is None and self.raise_behavior_errors:
            self.check_behavior_errors()

    def _close_journal_out(self) -> None:
        if self._journal_out is not None:
            self._journal_out.close()

    def _close_sync_channels(self) -> None:
        self._state = "stopped"
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._stub_channel = None


async def _settle(tasks_before: set[asyncio.Task[Any]], timeout: float = 1.0) -> None:
    """Calls that stop() cancelled end on grpc.aio's tasks (and the emulator's own) a few loop
    turns later; wait for them, briefly, so none outlives the `async with` block. The test's
    own tasks are not waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = asyncio.current_task()
    while True:
        pending = {
            t for t in asyncio.all_tasks() - tasks_before if t is not current and _serves_calls(t)
        }
        if not pending or loop.time() >= deadline:
            return
        await asyncio.wait(pending, timeout=deadline - loop.time())


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SERVING = (os.path.join(_PACKAGE, "runtime", ""), os.path.dirname(asyncio.__file__) + os.sep)
_STDLIB = os.path.dirname(threading.__file__) + os.sep


def _from_the_behavior(tb: TracebackType | None) -> TracebackType | None:
    """A behaviour's traceback without the server's frames above it: what the test author wants
    to read, and no live references to finished calls' grpc objects (their frames' locals),
    which a test report may keep until the interpreter shuts down."""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith(_SERVING) or _in_stdlib(filename)):
            return tb
        tb = tb.tb_next
    return None


def _in_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def _serves_calls(task: asyncio.Task[Any]) -> bool:
    name = task.get_name()
    if name == "rpc_task" or name.startswith("HandleExceptions["):  # grpc.aio's server tasks
        return True
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_filename.startswith(_PACKAGE)

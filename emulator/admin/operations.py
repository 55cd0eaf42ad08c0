"""The admin API's operations: one table that both doors read.

Each `Operation` names its gRPC method (`emulator.admin.v1.Admin/<name>`), its HTTP route (`POST
/admin/v1/stubs`) and the control-plane code that answers it, taking and returning the messages
of admin.proto. `emulator.admin.service` serves the table over gRPC, `emulator.admin.http` as
JSON over HTTP: a new operation is a row here, never a second implementation.

Bad input raises `AdminError`: INVALID_ARGUMENT with the request field and what is wrong (a
google.rpc.BadRequest on gRPC, a 400 with the same fields over HTTP), NOT_FOUND for a name that
is not there. The server keeps serving, and nothing already added is lost.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from emulator.admin.convert import (
    Encoded,
    call_list,
    call_record,
    encoded_record,
    fault,
    plain,
    stub_list,
)
from emulator.admin.descriptor import pb
from emulator.admin.prepare import Preparer
from emulator.contracts.patterns import check_method, method_matches
from emulator.control import ControlPlane
from emulator.errors import ConfigError, EmulatorError, NotFoundError
from emulator.journal import CallRecord
from emulator.journal.matching import differences
from emulator.stubs.store import describe

__all__ = ["OPERATIONS", "AdminError", "Operation", "Operations"]

PAGE_SIZE, MAX_PAGE_SIZE = 100, 10_000

log = logging.getLogger("emulator")
# One thread builds ListCalls pages, one at a time: off the event loop, and never two at once.
_PAGES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-admin")


class AdminError(Exception):
    """An admin request that cannot be carried out, and why."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def invalid(field: str, message: str) -> AdminError:
    return AdminError(grpc.StatusCode.INVALID_ARGUMENT, message, field)


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # the gRPC method
    verb: str  # the HTTP method
    route: str  # the HTTP path
    request: str  # the request message of admin.proto
    streaming: bool = False  # a server stream (WatchCalls): over HTTP, JSON lines


OPERATIONS = (
    Operation("GetInfo", "GET", "/admin/v1/info", "GetInfoRequest"),
    Operation("AddStubs", "POST", "/admin/v1/stubs", "AddStubsRequest"),
    Operation("ListStubs", "GET", "/admin/v1/stubs", "ListStubsRequest"),
    Operation("RemoveStubs", "DELETE", "/admin/v1/stubs", "RemoveStubsRequest"),
    Operation("AddFault", "POST", "/admin/v1/faults", "AddFaultRequest"),
    Operation("ListFaults", "GET", "/admin/v1/faults", "ListFaultsRequest"),
    Operation("RemoveFault", "DELETE", "/admin/v1/faults", "RemoveFaultRequest"),
    Operation("ListCalls", "GET", "/admin/v1/calls", "ListCallsRequest"),
    Operation("WatchCalls", "GET", "/admin/v1/calls/watch", "WatchCallsRequest", streaming=True),
    Operation("Verify", "POST", "/admin/v1/verify", "VerifyRequest"),
    Operation("Reset", "POST", "/admin/v1/reset", "ResetRequest"),
    Operation("SetClock", "POST", "/admin/v1/clock", "SetClockRequest"),
    Operation("SetHealth", "POST", "/admin/v1/health", "SetHealthRequest"),
    Operation("GetScenario", "GET", "/admin/v1/scenarios", "GetScenarioRequest"),
    Operation("SetScenario", "POST", "/admin/v1/scenarios", "SetScenarioRequest"),
    Operation("Reload", "POST", "/admin/v1/reload", "ReloadRequest"),
)


class Operations:
    """What each operation does, over one control plane. `run(name, request, session)` answers
    a unary one; `watch(request, session)` is WatchCalls' stream."""

    def __init__(self, control: ControlPlane, started: float | None = None) -> None:
        self.control = control
        self.started = time.monotonic() if started is None else started
        # Once a client lists the journal, the forms of new calls are made in the lulls.
        self.preparer = Preparer(lambda: self._server.journal, control.session_header)
        self._unary: dict[str, Callable[[Any, str | None], Awaitable[Any]]] = {
            op.name: getattr(self, "_" + op.name) for op in OPERATIONS if not op.streaming
        }

    @property
    def _server(self) -> Any:
        return self.control.server

    async def run(self, name: str, request: Any, session: str | None) -> Any:
        try:
            return await self._unary[name](request, getattr(request, "session", "") or session)
        except AdminError:
            raise
        except ConfigError as exc:  # a stub or fault rule as a file would be refused
            raise invalid(_field(name, request, str(exc)), str(exc)) from None
        except NotFoundError as exc:
            raise AdminError(grpc.StatusCode.NOT_FOUND, str(exc)) from None
        except EmulatorError as exc:
            raise AdminError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        except Exception as exc:  # a bug of ours: said, logged, and the server keeps serving
            log.error("admin %s failed", name, exc_info=exc)
            raise AdminError(
                grpc.StatusCode.INTERNAL, f"{name} failed: {type(exc).__name__}: {exc}"
            ) from None

    # -- info ----------------------------------------------------------------------------------

    async def _GetInfo(self, request: Any, session: str | None) -> Any:
        server = self._server
        contracts = server.contracts
        info = pb.Info(
            version=_version(),
            seed=server.config.seed,
            contract_fingerprint=contracts.fingerprint,  # as the start-up log says
            uptime_seconds=time.monotonic() - self.started,
            session_header=self.control.session_header,
        )
        for name, service in contracts.services.items():
            info.services.add(name=name, methods=list(service.methods))
        return info

    # -- stubs ---------------------------------------------------------------------------------

    async def _AddStubs(self, request: Any, session: str | None) -> Any:
        if request.text and len(request.stubs):
            raise invalid("text", "send stubs or text, not both")
        source = "admin"
        lines: dict[str, int] = {}
        if request.text:
            from emulator._yaml import read_yaml_text

            data, lines = read_yaml_text(request.text, source)
            stubs = data if isinstance(data, list) else [data]
        else:
            stubs = [plain(s) for s in request.stubs]
        if not stubs or stubs == [None]:
            raise invalid("stubs", "no stubs: send `stubs` (objects) or `text` (a stub file)")
        handle = self.control.stubs.add(*stubs, source=source, session=session, lines=lines)
        return stub_list(describe(s) for s in handle.stubs)

    async def _ListStubs(self, request: Any, session: str | None) -> Any:
        return stub_list(self.control.stubs.stats(session))

    async def _RemoveStubs(self, request: Any, session: str | None) -> Any:
        removed = self.control.stubs.remove(list(request.names), session=session)
        return stub_list(describe(s) for s in removed)

    # -- faults --------------------------------------------------------------------------------

    async def _AddFault(self, request: Any, session: str | None) -> Any:
        if request.text and request.HasField("rule"):
            raise invalid("text", "send rule or text, not both")
        source = "admin"
        lines: dict[str, int] = {}
        if request.text:
            from emulator._yaml import read_yaml_text

            rule, lines = read_yaml_text(request.text, source)
        else:
            rule = plain(request.rule)
        if not isinstance(rule, dict) or not rule:
            raise invalid("rule", "a fault rule is one `faults:` entry of emulator.yaml")
        handle = self.control.add_fault(rule, source=source, session=session, lines=lines)
        return fault(handle)

    async def _ListFaults(self, request: Any, session: str | None) -> Any:
        return pb.FaultList(faults=[fault(h) for h in self.control.faults(session)])

    async def _RemoveFault(self, request: Any, session: str | None) -> Any:
        if not request.name:
            raise invalid("name", "name the fault to remove (ListFaults lists them)")
        return fault(self.control.remove_fault(request.name, session))

    # -- journal -------------------------------------------------------------------------------

    def _matching(
        self, request: Any, session: str | None, records: list[CallRecord] | None = None
    ) -> list[CallRecord]:
        """The calls (of `records`, by default the journal's) that a ListCalls, WatchCalls or
        Verify request asks for."""
        method = request.method
        if method:
            try:
                check_method(method, self._server.contracts, "method")
            except ConfigError as exc:
                raise invalid("method", str(exc)) from None
        if records is None:
            records = self._server.journal.records()
        if session:
            header = self.control.session_header
            records = [r for r in records if r.metadata.get(header) == session]
        if method:
            records = [r for r in records if method_matches(method, "/" + r.method)]
        metadata = dict(getattr(request, "metadata", {}))
        wanted = plain(request.request) if getattr(request, "request", None) else None
        if metadata or wanted:
            records = [
                r for r in records if not differences(r.request, r.metadata, wanted, metadata)
            ]
        return records

    async def _ListCalls(self, request: Any, session: str | None) -> Any:
        size = request.page_size or PAGE_SIZE
        if not 0 < size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"must be 1 to {MAX_PAGE_SIZE}, got {size}")
        after = request.since_index
        if request.page_token:
            journal, _, index = request.page_token.partition(":")
            if not index.isdigit() or journal != str(self._server.journal.clears):
                raise invalid(
                    "page_token",
                    "not a page token of this journal (it was reset since): list again",
                )
            after = max(after, int(index))
        if request.method:
            self.check_watch(request)  # a bad pattern: refused here, not in the thread
        self.preparer.start(raw_only=request.raw_only)
        # A big page takes a while to build (10,000 calls: a second or more): built off the
        # event loop, so the emulated services keep answering meanwhile.
        loop = asyncio.get_running_loop()
        self.preparer.listings += 1  # it makes the same forms: no second worker meanwhile
        try:
            return await loop.run_in_executor(
                _PAGES, self._list_calls, request, session, after, size
            )
        finally:
            self.preparer.listings -= 1

    def _list_calls(self, request: Any, session: str | None, after: int, size: int) -> Any:
        with collections_paused():
            return self._page(request, session, after, size)

    def _page(self, request: Any, session: str | None, after: int, size: int) -> Any:
        records = self._matching(request, session)
        chosen = [r for r in records if r.index > after] if after else records
        page = chosen[:size]
        header = self.control.session_header
        encoded = [encoded_record(r, header, raw_only=request.raw_only) for r in page]
        token = f"{self._server.journal.clears}:{page[-1].index}" if len(chosen) > size else ""
        return call_list(encoded, len(records), token)

    def check_watch(self, request: Any) -> None:
        """AdminError now for a WatchCalls request that could only fail."""
        self._matching(request, None, [])

    async def watch(self, request: Any, session: str | None) -> AsyncGenerator[Any, None]:
        """WatchCalls: the calls already kept after `since_index`, then each as it finishes."""
        session = request.session or session
        journal = self._server.journal
        header = self.control.session_header
        woken = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake(record: CallRecord) -> None:  # (read again below, with the calls it missed)
            loop.call_soon_threadsafe(woken.set)

        last, clears = request.since_index, journal.clears
        self.check_watch(request)
        journal.record_listeners.append(wake)
        try:
            while True:
                woken.clear()
                if journal.clears != clears:  # reset: indexes start again
                    last, clears = 0, journal.clears
                batch = journal.records(last)
                if batch:
                    last = batch[-1].index  # read once: calls ending meanwhile come next time
                for record in self._matching(request, session, batch):
                    yield call_record(record, header)
                await woken.wait()
        finally:
            journal.record_listeners.remove(wake)

    async def _Verify(self, request: Any, session: str | None) -> Any:
        if not request.method:
            raise invalid("method", "name the method to verify: pkg.Service/Method")
        counts = {
            key: getattr(request, key) if request.HasField(key) else None
            for key in ("times", "at_least", "at_most")
        }
        try:
            found = self.control.verify(
                request.method,
                request=plain(request.request) if request.HasField("request") else None,
                metadata=dict(request.metadata) or None,
                session=session,
                **counts,
            )
        except AssertionError as failure:
            matching = self._matching(request, session)
            return pb.VerifyResponse(ok=False, count=len(matching), report=str(failure))
        return pb.VerifyResponse(ok=True, count=len(found))

    # -- reset, clock, health, scenarios -------------------------------------------------------

    async def _Reload(self, request: Any, session: str | None) -> Any:
        reloader = self._server.reloader
        if reloader is None:
            raise AdminError(grpc.StatusCode.UNIMPLEMENTED, "this emulator cannot reload")
        done = await reloader.reload("admin API")
        if not done.ok:
            raise AdminError(grpc.StatusCode.FAILED_PRECONDITION, done.message)
        return pb.ReloadResult(
            message=done.message,
            seconds=done.seconds,
            services=done.services,
            methods=done.methods,
            dropped=done.dropped,
            restart=done.restart,
        )

    async def _Reset(self, request: Any, session: str | None) -> Any:
        try:
            parts = self.control.reset(session, list(request.parts))
        except EmulatorError as exc:
            raise invalid("parts", str(exc)) from None
        return pb.ResetResponse(parts=parts)

    async def _SetClock(self, request: Any, session: str | None) -> Any:
        clock = self.control.clock
        action = request.WhichOneof("action")
        if action == "freeze":
            clock.freeze(request.freeze.ToDatetime(tzinfo=datetime.UTC))
        elif action == "freeze_now":
            clock.freeze()
        elif action == "advance_seconds":
            clock.advance(request.advance_seconds)
        elif action == "reset":
            clock.reset()
        out = pb.Clock(frozen=clock.frozen is not None)
        out.now.FromDatetime(clock.now())
        return out

    async def _SetHealth(self, request: Any, session: str | None) -> Any:
        await self.control.set_health(request.service, request.status or "SERVING")
        return pb.SetHealthResponse(
            service=request.service, status=(request.status or "SERVING").upper()
        )

    async def _GetScenario(self, request: Any, session: str | None) -> Any:
        if not request.name:
            raise invalid("name", "name the scenario")
        state = self.control.stubs.scenario(request.name, session)
        return pb.Scenario(name=request.name, state=state, session=session or "")

    async def _SetScenario(self, request: Any, session: str | None) -> Any:
        if not request.name or not request.state:
            raise invalid("name" if not request.name else "state", "name a scenario and a state")
        self.control.stubs.set_scenario(request.name, request.state, session)
        return pb.Scenario(name=request.name, state=request.state, session=session or "")


def _version() -> str:
    # From the installed distribution: `emulator/__init__` imports what imports this module.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grpc-emulator")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
        return "unknown"


_KEY = re.compile(r"^admin(?::\d+)?: ([\w\[\].]+): ")


def _field(name: str, request: Any, message: str) -> str:
    """The request field a refused stub or fault names, as precisely as the message does:
    `stubs[1].match.request`, `rule.abort.code`, `text[0].respond` (its line is in the text)."""
    base = "text" if getattr(request, "text", "") else {"AddStubs": "stubs"}.get(name, "rule")
    found = _KEY.match(re.sub(r"^(admin(?::\d+)?: )faults\[0\] \([^)]*\)", r"\1", message))
    key = found.group(1) if found else ""
    for prefix in ("stubs", "faults[0]"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if key and base == "stubs" and not key.startswith("["):
        key = "[0]." + key  # one stub's keys are named without its index
    return base + (key if key.startswith(("[", ".")) or not key else "." + key)


def to_json(message: Any) -> dict[str, Any]:
    """A response as the HTTP door sends it (proto3 JSON, defaults included)."""
    if isinstance(message, Encoded):
        message = message.message()
    found: dict[str, Any] = _whole(
        json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    )
    return found


def _whole(value: Any) -> Any:
    """Struct numbers are doubles: `"nanos": 5.0` reads as the 5 the message had (JSON does not
    tell the two apart, but people and `jq` do)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


@contextmanager
def collections_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a page is built. A 10,000-call page
    makes tens of thousands of lasting objects (each record's forms, the cache's keys), enough
    to set off full collections, each a walk over every object the journal keeps: a third of
    the page's time. Reference counting still frees everything meanwhile; only cycles wait,
    for the collection that follows (the counts carry on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

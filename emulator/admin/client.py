"""`EmulatorClient`: the in-process `Emulator`'s test API over the admin service.

    with EmulatorClient("emulator:50051", session="test-42") as emu:
        with emu.stub_for("acme.shop.v1.Catalog/GetProduct",
                          respond={"message": {"name": "Widget"}}):
            reply = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})
        emu.assert_called("acme.shop.v1.Catalog/GetProduct", request={"product_id": "p1"})
        emu.reset()   # this session's stubs, faults, scenarios and calls

A running emulator (a container, `emulate`, another process's `Emulator`) driven from a test.
With a `session`, what the client adds answers only calls tagged with it, and its queries see
only those calls; `channel()` and `stub()` tag every call for you. The contracts come from the
emulator's server reflection, so calls are read back as messages, as in-process.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from emulator.admin.descriptor import pb
from emulator.admin.remote import (
    AdminConnection,
    RemoteClock,
    RemoteFaultHandle,
    RemoteStubHandle,
    RemoteStubs,
    SessionHeader,
    fetch_contracts,
    struct,
)
from emulator.call import NearMiss
from emulator.client import DynamicStub
from emulator.contracts.model import Contracts, MethodSpec
from emulator.errors import ConfigError, EmulatorError
from emulator.journal import CallList, CallRecord

__all__ = ["EmulatorClient", "EmulatorInfo"]

_PAGE = 10_000  # the admin API's largest page of calls
_POLL = 0.05  # between attempts of wait_until_ready()


@dataclasses.dataclass(frozen=True, slots=True)
class EmulatorInfo:
    """What `GetInfo` says of the emulator."""

    version: str
    seed: int
    contract_fingerprint: str
    services: Mapping[str, tuple[str, ...]]  # service → its methods
    uptime_seconds: float
    session_header: str


class _Connection:
    """Channels and what is read once per emulator (its info, its contracts), shared by the
    clients of every session of it (`with_session`)."""

    def __init__(
        self,
        target: str,
        services_target: str,
        token: str | None,
        tls: Mapping[str, Any] | bool | None,
        timeout: float,
    ) -> None:
        self.target, self.services_target, self.timeout = target, services_target, timeout
        self._credentials = _credentials(tls)
        self._options = _options(tls)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        self.admin = AdminConnection(self._open(target), target, metadata, timeout)
        self.services = self.admin.channel if services_target == target else None
        self._lock = threading.Lock()
        self._info: EmulatorInfo | None = None
        self._contracts: Contracts | None = None
        self.closed = False

    def _open(self, target: str) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(target, options=self._options)
        return grpc.secure_channel(target, self._credentials, options=self._options)

    def services_channel(self) -> grpc.Channel:
        with self._lock:
            if self.services is None:
                self.services = self._open(self.services_target)
            return self.services

    def info(self, refresh: bool = False) -> EmulatorInfo:
        if self._info is None or refresh:
            answer = self.admin.call("GetInfo", pb.GetInfoRequest())
            self._info = EmulatorInfo(
                version=answer.version,
                seed=answer.seed,
                contract_fingerprint=answer.contract_fingerprint,
                services={s.name: tuple(s.methods) for s in answer.services},
                uptime_seconds=answer.uptime_seconds,
                session_header=answer.session_header or "x-emulator-session",
            )
        return self._info

    def contracts(self, refresh: bool = False) -> Contracts:
        """The served contracts (read again when `refresh`: a reload may have changed them)."""
        if self._contracts is None or refresh:
            info = self.info(refresh)
            found = fetch_contracts(self.services_channel(), list(info.services), self.timeout)
            self._contracts = found
        return self._contracts

    def close(self) -> None:
        self.closed = True
        if self.services is not None and self.services is not self.admin.channel:
            self.services.close()
        self.admin.channel.close()


class EmulatorClient:
    """A running emulator's test API, over its admin service (`emulator.admin.v1.Admin`).

    `target` is where the admin API listens (the emulator's port unless `admin.port` moved it);
    `services_target` where the emulated services do, if elsewhere. `session` scopes stubs,
    faults, scenarios, calls and `reset()` to one test; `token` is `admin.token`; `tls` takes
    what `Emulator(client_tls=...)` takes (`ca`, `cert` and `key` for mutual TLS,
    `server_name`), or True for the system's roots.
    """

    def __init__(
        self,
        target: str,
        session: str | None = None,
        token: str | None = None,
        tls: Mapping[str, Any] | bool | None = None,
        *,
        services_target: str | None = None,
        timeout: float = 30.0,
        _connection: _Connection | None = None,
    ) -> None:
        self._connection = _connection or _Connection(
            target, services_target or target, token, tls, timeout
        )
        self._owner = _connection is None  # close() closes only a connection it opened
        self.session = session or None
        self._session = session or ""
        self._admin = self._connection.admin
        self.stubs = RemoteStubs(self._admin, self._session)
        self.clock = RemoteClock(self._admin)

    def with_session(self, session: str | None) -> EmulatorClient:
        """A client of the same emulator, over the same connection, for another session."""
        return EmulatorClient(
            self.target, session, _connection=self._connection, timeout=self._connection.timeout
        )

    # -- the emulator ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return self._connection.target

    @property
    def services_target(self) -> str:
        """Where the emulated services listen, for clients that take an address (they tag
        their calls with the session header themselves: `session_metadata`)."""
        return self._connection.services_target

    def info(self) -> EmulatorInfo:
        """Version, seed, contract fingerprint, services and methods, uptime (read now)."""
        return self._connection.info(refresh=True)

    @property
    def session_header(self) -> str:
        return self._connection.info().session_header

    @property
    def session_metadata(self) -> tuple[tuple[str, str], ...]:
        """`((session_header, session),)`, for calls made on channels of your own; empty
        without a session."""
        return ((self.session_header, self._session),) if self._session else ()

    def wait_until_ready(self, timeout: float = 30.0) -> EmulatorInfo:
        """Wait for the admin API to answer and grpc.health to say SERVING; EmulatorError
        after `timeout` seconds, with what was last wrong."""
        from grpc_health.v1 import health_pb2

        deadline = time.monotonic() + timeout
        check = self._connection.services_channel().unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        problem = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EmulatorError(
                    f"the emulator at {self.target} was not ready within {timeout}s: {problem}"
                )
            try:
                self._admin.call("GetInfo", pb.GetInfoRequest(), timeout=left, wait_for_ready=True)
                status = check(health_pb2.HealthCheckRequest(), timeout=max(left, 0.01))
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return self._connection.info(refresh=True)
                statuses = health_pb2.HealthCheckResponse.ServingStatus
                problem = f"health is {statuses.Name(status.status)}"
            except EmulatorError as exc:
                problem = str(exc)
            except grpc.RpcError as exc:
                problem = f"health check: {exc.code().name}"
            threading.Event().wait(min(_POLL, max(0.0, deadline - time.monotonic())))

    # -- calling the emulated services -------------------------------------------------------

    def channel(self) -> grpc.Channel:
        """A grpc.Channel to the emulated services that tags every call with this client's
        session. It is the client's own connection (with the header added): `close()` closes
        it, and so does closing the channel."""
        base = self._connection.services_channel()
        if not self._session:
            return base
        return grpc.intercept_channel(base, SessionHeader(self.session_header, self._session))

    def stub(self, service: str) -> DynamicStub:
        """A client for `service` (full name) whose methods take dicts or messages, on
        `channel()`."""
        contracts = self._connection.contracts()
        spec = contracts.services.get(service)
        if spec is None:
            from emulator.control import closest

            raise EmulatorError(
                f"no service {service!r} in the contracts{closest(service, contracts.services)}"
            )
        return DynamicStub(self.channel(), spec, contracts)

    # -- stubs and faults --------------------------------------------------------------------

    def stub_for(self, method: str, **stub: Any) -> RemoteStubHandle:
        """A stub of `method` for the length of a `with` block (or until `reset()`)."""
        return self.stubs.for_method(method, **stub)

    def fault(self, **rule: Any) -> RemoteFaultHandle:
        """Inject a fault now, as one `faults:` entry of emulator.yaml; undone when the `with`
        block ends or at `reset()`. With a session it fires only for that session's calls."""
        return self.add_fault(rule)

    def add_fault(self, rule: Mapping[str, Any]) -> RemoteFaultHandle:
        request = pb.AddFaultRequest(session=self._session, rule=struct(rule))
        return RemoteFaultHandle(self._admin, self._session, self._admin.call("AddFault", request))

    def fault_stats(self) -> dict[str, dict[str, int]]:
        """Per fault added at run time and active (the shared ones, and this session's):
        calls it `matched` and faults it `injected`."""
        found = self._admin.call("ListFaults", pb.ListFaultsRequest(session=self._session))
        return {f.name: {"matched": f.matched, "injected": f.injected} for f in found.faults}

    # -- the journal -------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> CallList:
        """Calls so far (since the last reset; with a session, its calls only), oldest first:
        all of them, those of one method (`pkg.Service/Method`) or one service (`pkg.Service`)."""
        pattern = self._pattern(method) if method else ""
        records: list[CallRecord] = []
        token = ""
        while True:
            request = pb.ListCallsRequest(
                session=self._session,
                method=pattern,
                page_size=_PAGE,
                page_token=token,
                raw_only=True,  # decoded here, from the contracts: less to send
            )
            page = self._admin.call("ListCalls", request)
            records.extend(self._record(c) for c in page.calls)
            token = page.next_page_token
            if not token:
                return CallList(records)

    def unmatched(self, method: str | None = None) -> CallList:
        """Calls to methods with stubs that no stub matched; each record's `near_misses` name
        the closest stubs and the conditions that failed."""
        return CallList(r for r in self.calls(method) if r.near_misses)

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
        `at_most`; none given: at least one). On failure, AssertionError with the emulator's
        report: the closest calls and how each differs."""
        __tracebackhide__ = True
        name = self._method(method).name
        verify = pb.VerifyRequest(session=self._session, method=name, metadata=metadata or {})
        if request is not None:
            wanted = json_format.MessageToDict(request) if isinstance(request, Message) else request
            verify.request.CopyFrom(struct(wanted))
        for key, value in (("times", times), ("at_least", at_least), ("at_most", at_most)):
            if value is not None:
                setattr(verify, key, value)
        answer = self._admin.call("Verify", verify)
        if not answer.ok:
            raise AssertionError(answer.report)
        return self.calls(name).filter(request=request, metadata=metadata)

    def assert_not_called(self, method: str) -> None:
        __tracebackhide__ = True
        self.assert_called(method, times=0)

    # -- the rest of the controls ------------------------------------------------------------

    def set_health(self, service: str, status: str) -> None:
        """Make grpc.health report `status` (SERVING, NOT_SERVING, ...) for `service` ("" for
        the whole server) until set again or a full reset. Health is the emulator's, not the
        session's."""
        self._admin.call("SetHealth", pb.SetHealthRequest(service=service, status=status))

    def reset(self, parts: Sequence[str] = ()) -> list[str]:
        """With a session: its stubs, faults, scenarios and calls. Without: the whole emulator
        (journal, stubs, scenarios, faults, overrides, state, clock, health). `parts` picks some
        of them. Returns the parts reset."""
        request = pb.ResetRequest(session=self._session, parts=list(parts))
        return list(self._admin.call("Reset", request).parts)

    def reload(self) -> Any:
        """Contracts, behaviours, stubs and emulator.yaml read again and served from the next
        call on (as SIGHUP does); the admin API's `ReloadResult`. A change that does not load
        raises with the file and line; the emulator keeps serving what it had."""
        return self._admin.call("Reload", pb.ReloadRequest(), timeout=120)

    # -- records from the admin API ----------------------------------------------------------

    def _method(self, name: str) -> MethodSpec:
        for refresh in (False, True):
            contracts = self._connection.contracts(refresh)
            spec = contracts.method(name)
            if spec is not None:
                return spec
        from emulator.control import closest

        names = [m.name for m in contracts.methods.values()]
        raise EmulatorError(f"no method {name!r} in the contracts{closest(name, names)}")

    def _pattern(self, method: str) -> str:
        if method in self._connection.contracts().services:
            return f"{method}/*"
        return self._method(method).name

    def _record(self, call: Any) -> CallRecord:
        spec = self._method(call.method)
        kept = (
            0,
            _pairs(call.metadata),
            _pairs(call.trailers),
            call.peer,
            grpc.StatusCode[call.code].value[0] if call.code in grpc.StatusCode.__members__ else 2,
            call.details,
            call.started_at.ToDatetime(tzinfo=datetime.UTC).timestamp(),
            call.duration_seconds,
            tuple(call.faults),
            tuple(call.raw_requests),
            tuple(call.raw_responses),
            call.request_count,
            call.response_count,
            call.answered_by,
            tuple(NearMiss(m.stub, tuple(m.reasons)) for m in call.near_misses),
            tuple(call.violations),
        )
        return CallRecord(kept, call.index, frozenset(), spec)  # redacted by the emulator

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channels this client opened. What it added stays (a session's until its
        `reset()`): an emulator configured by a script keeps its stubs."""
        if self._owner and not self._connection.closed:
            self._connection.close()

    def __enter__(self) -> EmulatorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        session = f" session {self._session!r}" if self._session else ""
        return f"<EmulatorClient {self.target}{session}>"


def _pairs(headers: Mapping[str, str]) -> tuple[tuple[str, str | bytes], ...]:
    # The admin API sends each header's first value; `-bin` values base64, as gRPC's text forms.
    return tuple(
        (key, base64.b64decode(value) if key.endswith("-bin") else value)
        for key, value in headers.items()
    )


def _credentials(tls: Mapping[str, Any] | bool | None) -> grpc.ChannelCredentials | None:
    if not tls:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    from emulator.channels import _KEYS, _identity, _pem

    if not isinstance(tls, Mapping):
        raise ConfigError(f"tls takes a mapping of {', '.join(_KEYS)} or True", key="tls")
    unknown = sorted(set(tls) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"tls: unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}",
            key=f"tls.{unknown[0]}",
        )
    ca = _pem(tls["ca"], "tls.ca") if tls.get("ca") else None
    key, chain = None, None
    if tls.get("cert") or tls.get("key"):
        key, chain = _identity(tls.get("cert"), tls.get("key"), "tls")
    return grpc.ssl_channel_credentials(ca, key, chain)


def _options(tls: Mapping[str, Any] | bool | None) -> list[tuple[str, Any]]:
    if isinstance(tls, Mapping) and tls.get("server_name"):
        return [("grpc.ssl_target_name_override", str(tls["server_name"]))]
    return []

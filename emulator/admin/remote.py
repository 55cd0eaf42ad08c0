"""What `EmulatorClient` is made of: the admin connection, its handles and the session header.

    AdminConnection   the admin service's methods as generic unary calls over one channel;
                      its errors as EmulatorError (ConfigError for a refused stub or rule)
    RemoteStubs       `client.stubs`: add, remove, stats, unused, scenarios
    RemoteStubHandle  stubs added; `undo()` or the end of a `with` block removes them
    RemoteFaultHandle a fault added; `undo()` or the end of a `with` block removes it
    RemoteClock       `client.clock`: freeze, advance, reset, now
    SessionHeader     a client interceptor that tags every call with the test's session
    fetch_contracts   the served contracts, read through server reflection

Nothing here imports the server: a test that drives a container needs only grpcio and protobuf.
"""

from __future__ import annotations

import collections
import datetime
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from emulator.admin.descriptor import ADMIN_SERVICE, pb, service
from emulator.contracts.model import Contracts
from emulator.errors import ConfigError, EmulatorError

__all__ = [
    "AdminConnection",
    "RemoteClock",
    "RemoteFaultHandle",
    "RemoteStubHandle",
    "RemoteStubs",
    "SessionHeader",
    "fetch_contracts",
    "struct",
]

# Request fields that carry a stub or a fault rule: a refusal there is a ConfigError, as the
# same stub or rule would be in-process.
_PAYLOADS = frozenset({"stubs", "rule", "text"})


class AdminConnection:
    """The admin service of one emulator, over `channel`; `call(name, **fields)` answers."""

    def __init__(
        self,
        channel: grpc.Channel,
        target: str,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = 30.0,
    ) -> None:
        self.channel = channel
        self.target = target
        self._metadata = tuple(metadata)
        self._timeout = timeout
        self._methods: dict[str, Any] = {}

    def method(self, name: str) -> Any:
        found = self._methods.get(name)
        if found is None:
            found = self._methods[name] = self.channel.unary_unary(
                f"/{ADMIN_SERVICE}/{name}",
                request_serializer=_serialize,
                response_deserializer=getattr(pb, _answer(name)).FromString,
            )
        return found

    def call(self, name: str, request: Any, *, timeout: float | None = None, **options: Any) -> Any:
        try:
            return self.method(name)(
                request,
                metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout,
                **options,
            )
        except grpc.RpcError as exc:
            raise admin_error(exc, name, self.target) from None


def admin_error(exc: grpc.RpcError, operation: str, target: str) -> EmulatorError:
    """A failed admin call as the error the in-process `Emulator` would have raised."""
    code: grpc.StatusCode | None = exc.code() if hasattr(exc, "code") else None
    details: str = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        field = _bad_field(exc)
        if re.split(r"[.\[]", field, maxsplit=1)[0] in _PAYLOADS:  # stubs[1].method, ...
            return ConfigError(details, key=field)
        return EmulatorError(details)
    if code is grpc.StatusCode.NOT_FOUND:
        return EmulatorError(details)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return EmulatorError(
            f"{target} serves no emulator admin API ({operation}: {details}): is it an emulator "
            "with admin.enabled, and is the admin API on this port (admin.port)?"
        )
    name = code.name if code is not None else "an error"
    return EmulatorError(f"the emulator's admin API at {target} answered {name}: {details}")


def _bad_field(exc: grpc.RpcError) -> str:
    """The field a google.rpc.BadRequest in the call's trailers names, or ""."""
    from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad) and bad.field_violations:
                return str(bad.field_violations[0].field)
    return ""


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """`value` as a Struct; messages inside it go as their JSON form."""
    out = struct_pb2.Struct()
    out.update(_jsonable(dict(value)))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    return value


def _stat(stub: Any) -> dict[str, Any]:
    return {
        "name": stub.name,
        "methods": list(stub.methods),
        "source": stub.source,
        "session": stub.session or None,
        "answered": stub.answered,
    }


# -- stubs -------------------------------------------------------------------------------------


class RemoteStubHandle:
    """Stubs added through the admin API; `undo()` (or leaving the `with` block) removes them.
    `answered` asks the emulator while they are active; afterwards it is what they had."""

    def __init__(self, stubs: RemoteStubs, names: Sequence[str]) -> None:
        self._stubs = stubs
        self.names = tuple(names)
        self.active = True
        self._final: int | None = None

    @property
    def answered(self) -> int:
        """Calls these stubs answered."""
        if self._final is not None:
            return self._final
        wanted = set(self.names)
        return sum(s["answered"] for s in self._stubs.stats(own=True) if s["name"] in wanted)

    def undo(self) -> None:
        if self.active:
            self.active = False
            # Those still there: a reset or `stubs.remove()` may have taken some already.
            left = {s["name"] for s in self._stubs.stats(own=True)}
            names = [n for n in self.names if n in left]
            removed = self._stubs.remove(names) if names else []
            self._final = sum(s["answered"] for s in removed)

    def __enter__(self) -> RemoteStubHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"<RemoteStubHandle {', '.join(self.names)}>"


class RemoteStubs:
    """`client.stubs`: the emulator's stubs as this client's session sees them."""

    def __init__(self, admin: AdminConnection, session: str) -> None:
        self._admin = admin
        self._session = session

    def add(self, *stubs: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> RemoteStubHandle:
        """One or more stubs, as a stub file writes them (mappings, or lists of them); checked
        by the emulator as a file is (ConfigError naming the problem)."""
        data: list[Mapping[str, Any]] = []
        for item in stubs:
            data.extend(item if isinstance(item, list | tuple) else [item])  # type: ignore[list-item]
        if not data:
            raise EmulatorError("stubs.add() needs at least one stub")
        request = pb.AddStubsRequest(session=self._session, stubs=[struct(s) for s in data])
        added = self._admin.call("AddStubs", request)
        return RemoteStubHandle(self, [s.name for s in added.stubs])

    def for_method(self, method: str, **stub: Any) -> RemoteStubHandle:
        return self.add({"method": method, **stub})

    def remove(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Stubs added at run time in this session, by name (none named: all of them); the
        stats of those removed. A name that is not there is an EmulatorError."""
        request = pb.RemoveStubsRequest(session=self._session, names=list(names))
        return [_stat(s) for s in self._admin.call("RemoveStubs", request).stubs]

    def stats(self, *, own: bool = False) -> list[dict[str, Any]]:
        """Per stub served (files, config, run time) that this session sees, in load order:
        name, methods, source, session and calls `answered`. `own=True`: this session's only
        (without a session: the shared ones, files' and config's included)."""
        found = self._admin.call("ListStubs", pb.ListStubsRequest(session=self._session))
        stats = [_stat(s) for s in found.stubs]
        if own:
            stats = [s for s in stats if s["session"] == (self._session or None)]
        return stats

    def unused(self) -> list[str]:
        """Names of the stubs this session sees that have answered no call since the reset."""
        return [s["name"] for s in self.stats() if not s["answered"]]

    def scenario(self, name: str) -> str:
        """A scenario's state in this session (`started` until a stub moves it)."""
        request = pb.GetScenarioRequest(session=self._session, name=name)
        return str(self._admin.call("GetScenario", request).state)

    def set_scenario(self, name: str, state: str) -> None:
        request = pb.SetScenarioRequest(session=self._session, name=name, state=state)
        self._admin.call("SetScenario", request)

    def __len__(self) -> int:
        return len(self.stats())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.stats())


# -- faults ------------------------------------------------------------------------------------


class RemoteFaultHandle:
    """A fault added through the admin API; `undo()` (or leaving the `with` block) removes it.
    Its counts come from the emulator while it is active, and stay at their last values."""

    def __init__(self, admin: AdminConnection, session: str, added: Any) -> None:
        self._admin = admin
        self._session = session
        self.name: str = added.name
        self.session = session or None
        self._final: tuple[int, int] | None = None

    @property
    def active(self) -> bool:
        return self._final is None

    def _counts(self) -> tuple[int, int]:
        if self._final is not None:
            return self._final
        found = self._admin.call("ListFaults", pb.ListFaultsRequest(session=self._session))
        for fault in found.faults:
            if fault.name == self.name and fault.session == self._session:
                return int(fault.matched), int(fault.injected)
        return 0, 0  # removed behind our back (a reset): it matches nothing now

    @property
    def matched(self) -> int:
        """Calls the rule matched."""
        return self._counts()[0]

    @property
    def injected(self) -> int:
        """Faults the rule injected."""
        return self._counts()[1]

    def stats(self) -> dict[str, int]:
        matched, injected = self._counts()
        return {"matched": matched, "injected": injected}

    def undo(self) -> None:
        if self._final is None:
            request = pb.RemoveFaultRequest(session=self._session, name=self.name)
            try:
                gone = self._admin.call("RemoveFault", request)
                self._final = (int(gone.matched), int(gone.injected))
            except EmulatorError:  # a reset removed it already
                self._final = (0, 0)

    def __enter__(self) -> RemoteFaultHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"<RemoteFaultHandle {self.name}>"


# -- clock -------------------------------------------------------------------------------------


class RemoteClock:
    """The emulator clock: `freeze(at)`, `advance(seconds)`, `reset()`, `now()`. It is one
    clock for the whole emulator: sessions share it."""

    def __init__(self, admin: AdminConnection) -> None:
        self._admin = admin

    def _set(self, **action: Any) -> Any:
        return self._admin.call("SetClock", pb.SetClockRequest(**action))

    def now(self) -> datetime.datetime:
        return _instant(self._set())

    @property
    def frozen(self) -> datetime.datetime | None:
        answer = self._set()
        return _instant(answer) if answer.frozen else None

    def freeze(self, at: datetime.datetime | None = None) -> None:
        """Stop the clock at `at` (timezone-aware; naive means UTC), or where it is."""
        if at is None:
            self._set(freeze_now=True)
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.UTC)
        request = pb.SetClockRequest()
        request.freeze.FromDatetime(at)
        self._admin.call("SetClock", request)

    def advance(self, seconds: float) -> None:
        self._set(advance_seconds=seconds)

    def reset(self) -> None:
        """Real time again."""
        self._set(reset=True)


def _instant(clock: Any) -> datetime.datetime:
    moment: datetime.datetime = clock.now.ToDatetime(tzinfo=datetime.UTC)
    return moment


# -- the session header ------------------------------------------------------------------------


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


_Proceed = Callable[[Any, Any], Any]


class SessionHeader(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `header: session` to every call that does not name a session of its own."""

    def __init__(self, header: str, session: str) -> None:
        self._pair = (header, session)

    def _tagged(self, details: Any) -> _Details:
        metadata = list(details.metadata or ())
        if not any(key == self._pair[0] for key, _ in metadata):
            metadata.append(self._pair)
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, proceed: _Proceed, details: Any, request: Any) -> Any:
        return proceed(self._tagged(details), request)

    def intercept_unary_stream(self, proceed: _Proceed, details: Any, request: Any) -> Any:
        return proceed(self._tagged(details), request)

    def intercept_stream_unary(self, proceed: _Proceed, details: Any, requests: Any) -> Any:
        return proceed(self._tagged(details), requests)

    def intercept_stream_stream(self, proceed: _Proceed, details: Any, requests: Any) -> Any:
        return proceed(self._tagged(details), requests)


# -- contracts by reflection -------------------------------------------------------------------

_REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def fetch_contracts(channel: grpc.Channel, services: Sequence[str], timeout: float) -> Contracts:
    """The contracts of `services`, as the emulator's server reflection describes them: the
    files that declare them and every file those import."""
    from grpc_reflection.v1alpha import reflection_pb2

    info = channel.stream_stream(
        _REFLECTION,
        request_serializer=_serialize,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    asks = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in services]
    while asks:
        try:
            answers = list(info(iter(asks), timeout=timeout))
        except grpc.RpcError as exc:
            raise EmulatorError(
                f"cannot read the contracts through server reflection: {exc.details()}"
            ) from None
        for answer in answers:
            if answer.HasField("error_response"):
                raise EmulatorError(
                    "server reflection cannot describe a served service: "
                    + answer.error_response.error_message
                )
            for raw in answer.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files.setdefault(proto.name, proto)
        missing = {d for f in files.values() for d in f.dependency if d not in files}
        asks = [reflection_pb2.ServerReflectionRequest(file_by_filename=n) for n in sorted(missing)]
    wanted = set(services)
    declaring = [f for f in files.values() if any(_declares(f, s) for s in wanted)]
    rest = [f for f in files.values() if f not in declaring]
    return Contracts(descriptor_pb2.FileDescriptorSet(file=declaring), rest)


def _declares(file: descriptor_pb2.FileDescriptorProto, service: str) -> bool:
    prefix = f"{file.package}." if file.package else ""
    return any(prefix + s.name == service for s in file.service)


def _answer(method: str) -> str:
    """The message an admin method answers, as admin.proto declares it."""
    found: str = service().methods_by_name[method].output_type.name
    return found

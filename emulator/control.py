"""The control plane: everything a test (and, later, a remote admin client) may change while the
emulator runs, and the one `reset()` that puts it all back.

    overrides   give methods other logic (a function, a Behavior class or instance)
    stubs       add declarative stubs; their counts and scenario states (`stubs`)
    faults      add and remove fault rules; their counts (`fault_stats`)
    clock       freeze and advance the emulator clock
    state       the `ctx.state` every behaviour shares
    health      a service's grpc.health status
    journal     the calls so far, queries and verification
    errors      behaviour failures since the last reset
    reset       all of the above back to the start

`Emulator` (in-process) is one door to it; each operation checks its input against the contracts
and raises `EmulatorError` (or `ConfigError`, for a rule or stub) naming what is wrong. Sessions
join here as they arrive.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from emulator.behavior.base import Behavior
from emulator.behavior.registry import (
    Implementation,
    Registry,
    Style,
    bind,
    check_parameters,
    check_shape,
)
from emulator.clock import Clock
from emulator.config import Config
from emulator.contracts.model import MethodSpec
from emulator.contracts.patterns import check_method
from emulator.errors import EmulatorError, NotFoundError
from emulator.faults.engine import FaultInterceptor
from emulator.faults.rules import Rule, compile_rule
from emulator.faults.setup import check_request_match
from emulator.journal import CallList, CallRecord
from emulator.journal.verify import check_called
from emulator.stubs.controls import StubControls

if TYPE_CHECKING:
    from emulator.runtime.server import EmulatorServer
    from emulator.runtime.snapshot import Snapshot

__all__ = ["RESET_PARTS", "SESSION_PARTS", "ControlPlane", "FaultHandle", "Override"]

_STATUSES = {
    name: value
    for name, value in health_pb2.HealthCheckResponse.ServingStatus.items()
    if name != "SERVICE_UNKNOWN"  # what the server answers for a name it never set
}


class Override:
    """Behaviour replaced for some methods; `undo()` (or leaving the `with` block) restores it.

    Overrides of one method stack: undoing one, in any order, leaves the newest of those still
    active answering, or the method's own behaviour once none is."""

    def __init__(
        self,
        registry: Registry,
        impls: Sequence[Implementation],
        on_undo: Callable[[Override], None],
    ) -> None:
        self.registry = registry  # the snapshot's: overrides end with it
        self.impls = tuple(impls)
        self.methods = tuple(i.spec.name for i in impls)
        self._on_undo = on_undo
        self.active = True

    def undo(self) -> None:
        if self.active:
            self.active = False
            self._on_undo(self)

    def __enter__(self) -> Override:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


class FaultHandle:
    """A fault added at runtime; `undo()` (or leaving the `with` block) removes it. Its counts
    stay readable afterwards: they stop at what the rule saw while it was active."""

    def __init__(
        self,
        engine: FaultInterceptor,
        rule: Rule,
        on_undo: Callable[[FaultHandle], None] = lambda handle: None,
        session: str | None = None,
    ) -> None:
        self._engine = engine
        self.rule = rule
        self.name = rule.name
        self.session = session  # it fires only for calls tagged with it
        engine.add(rule)
        self._final: tuple[int, int] | None = None
        self._on_undo = on_undo

    @property
    def active(self) -> bool:
        return self._final is None

    @property
    def matched(self) -> int:
        """Calls the rule matched."""
        return self.rule.matched if self._final is None else self._final[0]

    @property
    def injected(self) -> int:
        """Faults the rule injected."""
        return self.rule.injected if self._final is None else self._final[1]

    def stats(self) -> dict[str, int]:
        return {"matched": self.matched, "injected": self.injected}

    def undo(self) -> None:
        if self._final is None:
            # Kept before the engine may reset the rule's counters (`reset()`), so a test reads
            # what happened inside its `with` block.
            self._final = (self.rule.matched, self.rule.injected)
            self._engine.remove(self.rule)
            self._on_undo(self)

    def __enter__(self) -> FaultHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


class ControlPlane:
    """The runtime controls of one `EmulatorServer`."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self._overrides: list[Override] = []
        self._faults: list[FaultHandle] = []
        self._health_set: set[str] = set()
        self.stubs = StubControls(server)

    @property
    def server(self) -> EmulatorServer:
        return self._server

    # -- lookups -----------------------------------------------------------------------------

    def method(self, name: str) -> MethodSpec:
        """The method `pkg.Service/Method` (or `/pkg.Service/Method`), or EmulatorError."""
        contracts = self._server.contracts
        spec = contracts.method(name)
        if spec is None:
            names = [m.name for m in contracts.methods.values()]
            raise NotFoundError(f"no method {name!r} in the contracts{closest(name, names)}")
        return spec

    # -- overrides ---------------------------------------------------------------------------

    def override(
        self, target: str | type[Behavior] | Behavior, fn: Callable[..., Any] | None = None
    ) -> Override:
        """Give `target` (a method name with `fn`, or a Behavior class or instance) other
        logic until the override is undone or `reset()`."""
        if isinstance(target, str):
            if fn is None:
                raise EmulatorError(f"override({target!r}) needs the function that answers it")
            spec = self.method(target)
            style = Style.of(fn)
            origin = f"override {getattr(fn, '__qualname__', repr(fn))} of {spec.name}"
            check_shape(spec, style, origin)
            check_parameters(spec, fn, origin)
            impls = [Implementation(spec=spec, func=fn, style=style, origin=origin)]
        else:
            impls = bind(self._server.contracts, target)
        registry = self._server.registry
        override = Override(registry, impls, self._override_undone)
        for impl in impls:
            registry.replace(impl, impl.spec.path)
        self._overrides.append(override)
        return override

    def _override_undone(self, override: Override) -> None:
        self._overrides.remove(override)
        registry = override.registry
        if registry is not self._server.registry:
            return  # a swap has replaced its snapshot: nothing of it is served any more
        for impl in override.impls:
            path = impl.spec.path
            # The newest override of the method still active, or its own behaviour.
            newest = [
                i
                for o in self._overrides
                if o.registry is registry
                for i in o.impls
                if i.spec.path == path
            ]
            registry.replace(newest[-1] if newest else registry.built(path), path)

    # -- faults ------------------------------------------------------------------------------

    @property
    def session_header(self) -> str:
        """The header that tags a call with its test's session (`admin.session_header`)."""
        return self._server.config.admin.session_header

    def add_fault(
        self,
        rule: Mapping[str, Any],
        *,
        source: str = "fault",
        session: str | None = None,
        lines: Mapping[str, int] | None = None,
    ) -> FaultHandle:
        """A fault rule (one `faults:` entry of emulator.yaml), checked against the contracts
        and active until removed or `reset()`; with a `session`, it fires only for calls
        tagged with it (the session header), whatever else it matches."""
        session = session or None
        data = dict(rule)
        ours = [h for h in self._faults if h.session == session]
        if "name" not in data:
            taken = {h.name for h in ours} | {r.name for r in self._server.faults.rules}
            data["name"] = next(
                name for n in itertools.count(1) if (name := f"fault-{n}") not in taken
            )
        config = Config.from_mapping(
            {"faults": [data]},
            source=source,
            lines={f"faults[0].{k}": v for k, v in (lines or {}).items()},
        ).faults[0]
        engine = self._server.faults
        if config.health is not None:
            raise EmulatorError("health faults are set in the configuration (faults=[...])")
        within = f" in session {session!r}" if session else ""
        if any(h.name == config.name for h in ours) or (
            session is None and any(r.name == config.name for r in engine.rules)
        ):
            raise EmulatorError(f"a fault named {config.name!r} is already active{within}")
        contracts = self._server.contracts
        check_method(config.match.method, contracts, f"fault {config.name}: match.method")
        check_request_match(config, contracts, f"fault {config.name}: match.request")
        if session is not None:
            match = dataclasses.replace(
                config.match, metadata={**config.match.metadata, self.session_header: session}
            )
            config = dataclasses.replace(config, match=match)
        handle = FaultHandle(
            engine,
            compile_rule(config, f"fault {config.name}{within}"),
            self._faults.remove,
            session=session,
        )
        self._faults.append(handle)
        return handle

    def faults(self, session: str | None = None) -> list[FaultHandle]:
        """The faults added at run time and still active: the shared ones, and `session`'s."""
        return [h for h in self._faults if h.session in (None, session or None)]

    def remove_fault(self, name: str, session: str | None = None) -> FaultHandle:
        """Undo the fault added at run time under `name` in `session`; EmulatorError if none."""
        for handle in self._faults:
            if handle.name == name and handle.session == (session or None):
                handle.undo()
                return handle
        within = f" in session {session!r}" if session else ""
        active = ", ".join(h.name for h in self._faults if h.session == (session or None))
        raise NotFoundError(
            f"no fault added at run time{within} is named {name!r}"
            + (f"; active: {active}" if active else "")
        )

    def carry(self, snapshot: Snapshot) -> list[str]:
        """What was added at run time, kept for a reload's `snapshot` before it is served:
        stubs built again for its contracts, faults checked against them, scenario states
        as they were. What no longer fits is dropped; why, one line each."""
        served = self._server.snapshot.stubs
        into = snapshot.stubs
        dropped = self.stubs.carry(snapshot.contracts, into)
        served.copy_scenarios(into)
        for handle in list(self._faults):
            config = handle.rule.config
            try:
                check_method(config.match.method, snapshot.contracts, "match.method")
                check_request_match(config, snapshot.contracts, "match.request")
            except EmulatorError as exc:
                handle.undo()
                dropped.append(f"fault {handle.name}: {exc}")
        return dropped

    def fault_stats(self) -> dict[str, dict[str, int]]:
        """Per active fault rule: calls it `matched` and faults it `injected`."""
        return self._server.faults.stats()

    # -- clock, state, health ----------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._server.clock

    @property
    def state(self) -> dict[str, Any]:
        return self._server.state

    async def set_health(self, service: str, status: str) -> None:
        """Report `status` (SERVING, NOT_SERVING, ...) for `service` ("" for the whole server)
        through grpc.health, until set again or `reset()`. Runs on the server's loop."""
        server = self._server
        if service and service not in server.services:
            raise NotFoundError(
                f"no service {service!r} is served{closest(service, server.services)}"
            )
        value = _STATUSES.get(status.upper())
        if value is None:
            raise EmulatorError(
                f"health status {status!r}: use one of {', '.join(sorted(_STATUSES))}"
            )
        await server.health.set(service, value)
        self._health_set.add(service)

    # -- journal and failures ----------------------------------------------------------------

    def _records(self, session: str | None) -> list[CallRecord]:
        records = self._server.journal.records()
        if not session:
            return records
        header = self.session_header
        return [r for r in records if r.metadata.get(header) == session]

    def calls(self, method: str | None = None, *, session: str | None = None) -> CallList:
        """Calls since the last reset, oldest first: all, one method's or one service's; with a
        `session`, only the calls tagged with it."""
        records = self._records(session)
        if method is None:
            return CallList(records)
        if method in self._server.contracts.services:
            return CallList(r for r in records if r.method.startswith(method + "/"))
        name = self.method(method).name
        return CallList(r for r in records if r.method == name)

    def unmatched(self, method: str | None = None, *, session: str | None = None) -> CallList:
        """Calls to methods with stubs that no stub matched (each record's `near_misses` say
        which stubs came closest, and why not)."""
        return CallList(r for r in self.calls(method, session=session) if r.near_misses)

    def verify(
        self,
        method: str,
        *,
        times: int | None = None,
        request: Mapping[str, Any] | Message | None = None,
        metadata: Mapping[str, str] | None = None,
        at_least: int | None = None,
        at_most: int | None = None,
        session: str | None = None,
    ) -> CallList:
        """The calls to `method` that match; AssertionError with near misses when their number
        is not `times` (or under `at_least`, over `at_most`; none given: at least one)."""
        name = self.method(method).name
        return check_called(
            self._records(session),
            name,
            times=times,
            request=request,
            metadata=metadata,
            at_least=at_least,
            at_most=at_most,
        )

    @property
    def behavior_errors(self) -> list[tuple[str, BaseException]]:
        return list(self._server.dispatcher.errors)

    def clear_behavior_errors(self) -> None:
        self._server.dispatcher.errors.clear()

    # -- reset -------------------------------------------------------------------------------

    async def _reset_health(self, services: Sequence[str]) -> None:
        """Back to what the server says without a test: SERVING, or a health fault window's
        status; a service a swap has removed stays unknown."""
        server = self._server
        served = {"", *server.snapshot.health_services}
        for service in services:
            if service in served:
                await server.health.set(service, server.health_windows.status_of(service))

    def reset(self, session: str | None = None, parts: Sequence[str] = ()) -> list[str]:
        """Back to the start: journal, overrides, stubs added at run time (and every stub's
        counters and sequences), scenarios, faults (and their counters), shared state, clock,
        per-call rngs, health statuses set at runtime and behaviour failures; or only the
        `parts` named (see `RESET_PARTS`). With a `session`, only what that session made:
        its stubs, faults, scenarios and calls. Returns the parts reset."""
        unknown = [p for p in parts if p not in RESET_PARTS]
        if unknown:
            raise EmulatorError(
                f"cannot reset {', '.join(map(repr, unknown))}: parts are " + ", ".join(RESET_PARTS)
            )
        chosen = [p for p in RESET_PARTS if not parts or p in parts]
        if session:
            chosen = [p for p in chosen if p in SESSION_PARTS]
            self._reset_session(session, chosen)
            return chosen
        server = self._server
        if "health" in chosen and self._health_set:
            services, self._health_set = sorted(self._health_set), set()
            server.run_on_loop(self._reset_health(services))
        if "overrides" in chosen:
            for override in self._overrides:
                override.active = False  # nothing to put back one by one: restore() does it
            self._overrides.clear()
            server.registry.restore()  # the behaviours of the snapshot being served
        if "faults" in chosen:
            for handle in reversed(list(self._faults)):  # (each leaves the list)
                handle.undo()
            server.faults.reset()
        if "stubs" in chosen or "scenarios" in chosen:
            self.stubs.reset(stubs="stubs" in chosen, scenarios="scenarios" in chosen)
        if "journal" in chosen:
            server.journal.clear()
            tracing = server.telemetry.tracing if server.telemetry is not None else None
            if tracing is not None:
                tracing.clear()  # the spans of the calls the journal no longer has
            server.dispatcher.reset()  # per-call rngs replay from the first call again
            server.dispatcher.errors.clear()
        if "state" in chosen:
            server.state.clear()
        if "clock" in chosen:
            server.clock.reset()
        if len(chosen) == len(RESET_PARTS):
            server.defaults.release()  # big cached defaults: memory a test run should not keep
        return chosen

    def _reset_session(self, session: str, parts: Sequence[str]) -> None:
        if "faults" in parts:
            for handle in [h for h in self._faults if h.session == session]:
                handle.undo()
        if "stubs" in parts or "scenarios" in parts:
            self.stubs.reset(session, stubs="stubs" in parts, scenarios="scenarios" in parts)
        if "journal" in parts:
            self._server.journal.drop(self.session_header, session)


# What reset() can put back, and those of them a session has of its own.
RESET_PARTS = (
    "journal",
    "stubs",
    "scenarios",
    "faults",
    "overrides",
    "state",
    "clock",
    "health",
)
SESSION_PARTS = ("journal", "stubs", "scenarios", "faults")


def closest(name: str, candidates: Sequence[str] | Mapping[str, Any]) -> str:
    """ "; did you mean ...?" with the names closest to `name`, or nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.4)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""

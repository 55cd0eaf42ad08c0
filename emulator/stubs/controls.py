"""Stubs at run time: `emu.stubs.add(...)`, `with emu.stub_for(...)`, counts and scenarios.

    with emu.stub_for("acme.shop.v1.Catalog/GetProduct", match={"request": {"product_id": "p1"}},
                      respond={"message": {"stock_count": 0}}) as stub:
        ...
    assert stub.answered == 1

A stub added at run time is checked against the contracts as a stub file is, answers from the
next call on, and goes when undone, when its `with` block ends or at `reset()`; stubs from files
and emulator.yaml stay, their counters, sequences and scenarios back at the start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from emulator.errors import EmulatorError, NotFoundError
from emulator.stubs.build import Source, build_stubs
from emulator.stubs.model import Stub

if TYPE_CHECKING:
    from emulator.contracts import Contracts
    from emulator.runtime.server import EmulatorServer
    from emulator.stubs.store import StubSet

__all__ = ["StubControls", "StubHandle"]


class StubHandle:
    """Stubs added at run time; `undo()` (or leaving the `with` block) removes them. Their
    counts stay readable afterwards."""

    def __init__(
        self,
        stubs: Sequence[Stub],
        on_undo: Callable[[StubHandle], None],
        data: Sequence[Any],
        where: Source,
    ) -> None:
        self.stubs = tuple(stubs)
        # What they were built from, so a reload builds them again for the new contracts.
        self._data, self._where = tuple(data), where
        self.names = tuple(s.name for s in stubs)
        self._on_undo = on_undo
        self.active = True

    @property
    def answered(self) -> int:
        """Calls these stubs answered."""
        return sum(s.answered for s in self.stubs)

    def undo(self) -> None:
        if self.active:
            self.active = False
            self._on_undo(self)

    def __enter__(self) -> StubHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"<StubHandle {', '.join(self.names)}: answered {self.answered}>"


class StubControls:
    """`emu.stubs`: the stubs of the snapshot being served."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self._handles: list[StubHandle] = []
        self._added = 0

    def add(
        self,
        *stubs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        source: str = "emu.stubs.add()",
        session: str | None = None,
        lines: Mapping[str, int] | None = None,
    ) -> StubHandle:
        """One or more stubs, as a stub file writes them (mappings, or lists of them); with a
        `session`, they answer only calls tagged with it (the session header)."""
        data: list[Any] = []
        for item in stubs:
            data.extend(item if isinstance(item, list | tuple) else [item])
        if not data:
            raise EmulatorError("emu.stubs.add() needs at least one stub")
        # Text with lines (a stub file sent to the admin API) names its keys as a file does.
        prefix = "" if lines else "stubs"
        where = Source(source, dict(lines or {}), prefix, "runtime", first=self._added)
        built = build_stubs(data, self._server.contracts, where)
        for stub in built:
            stub.in_session(session or None)
        self._added += len(built)
        self._server.snapshot.stubs.add(built)  # (ConfigError for a name already served)
        handle = StubHandle(built, self._undone, data, where)
        self._handles.append(handle)
        return handle

    def for_method(self, method: str, **stub: Any) -> StubHandle:
        """`add()` of one stub of `method` (`emu.stub_for(method, match=..., respond=...)`)."""
        return self.add({"method": method, **stub}, source=f"emu.stub_for({method!r})")

    def _undone(self, handle: StubHandle) -> None:
        if handle in self._handles:
            self._handles.remove(handle)
        self._server.snapshot.stubs.remove(handle.stubs)

    def remove(self, names: Sequence[str] = (), *, session: str | None = None) -> list[Stub]:
        """Stubs added at run time, by name (none named: all of them) in `session` (None: the
        shared ones); the stubs removed. A name that is not there is an EmulatorError."""
        wanted = set(names)
        found = [
            s
            for h in self._handles
            for s in h.stubs
            if s.session == (session or None) and (not wanted or s.name in wanted)
        ]
        missing = wanted - {s.name for s in found}
        if missing:
            within = f" in session {session!r}" if session else ""
            raise NotFoundError(
                f"no stub added at run time{within} is named {', '.join(sorted(missing))}; "
                "stubs from files and emulator.yaml stay until the emulator restarts"
            )
        self._drop(found)
        return found

    def _drop(self, stubs: Sequence[Stub]) -> None:
        gone = {id(s) for s in stubs}
        for handle in list(self._handles):
            kept = tuple(s for s in handle.stubs if id(s) not in gone)
            if not kept:
                handle.active = False
                self._handles.remove(handle)
            elif len(kept) != len(handle.stubs):
                handle.stubs, handle.names = kept, tuple(s.name for s in kept)
        self._server.snapshot.stubs.remove(stubs)

    def carry(self, contracts: Contracts, into: StubSet) -> list[str]:
        """Each stub added at run time built again for `contracts` (a reload's) and added to
        `into`, its count kept; those that no longer fit (their method gone, a field renamed)
        are dropped. Why each was dropped, as log lines. Their handles follow the new stubs,
        so undo() and the counts go on working."""
        dropped: list[str] = []
        for handle in list(self._handles):
            wanted = {s.name: s for s in handle.stubs}
            try:
                built = build_stubs(list(handle._data), contracts, handle._where)
            except EmulatorError as exc:
                dropped.extend(f"stub {name} ({s.source}): {exc}" for name, s in wanted.items())
                handle.active = False
                self._handles.remove(handle)
                continue
            kept = tuple(stub for stub in built if stub.name in wanted)  # (not removed since)
            if not kept:
                handle.active = False
                self._handles.remove(handle)
                continue
            for stub in kept:
                old = wanted[stub.name]
                stub.in_session(old.session)
                stub.answered = old.answered
            into.add(kept)  # (names unique already: they were served together)
            handle.stubs, handle.names = kept, tuple(s.name for s in kept)
        return dropped

    def stats(self, session: str | None = None) -> list[dict[str, Any]]:
        """Per stub served (files, config, run time), in load order: name, methods, source,
        session and calls `answered`, those never used included; with a `session`, the shared
        stubs and that session's only."""
        return self._server.snapshot.stubs.stats(session)

    def unused(self) -> list[str]:
        """Names of the stubs served that have answered no call since the last reset."""
        return [s["name"] for s in self.stats() if not s["answered"]]

    def scenario(self, name: str, session: str | None = None) -> str:
        """A scenario's state (`started` until a stub moves it); each session has its own."""
        return self._server.snapshot.stubs.scenarios_of(session or None).get(name, "started")

    def set_scenario(self, name: str, state: str, session: str | None = None) -> None:
        """Put a scenario in `state`, as a stub's `set_state` would."""
        self._server.snapshot.stubs.scenarios_of(session or None)[name] = state

    def reset(
        self, session: str | None = None, *, stubs: bool = True, scenarios: bool = True
    ) -> None:
        """Run-time stubs removed and every stub's counters and sequences restarted (`stubs`),
        scenarios back to `started` (`scenarios`); with a `session`, only that session's."""
        served = self._server.snapshot.stubs
        if session:
            if stubs:
                self._drop([s for h in self._handles for s in h.stubs if s.session == session])
            served.reset(session, counters=stubs, scenarios=scenarios)
            return
        if stubs:
            for handle in list(self._handles):
                handle.active = False
            served.remove([s for h in self._handles for s in h.stubs])
            self._handles.clear()
        served.reset(counters=stubs, scenarios=scenarios)

    def __len__(self) -> int:
        return len(self._server.snapshot.stubs)

    def __iter__(self) -> Any:
        return iter(self._server.snapshot.stubs)

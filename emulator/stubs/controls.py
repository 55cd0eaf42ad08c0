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

from emulator.errors import EmulatorError
from emulator.stubs.build import Source, build_stubs
from emulator.stubs.model import Stub

if TYPE_CHECKING:
    from emulator.runtime.server import EmulatorServer

__all__ = ["StubControls", "StubHandle"]


class StubHandle:
    """Stubs added at run time; `undo()` (or leaving the `with` block) removes them. Their
    counts stay readable afterwards."""

    def __init__(self, stubs: Sequence[Stub], on_undo: Callable[[StubHandle], None]) -> None:
        self.stubs = tuple(stubs)
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
    ) -> StubHandle:
        """One or more stubs, as a stub file writes them (mappings, or lists of them)."""
        data: list[Any] = []
        for item in stubs:
            data.extend(item if isinstance(item, list | tuple) else [item])
        if not data:
            raise EmulatorError("emu.stubs.add() needs at least one stub")
        where = Source(source, {}, "stubs", "runtime", first=self._added)
        built = build_stubs(data, self._server.contracts, where)
        self._added += len(built)
        self._server.snapshot.stubs.add(built)  # (ConfigError for a name already served)
        handle = StubHandle(built, self._undone)
        self._handles.append(handle)
        return handle

    def for_method(self, method: str, **stub: Any) -> StubHandle:
        """`add()` of one stub of `method` (`emu.stub_for(method, match=..., respond=...)`)."""
        return self.add({"method": method, **stub}, source=f"emu.stub_for({method!r})")

    def _undone(self, handle: StubHandle) -> None:
        if handle in self._handles:
            self._handles.remove(handle)
        self._server.snapshot.stubs.remove(handle.stubs)

    def stats(self) -> list[dict[str, Any]]:
        """Per stub served (files, config, run time), in load order: name, methods, source and
        calls `answered`, those never used included."""
        return self._server.snapshot.stubs.stats()

    def unused(self) -> list[str]:
        """Names of the stubs served that have answered no call since the last reset."""
        return [s["name"] for s in self.stats() if not s["answered"]]

    def scenario(self, name: str) -> str:
        """A scenario's state (`started` until a stub moves it)."""
        return self._server.snapshot.stubs.scenarios.get(name, "started")

    def set_scenario(self, name: str, state: str) -> None:
        """Put a scenario in `state`, as a stub's `set_state` would."""
        self._server.snapshot.stubs.scenarios[name] = state

    def reset(self) -> None:
        """Run-time stubs removed; every stub's counters, sequences and scenarios restarted."""
        for handle in list(self._handles):
            handle.active = False
        served = self._server.snapshot.stubs
        served.remove([s for h in self._handles for s in h.stubs])
        self._handles.clear()
        served.reset()

    def __len__(self) -> int:
        return len(self._server.snapshot.stubs)

    def __iter__(self) -> Any:
        return iter(self._server.snapshot.stubs)

"""The stubs being served: per method, in match order, indexed, with scenario states and counts.

A call looks only at its own method's stubs, so matching costs what that method's stubs cost,
however many other methods have. Stubs keyed by a plain equality on a request field (`product_id:
p1`) are indexed by that value: a thousand stubs keyed by id cost one dict lookup per call, and
only the stubs the index points at, plus those with no such key, are checked in full.

Changes (`add`, `remove`) replace a method's `MethodStubs` in one assignment: a call on the event
loop sees the old set or the new one, never half of either, whichever thread changes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from emulator.call import NearMiss
from emulator.changes import Changes
from emulator.errors import ConfigError
from emulator.stubs.model import Stub

__all__ = ["MethodStubs", "StubSet", "describe"]

NEAR_MISSES = 3  # closest stubs a report names


@dataclass(frozen=True, slots=True)
class _Index:
    path: tuple[str, ...]
    get: Any  # message → (present, value)
    buckets: dict[Any, tuple[Stub, ...]]


class MethodStubs:
    """One method's stubs, in the order they are tried: priority (higher first), then the most
    specific (most conditions), then file order."""

    def __init__(self, stubs: Iterable[Stub]) -> None:
        self.stubs = tuple(sorted(stubs, key=lambda s: s.sort_key))
        indexes: dict[tuple[str, ...], _Index] = {}
        rest: list[Stub] = []
        for stub in self.stubs:
            key = next((c for c in stub.request if c.equal_to is not None), None)
            if key is None or not isinstance(stub.mode, str) or stub.mode != "first":
                rest.append(stub)
                continue
            path, value = key.equal_to  # type: ignore[misc]
            index = indexes.get(path)
            if index is None:
                index = indexes[path] = _Index(path, key.get, {})
            index.buckets[value] = (*index.buckets.get(value, ()), stub)
        self._indexes = tuple(indexes.values())
        self._rest = tuple(rest)
        # How many request messages a client or bidi stream must be read before choosing:
        # 0 when no stub looks at them, None for all of them (`any`, `all`).
        need = 0
        everything = False
        for stub in self.stubs:
            if stub.stream is not None:  # the whole stream
                everything = True
                break
            if not stub.request:
                continue
            if stub.mode in ("any", "all"):
                everything = True
                break
            need = max(need, (stub.mode if isinstance(stub.mode, int) else 0) + 1)
        self.need: int | None = None if everything else need

    def candidates(self, message: Message | None) -> Sequence[Stub]:
        """The stubs that may match a call whose (first) request is `message`, in order."""
        if not self._indexes or message is None:
            return self.stubs
        found = list(self._rest)
        for index in self._indexes:
            _, value = index.get(message)
            bucket = index.buckets.get(value)
            if bucket:
                found.extend(bucket)
        if len(found) > 1:
            found.sort(key=lambda s: s.sort_key)
        return found

    def select(
        self, metadata: Any, messages: Sequence[Message], scenarios: dict[str, str]
    ) -> Stub | None:
        """The first stub that matches, or None."""
        first = messages[0] if messages else None
        for stub in self.candidates(first):
            if stub.matches(metadata, messages, scenarios):
                return stub
        return None

    def near_misses(
        self, metadata: Any, messages: Sequence[Message], scenarios: dict[str, str]
    ) -> tuple[NearMiss, ...]:
        """The closest stubs (fewest failed conditions) and why each did not match."""
        scored = [
            (len(reasons), stub.sort_key, stub, reasons)
            for stub in self.stubs
            if (reasons := stub.failures(metadata, messages, scenarios, explain=True))
        ]
        scored.sort(key=lambda s: (s[0], s[1]))
        return tuple(NearMiss(s[2].name, tuple(s[3])) for s in scored[:NEAR_MISSES])


class StubSet:
    """Every stub served, by method path and session; scenario states; answered counts.

    A session's stubs are kept apart: a call tagged with a session is matched against that
    session's stubs of its method and the shared ones (`MethodStubs` of both, built when they
    change), a call without one against the shared ones only. A hundred sessions cost a call
    what its own session's stubs cost. Scenario states are per session too.
    """

    def __init__(
        self,
        stubs: Iterable[Stub] = (),
        *,
        session_header: str = "",
        changes: Changes | None = None,
    ) -> None:
        self.changes = changes or Changes()  # moved whenever a method's stubs change
        self._lock = threading.Lock()  # between threads that change the set, never per call
        self._all: list[Stub] = []
        self._by_method: dict[str, MethodStubs] = {}
        # session → method path → that session's stubs and the shared ones.
        self._sessions: dict[str, dict[str, MethodStubs]] = {}
        self.scenarios: dict[str, str] = {}
        self._session_scenarios: dict[str, dict[str, str]] = {}
        self.session_header = session_header  # the header that names a call's session
        self.add(stubs)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Stub]:
        return iter(list(self._all))

    def __bool__(self) -> bool:
        return True  # an empty set still takes stubs added at run time

    def get(self, path: str, session: str | None = None) -> MethodStubs | None:
        """The stubs a call to `path` in `session` is matched against."""
        if session is not None:
            mine = self._sessions.get(session)
            if mine is not None:
                found = mine.get(path)
                if found is not None:
                    return found
        return self._by_method.get(path)

    def stubbed(self, path: str) -> bool:
        """Whether any stub, shared or of a session, may answer calls to `path`."""
        return path in self._by_method or any(path in t for t in self._sessions.values())

    @property
    def has_sessions(self) -> bool:
        return bool(self._sessions) or bool(self._session_scenarios)

    def named(self, name: str, session: str | None = None) -> Stub | None:
        return next((s for s in self._all if s.name == name and s.session == session), None)

    def add(self, stubs: Iterable[Stub]) -> None:
        stubs = list(stubs)
        if not stubs:
            return
        with self._lock:
            # Names are what counts, the journal and near misses go by; each session has its
            # own, so parallel workers of one test suite may add the same stubs.
            taken = {(s.session, s.name): s for s in self._all}
            for stub in stubs:
                other = taken.setdefault((stub.session, stub.name), stub)
                if other is not stub:
                    within = f" in session {stub.session!r}" if stub.session else ""
                    raise ConfigError(
                        f"{stub.source}: a stub named {stub.name!r} is already served{within} "
                        f"(from {other.source}); give each stub a name of its own"
                    )
            self._all.extend(stubs)
            self._rebuild(stubs)

    def remove(self, stubs: Iterable[Stub]) -> None:
        gone = {id(s) for s in stubs}
        with self._lock:
            removed = [s for s in self._all if id(s) in gone]
            self._all = [s for s in self._all if id(s) not in gone]
            self._rebuild(removed)

    def in_session(self, session: str) -> list[Stub]:
        return [s for s in self._all if s.session == session]

    def _rebuild(self, changed: Iterable[Stub]) -> None:
        shared: set[str] = set()
        per_session: dict[str, set[str]] = {}
        for stub in changed:
            paths = {spec.path for spec in stub.methods}
            if stub.session is None:
                shared |= paths
            else:
                per_session.setdefault(stub.session, set()).update(paths)
        by_path: dict[str, list[Stub]] = {}
        for stub in self._all:
            for spec in stub.methods:
                by_path.setdefault(spec.path, []).append(stub)
        by_method = dict(self._by_method)
        for path in shared:
            mine = [s for s in by_path.get(path, ()) if s.session is None]
            if mine:
                by_method[path] = MethodStubs(mine)
            else:
                by_method.pop(path, None)
        sessions = {name: dict(tables) for name, tables in self._sessions.items()}
        # A change to the shared stubs of a method changes every session that has its own.
        for name, tables in sessions.items():
            per_session.setdefault(name, set()).update(p for p in shared if p in tables)
        for name, changed_paths in per_session.items():
            table = sessions.setdefault(name, {})
            for path in changed_paths:
                stubs = by_path.get(path, ())
                if any(s.session == name for s in stubs):
                    table[path] = MethodStubs(s for s in stubs if s.session in (None, name))
                else:
                    table.pop(path, None)
            if not table:
                del sessions[name]
        # One assignment each: a call sees the old sets or the new ones.
        self._by_method = by_method
        self._sessions = sessions
        self.changes.moved()

    def scenarios_of(self, session: str | None) -> dict[str, str]:
        """The scenario states calls of `session` see and move (each session has its own)."""
        if session is None:
            return self.scenarios
        found = self._session_scenarios.get(session)
        if found is None:
            found = self._session_scenarios.setdefault(session, {})
        return found

    def copy_scenarios(self, other: StubSet) -> None:
        """Every scenario state, shared and per session, into `other` (a reload's set)."""
        other.scenarios.update(self.scenarios)
        for session, states in self._session_scenarios.items():
            other.scenarios_of(session).update(states)

    def reset(
        self, session: str | None = None, *, counters: bool = True, scenarios: bool = True
    ) -> None:
        """Counters, sequences and scenarios back to the start (the stubs stay); with a
        `session`, only that session's stubs and scenarios."""
        if counters:
            for stub in self._all:
                if session is None or stub.session == session:
                    stub.answered = 0
        if not scenarios:
            return
        if session is None:
            self.scenarios.clear()
            self._session_scenarios.clear()
        else:
            self._session_scenarios.pop(session, None)

    def stats(self, session: str | None = None) -> list[dict[str, Any]]:
        """Per stub, in load order: name, methods, where it was written, its session and calls
        answered; with a `session`, only the shared stubs and that session's."""
        return [describe(s) for s in self._all if session is None or s.session in (None, session)]


def describe(stub: Stub) -> dict[str, Any]:
    """A stub as `stats()` lists it: name, methods, source, calls answered and session."""
    return {
        "name": stub.name,
        "methods": [spec.name for spec in stub.methods],
        "source": stub.source,
        "answered": stub.answered,
        "session": stub.session,
    }

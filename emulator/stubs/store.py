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

__all__ = ["MethodStubs", "StubSet"]

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
    """Every stub served, by method path; scenario states; answered counts."""

    def __init__(self, stubs: Iterable[Stub] = (), *, changes: Changes | None = None) -> None:
        self.changes = changes or Changes()  # moved whenever a method's stubs change
        self._lock = threading.Lock()  # between threads that change the set, never per call
        self._all: list[Stub] = []
        self._by_method: dict[str, MethodStubs] = {}
        self.scenarios: dict[str, str] = {}
        self.add(stubs)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Stub]:
        return iter(list(self._all))

    def __bool__(self) -> bool:
        return True  # an empty set still takes stubs added at run time

    def get(self, path: str) -> MethodStubs | None:
        return self._by_method.get(path)

    def named(self, name: str) -> Stub | None:
        return next((s for s in self._all if s.name == name), None)

    def add(self, stubs: Iterable[Stub]) -> None:
        stubs = list(stubs)
        if not stubs:
            return
        with self._lock:
            taken = {s.name: s for s in self._all}
            for stub in stubs:
                other = taken.setdefault(stub.name, stub)
                if other is not stub:
                    # Names are what counts, the journal and near misses go by.
                    raise ConfigError(
                        f"{stub.source}: a stub named {stub.name!r} is already served (from "
                        f"{other.source}); give each stub a name of its own"
                    )
            self._all.extend(stubs)
            self._rebuild({spec.path for stub in stubs for spec in stub.methods})

    def remove(self, stubs: Iterable[Stub]) -> None:
        gone = {id(s) for s in stubs}
        with self._lock:
            removed = [s for s in self._all if id(s) in gone]
            self._all = [s for s in self._all if id(s) not in gone]
            self._rebuild({spec.path for stub in removed for spec in stub.methods})

    def _rebuild(self, paths: set[str]) -> None:
        by_method = dict(self._by_method)
        for path in paths:
            mine = [s for s in self._all if any(spec.path == path for spec in s.methods)]
            if mine:
                by_method[path] = MethodStubs(mine)
            else:
                by_method.pop(path, None)
        self._by_method = by_method  # one assignment: calls see the old set or the new one
        self.changes.moved()

    def reset(self) -> None:
        """Counters, sequences and scenarios back to the start (the stubs stay)."""
        for stub in self._all:
            stub.answered = 0
        self.scenarios.clear()

    def stats(self) -> list[dict[str, Any]]:
        """Per stub, in load order: name, methods, where it was written and calls answered."""
        return [
            {
                "name": s.name,
                "methods": [spec.name for spec in s.methods],
                "source": s.source,
                "answered": s.answered,
            }
            for s in self._all
        ]

"""Bounded caches. `BoundedCache`: least recently used, bounded by entries and, optionally, by
the bytes of its values, for what the process keeps between emulators (compiled and loaded
contracts): a test session that builds emulators from hundreds of different contracts must not
keep every one of them. `IdentityCache`: what is worked out once per object on a per-call path
(a message type's field names, a behaviour's bound answer, an encoded span resource).
A leaf module: it imports nothing of the emulator's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, overload

__all__ = ["BoundedCache", "IdentityCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")
T = TypeVar("T")


class BoundedCache(Generic[K, V]):
    """`get` and `cache[key] = value`, as a dict; the least recently used entries go first once
    there are more than `entries` of them, or their values weigh more than `max_bytes` (by
    `size`). A value heavier than `max_bytes` alone is not kept. Safe across threads."""

    def __init__(
        self,
        entries: int,
        *,
        max_bytes: int | None = None,
        size: Callable[[V], int] | None = None,
    ) -> None:
        if max_bytes is not None and size is None:
            raise ValueError("max_bytes needs size, the function that weighs a value")
        self.entries = entries
        self.max_bytes = max_bytes
        self._size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        with self._lock:
            try:
                self._data.move_to_end(key)
            except KeyError:
                return default
            return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        weight = self._size(value) if self._size is not None else 0
        with self._lock:
            self._drop(key)
            if self.max_bytes is not None and weight > self.max_bytes:
                return
            self._data[key] = value
            self._bytes += weight
            while len(self._data) > self.entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                self._drop(next(iter(self._data)))

    def _drop(self, key: K) -> None:
        value = self._data.pop(key, _MISSING)
        if value is not _MISSING and self._size is not None:
            self._bytes -= self._size(value)  # type: ignore[arg-type]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes(self) -> int:
        """What the values weigh together (0 without `size`)."""
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


class IdentityCache(Generic[T, V]):
    """A value per object, found by the object's identity (descriptors and SDK objects hash
    slowly or by value), the object kept beside it so its id is not reused while the entry
    stands. Cleared, not evicted, once it holds `entries`: refilling costs one working-out per
    object, and a per-call lookup pays no recency bookkeeping and no lock (a race between
    threads only works a value out twice)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._data: dict[int, tuple[T, V]] = {}

    def get(self, obj: T) -> V | None:
        kept = self._data.get(id(obj))
        return kept[1] if kept is not None and kept[0] is obj else None

    def put(self, obj: T, value: V) -> V:
        """Keep `value` for `obj`; `value` again, for `return cache.put(obj, made)`."""
        if len(self._data) >= self.entries:
            self._data.clear()
        self._data[id(obj)] = (obj, value)
        return value

    def __len__(self) -> int:
        return len(self._data)


_MISSING = object()

"""`Headers`: gRPC metadata as a read-only mapping, as the journal's records hold it.

gRPC metadata is an ordered list of pairs in which a key may repeat; tests mostly want one
header's value. `Headers` is both: a `Mapping` from each key to its first value, with
`get_all(key)` for every value and `pairs()` for the list as it travelled. A leaf: it imports
nothing of ours.

    record.metadata["x-tenant"]             # "acme": the first value; KeyError when absent
    record.metadata.get("x-tenant", "none")
    record.metadata.get_all("x-tenant")     # ["acme", "evil"]: every value, in order
    "X-Tenant" in record.metadata           # keys are case-insensitive (gRPC sends them lower-case)
    record.metadata["trace-bin"]            # b"...": binary (-bin) values are bytes
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["Headers"]

Value = str | bytes
Pairs = tuple[tuple[str, Value], ...]


class Headers(Mapping[str, Value]):
    """Read-only gRPC metadata: each key maps to its first value; iteration, `len`, `keys()` and
    `items()` see each key once, in the order it first came.

    Equality: with another `Headers` or a tuple or list of pairs (the form records had before),
    the same pairs in the same order; with any other mapping, the same keys and values when no
    key repeats (a dict cannot hold a repeated header, so it never equals one). For backward
    compatibility `(key, value) in headers` is true when that pair was sent.
    """

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, Value]] = ()) -> None:
        self._pairs: Pairs = tuple((key.lower(), value) for key, value in pairs)
        first: dict[str, Value] = {}
        for key, value in self._pairs:
            first.setdefault(key, value)
        self._first = first

    def __getitem__(self, key: str) -> Value:
        try:
            return self._first[key.lower()]
        except (KeyError, AttributeError):
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item.lower() in self._first
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            return (item[0].lower(), item[1]) in self._pairs
        return False

    def first_items(self) -> ItemsView[str, Value]:
        """Each key (lower-case) with its first value, as the dict's own view: `items()`
        checks membership case-insensitively, and so goes through Python for each key (an
        admin ListCalls reads the headers of thousands of records)."""
        return self._first.items()

    def get(self, key: str, default: Any = None) -> Value | Any:
        try:
            return self._first.get(key.lower(), default)
        except AttributeError:  # not a string: never a header
            return default

    def get_all(self, key: str) -> list[Value]:
        """Every value of `key`, in the order they were sent; `[]` when it was not."""
        key = key.lower()
        return [value for name, value in self._pairs if name == key]

    def pairs(self) -> Pairs:
        """Every (key, value) pair, repeats included, in the order they were sent."""
        return self._pairs

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._pairs == other._pairs
        if isinstance(other, tuple | list):
            try:
                return self._pairs == tuple(tuple(pair) for pair in other)
            except TypeError:  # not a sequence of pairs
                return False
        if isinstance(other, Mapping):
            if len(self._pairs) != len(self._first):
                return False
            try:
                return self._first == {key.lower(): value for key, value in other.items()}
            except AttributeError:  # a key that is not a string
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"

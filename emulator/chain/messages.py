"""The messages of one call in one direction, kept within a bound however long the stream.

A call keeps its first `keep` and last `keep` messages and counts the rest, so a stream of a
million messages costs what a stream of `2 * keep` does, open or in the journal. Positions are
those of the whole stream: `messages[0]` is the first message, `messages[-1]` the latest, and
`len(messages)` counts every message seen; iterating yields only the kept ones, in order.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterator

__all__ = ["DEFAULT_KEEP", "Messages"]

DEFAULT_KEEP = 100  # messages kept at each end of a stream


class Messages:
    """Raw message bytes: the first and last `keep`, the total count and the total size."""

    __slots__ = ("_digest", "_head", "_keep", "_tail", "count", "kept_bytes", "total_bytes")

    def __init__(self, keep: int = DEFAULT_KEEP, *, digest: bool = False) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self._keep = keep
        self._head: list[bytes] = []
        # Made only once the head is full: most calls have a message or two, and an empty
        # deque alone costs more than the rest of the record (the journal keeps 10,000).
        self._tail: deque[bytes] | None = None
        self.count = 0  # every message seen
        self.total_bytes = 0  # their sizes
        self.kept_bytes = 0  # sizes of those still held
        # A running SHA-256 of every message, length-prefixed so that boundaries count: the key
        # of a client stream's default response, whatever was dropped from the middle.
        self._digest = hashlib.sha256() if digest else None

    def append(self, data: bytes) -> None:
        self.count += 1
        self.total_bytes += len(data)
        if self._digest is not None:
            self._digest.update(struct.pack(">I", len(data)))
            self._digest.update(data)
        if len(self._head) < self._keep:
            self._head.append(data)
            self.kept_bytes += len(data)
            return
        if self._tail is None:
            self._tail = deque()
        self._tail.append(data)
        self.kept_bytes += len(data)
        if len(self._tail) > self._keep:
            self.kept_bytes -= len(self._tail.popleft())

    def digest(self) -> bytes:
        """SHA-256 over every message so far (needs `digest=True`)."""
        if self._digest is None:
            raise RuntimeError("these messages keep no digest")
        return self._digest.digest()

    @property
    def dropped(self) -> int:
        """Messages from the middle of the stream that were counted but not kept."""
        return self.count - len(self._head) - len(self._tail or ())

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> bytes:
        """The message at stream position `index` (negative: from the end), if it was kept."""
        position = index + self.count if index < 0 else index
        if not 0 <= position < self.count:
            raise IndexError(f"message {index} of {self.count}")
        if position < len(self._head):
            return self._head[position]
        tail = self._tail or deque()
        start = self.count - len(tail)
        if position >= start:
            return tail[position - start]
        raise IndexError(f"message {index} of {self.count} was not kept (only the first and last)")

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._tail or ()

    def __repr__(self) -> str:
        return f"<Messages {self.count} ({self.dropped} not kept), {self.total_bytes} bytes>"

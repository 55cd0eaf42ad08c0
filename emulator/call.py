"""The record of one call in flight (`Call`), gRPC metadata, and the bounded message lists a
call keeps per direction. A leaf: it imports nothing else of the emulator's (type hints aside),
so every layer can share it.

`Messages`: a call keeps its first `keep` and last `keep` messages and counts the rest, so a
stream of a million messages costs what a stream of `2 * keep` does, open or in the journal.
Positions are those of the whole stream: `messages[0]` is the first message, `messages[-1]` the
latest, and `len(messages)` counts every message seen; iterating yields only the kept ones.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from emulator.contracts.model import MethodSpec

__all__ = [
    "DEADLINE_SLACK",
    "DEFAULT_KEEP",
    "Call",
    "Messages",
    "Metadata",
    "NearMiss",
    "first_value",
    "first_values",
    "past_deadline",
]

DEFAULT_KEEP = 100  # messages kept at each end of a stream
# How close to its deadline a cancelled call counts as DEADLINE_EXCEEDED: the client cancels at
# its own deadline, slightly before the server's.
DEADLINE_SLACK = 0.05


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

    def kept(self) -> tuple[bytes, ...]:
        """The messages kept, in order, as a tuple (what the journal stores)."""
        tail = self._tail
        return tuple(self._head) if tail is None else (*self._head, *tail)

    def __repr__(self) -> str:
        return f"<Messages {self.count} ({self.dropped} not kept), {self.total_bytes} bytes>"


Metadata = tuple[tuple[str, str | bytes], ...]


_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


class Call:
    """One call in flight: raw request and response bytes, metadata and, at the end, status.

    `requests` and `responses` keep the first and last `keep` messages of a stream and count
    the rest (see `Messages`), so a long stream holds bounded memory while open and afterwards.
    """

    __slots__ = (
        "answered_by",
        "behaviour_time",
        "budget",
        "claims",
        "code",
        "context",
        "deadline",
        "decoded",
        "details",
        "duration",
        "ended",
        "fault_kinds",
        "faults",
        "headers_out",
        "identities",
        "metadata",
        "near_misses",
        "peer",
        "principal",
        "requests",
        "responses",
        "servicer_context",
        "slots",
        "spec",
        "started",
        "trailers",
        "trailers_out",
        "violations",
    )

    def __init__(
        self,
        spec: MethodSpec,
        metadata: Metadata,
        peer: str,
        deadline: float | None,
        *,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.spec = spec
        self.metadata = metadata
        self.peer = peer
        self.deadline = deadline  # time.time() seconds
        self.started = time.time()
        self.duration = 0.0
        self.ended = False
        self.faults: tuple[str, ...] = ()  # names of the fault rules that fired
        # What each of them did, in the same order: delay, deadline, abort, stream, or some of
        # them joined by "+" (telemetry labels faults by rule and kind).
        self.fault_kinds: tuple[str, ...] = ()
        # Response headers an interceptor adds (the request id): sent with the first headers.
        self.headers_out: Metadata = ()
        # Trailers an interceptor adds (the request id, `request_id_response: trailers`): sent
        # with the status, whatever it is.
        self.trailers_out: Metadata = ()
        # Per-interceptor state (`Interceptor.state`); made on first use, most calls need none.
        self.slots: dict[object, Any] | None = None
        # (seconds from `started`, message): how long the responder may take, when an
        # interceptor (max_duration) limits it; past it the call ends DEADLINE_EXCEEDED.
        self.budget: tuple[float, str] | None = None
        # (first start, last end) in time.time() seconds of the behaviour's own steps, when one
        # ran: the span of the call gets a child for it.
        self.behaviour_time: tuple[float, float] | None = None
        # grpc's ServicerContext while the call runs (interceptors read the peer's TLS
        # identity from it); dropped when the call ends, as the journal keeps the call.
        self.servicer_context: Any = None
        # A client stream's default answer is keyed by all its requests: keep their digest.
        self.requests = Messages(keep, digest=spec.digests_requests)
        # (raw bytes, message): the request message last decoded as the contracts' class, so
        # request validation and the responder decode it once between them (`respond.parse`).
        self.decoded: tuple[bytes, Message] | None = None
        self.responses = Messages(keep)
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailers: Metadata = ()
        self.context: Any = None  # the behaviour's CallContext, once it has one
        self.identities: tuple[str, ...] = ()  # names that certificate proves (SANs, CN)
        self.principal: str | None = None  # the token's subject
        self.claims: Mapping[str, Any] = _NO_CLAIMS
        # What answered: `default`, `behaviour ...`, `stub NAME`; set by the responder picked.
        self.answered_by = ""
        # The closest stubs of a method with stubs when none matched, and why (near misses).
        self.near_misses: tuple[NearMiss, ...] = ()
        # Rules the call's messages broke (`request.name: is required`), when validation is on.
        self.violations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NearMiss:
    """A stub that came closest to answering a call, and the conditions that failed."""

    stub: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.stub}: {'; '.join(self.reasons)}"


def first_value(metadata: Iterable[tuple[str, str | bytes]], key: str) -> str | bytes | None:
    """The first value of header `key` (lower case), or None: one scan, no dict built."""
    for name, value in metadata:
        if name == key:
            return value
    return None


def first_values(metadata: Metadata) -> dict[str, str | bytes]:
    """Each header's first value (gRPC metadata may repeat a key)."""
    return dict(reversed(metadata))


def past_deadline(call: Call) -> bool:
    """Whether the client has given up on `call`: its deadline is (all but) past."""
    return call.deadline is not None and time.time() >= call.deadline - DEADLINE_SLACK

"""`CallContext`: what a behaviour method sees of the call it answers (its `ctx` argument)."""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from emulator.call import Metadata, first_values
from emulator.metadata import checked
from emulator.runtime.compression import compression_name

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

    from emulator.contracts.model import MethodSpec

__all__ = ["CallContext", "Metadata"]


class CallContext:
    """One call, as a behaviour sees it.

    `metadata` maps each header to its first value; `invocation_metadata` keeps every pair.
    `rng` is seeded from (seed, method, how many calls that method had before), so behaviour
    randomness replays with the seed. `state` is shared by every call of one emulator.
    """

    def __init__(
        self,
        *,
        method: MethodSpec,
        invocation_metadata: Metadata,
        peer: str,
        deadline: float | None,
        rng: Callable[[], random.Random],
        state: MutableMapping[str, Any],
        clock: Callable[[], datetime.datetime],
        default_response: Callable[[], Message],
    ) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata
        self.metadata: dict[str, str | bytes] = first_values(invocation_metadata)
        self.peer = peer
        self.deadline = deadline  # seconds since the epoch (time.time()), None without a deadline
        self._rng_factory = rng
        self._rng: random.Random | None = None
        self.state = state
        self._clock = clock
        self._default_response = default_response
        # Filled in by the security chain (mTLS identity, token principal and claims).
        self.peer_identity: str | None = None  # the first SAN (URI, then DNS) or the CN
        self.peer_identities: tuple[str, ...] = ()
        self.principal: str | None = None
        self.claims: Mapping[str, Any] = {}
        self.initial_metadata: Metadata = ()
        self.trailing_metadata: Metadata = ()
        self._request_stream: Any = None  # a sync behaviour's request iterator, for the runtime
        # Response compression, for the runtime: what the behaviour asked for, until the headers
        # take it; what the headers named, once they went; whether the next message goes plain.
        self._compression: str | None = None
        self._compression_sent: str | None = None
        self._uncompressed_next = False

    @property
    def rng(self) -> random.Random:
        """A generator seeded from (seed, method, call number): behaviour randomness replays."""
        if self._rng is None:  # seeding costs ~15 µs: only for behaviours that draw
            self._rng = self._rng_factory()
        return self._rng

    def time_remaining(self) -> float | None:
        """Seconds until the client's deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    def now(self) -> datetime.datetime:
        """The emulator's clock: real time unless a test froze or advanced it."""
        return self._clock()

    def default_response(self) -> Message:
        """A fresh copy of the deterministic default response for this request, to start from."""
        return self._default_response()

    def set_initial_metadata(
        self, metadata: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
    ) -> None:
        """Headers sent before the first response message (or with the status, if none)."""
        self.initial_metadata = checked(metadata, "ctx.set_initial_metadata()")

    def set_trailing_metadata(
        self, metadata: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
    ) -> None:
        """Trailers sent with the status."""
        self.trailing_metadata = checked(metadata, "ctx.set_trailing_metadata()")

    def set_compression(self, algorithm: str | grpc.Compression) -> None:
        """Compress this call's response messages: "gzip", "deflate", or "none" ("identity");
        a `grpc.Compression` also does. The response headers name the algorithm, so it must be
        chosen before the first message goes (afterwards only the one in force is accepted);
        `server.compression` is the default."""
        name = compression_name(algorithm, "ctx.set_compression()")
        sent = self._compression_sent
        if sent is None:
            self._compression = name
        elif name != sent:
            raise RuntimeError(
                f"ctx.set_compression({algorithm!r}) after the first response message: the "
                f"response headers went out naming {sent!r}; choose the algorithm before the "
                "first message (ctx.disable_next_message_compression() sends one message "
                "uncompressed)"
            )

    def disable_next_message_compression(self) -> None:
        """Send the next response message uncompressed (those after it are compressed again)."""
        self._uncompressed_next = True

    def __repr__(self) -> str:
        return f"<CallContext {self.method.name} peer={self.peer}>"

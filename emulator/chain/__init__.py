"""The interceptor chain every call passes through, and the record of a call in flight.

An `Interceptor` sees a call at three points, whatever the RPC kind:

    before(call)               before the responder runs; raise RpcAbort to refuse the call
    before_response(call, i)   before response message i is sent (streams: each message)
    after(call)                once the status is known (journal, telemetry)

Security interceptors run first, then faults, so nothing a test configures lets a request through
that the policy refuses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from emulator.chain.messages import DEFAULT_KEEP, Messages

if TYPE_CHECKING:
    from emulator.contracts.model import MethodSpec
    from emulator.runtime.context import CallContext

__all__ = ["Call", "Chain", "Interceptor", "Messages", "Metadata", "first_values"]

Metadata = tuple[tuple[str, str | bytes], ...]


class Call:
    """One call in flight: raw request and response bytes, metadata and, at the end, status.

    `requests` and `responses` keep the first and last `keep` messages of a stream and count
    the rest (see `Messages`), so a long stream holds bounded memory while open and afterwards.
    """

    __slots__ = (
        "claims",
        "code",
        "context",
        "deadline",
        "details",
        "duration",
        "ended",
        "faults",
        "identities",
        "metadata",
        "peer",
        "peer_cert",
        "principal",
        "requests",
        "responses",
        "spec",
        "started",
        "stream_fault",
        "trailers",
    )

    def __init__(
        self,
        spec: MethodSpec,
        metadata: Metadata,
        peer: str,
        deadline: float | None,
        peer_cert: bytes | None = None,
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
        self.faults: list[str] = []  # names of the fault rules that fired
        self.stream_fault: Any = None  # set by the faults interceptor for a stream it cuts
        # A client stream's default answer is keyed by all its requests: keep their digest.
        client_stream = spec.kind.client_streaming and not spec.kind.server_streaming
        self.requests = Messages(keep, digest=client_stream)
        self.responses = Messages(keep)
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailers: Metadata = ()
        self.context: CallContext | None = None
        self.peer_cert = peer_cert  # the verified client certificate (PEM), under mTLS
        self.identities: tuple[str, ...] = ()  # names that certificate proves (SANs, CN)
        self.principal: str | None = None  # the token's subject
        self.claims: Mapping[str, Any] = {}


def first_values(metadata: Metadata) -> dict[str, str | bytes]:
    """Each header's first value (gRPC metadata may repeat a key)."""
    return dict(reversed(metadata))


class Interceptor:
    """Override any of the three hooks; the defaults do nothing."""

    async def before(self, call: Call) -> None:
        """Runs before the responder; raise `RpcAbort` to end the call with a status."""

    async def before_response(self, call: Call, index: int) -> None:
        """Runs before response message `index` is sent."""

    def after(self, call: Call) -> None:
        """Runs once the call has its status; must not raise."""


class Chain:
    """Interceptors in order; hooks no interceptor overrides cost nothing per call."""

    def __init__(self, interceptors: Sequence[Interceptor] = ()) -> None:
        self.interceptors = list(interceptors)
        self._refresh()

    def _refresh(self) -> None:
        def overriding(name: str) -> list[Interceptor]:
            base = getattr(Interceptor, name)
            return [i for i in self.interceptors if getattr(type(i), name) is not base]

        self._before = overriding("before")
        self._before_response = overriding("before_response")
        self._after = overriding("after")

    @property
    def checks_responses(self) -> bool:
        return bool(self._before_response)

    async def before(self, call: Call) -> None:
        for interceptor in self._before:
            await interceptor.before(call)

    async def before_response(self, call: Call, index: int) -> None:
        for interceptor in self._before_response:
            await interceptor.before_response(call, index)

    def after(self, call: Call) -> None:
        for interceptor in reversed(self._after):
            interceptor.after(call)

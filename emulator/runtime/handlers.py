"""The `Dispatcher`: the building blocks every call is run with, whatever its RPC kind.

A call's `Call` record (`begin`), its chain hooks, its responder (`pick`, `exchange`), each
response message on its way out (`respond`), its status (`finish`, `fail`, `close`) and its
journal record (`end`). The four kinds put them together in `emulator.runtime.routes`, and only
there; what lasts from one snapshot to the next (chain, state, calls in flight, failures) lives
here.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import (
    Callable,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2  # type: ignore[import-untyped]

from emulator.behavior.convert import ReturnTypeError
from emulator.behavior.defaults import seeded_rng
from emulator.call import DEFAULT_KEEP, Call, Metadata, past_deadline
from emulator.chain import Chain
from emulator.contracts.model import MethodSpec
from emulator.errors import RpcAbort
from emulator.metadata import MAX_DETAILS, MAX_STATUS_BYTES, encoded_size, size, truncated
from emulator.respond import Answer, BadRequest, ClientGone, Escaped, Exchange, Responder
from emulator.runtime.compression import algorithm
from emulator.runtime.context import CallContext
from emulator.runtime.inflight import InFlight
from emulator.validation.responses import ResponseCheck

__all__ = ["Dispatcher", "ServicerContext"]

log = logging.getLogger("emulator")

ServicerContext: TypeAlias = Any  # grpc ships no type hints for its aio context


class Dispatcher:
    """Runs calls: every call, whatever its kind, becomes a `Call` that passes the interceptor
    chain before the responder runs, at each request and response message and once its status
    is known; the first of its route's responders that picks the call answers it. What lasts
    from one snapshot to the next (chain, state, calls in flight, failures) lives here."""

    def __init__(
        self,
        *,
        seed: int,
        state: MutableMapping[str, Any],
        clock: Callable[[], datetime.datetime],
        chain: Chain | None = None,
        keep_messages: int = DEFAULT_KEEP,
        compression: str | None = None,
    ) -> None:
        self.seed = seed  # of each call's ctx.rng
        self.inflight = InFlight(self.expire)
        self.state = state
        self.clock = clock
        self.chain = chain or Chain()
        self.keep_messages = keep_messages  # first and last messages a call keeps per direction
        # The algorithm of every response unless a behaviour chooses (server.compression).
        self.compression = compression
        self._calls: defaultdict[str, int] = defaultdict(int)
        # (method, exception) of each behaviour that failed in a way no test means to:
        # `Emulator` raises them in the test (RpcAbort and bad requests are not among them).
        # Bounded: a long-running server that nobody reads them from must not grow.
        self.errors: deque[tuple[str, BaseException]] = deque(maxlen=100)
        # Method path → the check of its responses (`validation.responses`), for the snapshot
        # served: only methods whose response type has rules (the server sets it with each
        # snapshot's validation plan).
        self.responses: Mapping[str, ResponseCheck] = {}

    def reset(self) -> None:
        """Per-method call counts back to zero, so each test's `ctx.rng` replays."""
        self._calls.clear()

    # -- building blocks -------------------------------------------------------------------

    def lifecycle(self, spec: MethodSpec, grpc_ctx: ServicerContext) -> _Lifecycle:
        """`async with` around one call of any kind: chain hooks, status and journal."""
        return _Lifecycle(self, self.begin(spec, grpc_ctx), grpc_ctx)

    def begin(self, spec: MethodSpec, grpc_ctx: ServicerContext) -> Call:
        remaining = grpc_ctx.time_remaining()
        call = Call(
            spec,
            # Plain tuples, not grpc's _Metadatum: the journal keeps them, and the garbage
            # collector stops tracking plain tuples of strings, never a tuple subclass.
            tuple(map(tuple, grpc_ctx.invocation_metadata() or ())),
            grpc_ctx.peer(),
            None if remaining is None else time.time() + remaining,
            keep=self.keep_messages,
        )
        call.servicer_context = grpc_ctx
        if call.deadline is not None:  # only those are ever waited for (and expire)
            self.inflight.add(call)
        return call

    def end(self, call: Call) -> None:
        if call.ended:
            return
        call.ended = True
        call.duration = time.time() - call.started
        try:
            self.chain.after(call)
        finally:
            if call.deadline is not None:
                self.inflight.remove(call)
        ctx = call.context
        if ctx is not None and ctx._request_stream is not None:
            ctx._request_stream.close()  # a sync behaviour waiting for a request stops
        # The journal keeps the Call until it is read: drop what records never need.
        call.context = call.servicer_context = call.slots = call.decoded = None

    def context(self, call: Call, default: Callable[[], Message]) -> CallContext:
        spec = call.spec
        self._calls[spec.path] += 1
        ctx = CallContext(
            method=spec,
            invocation_metadata=call.metadata,
            peer=call.peer,
            deadline=call.deadline,
            rng=functools.partial(
                seeded_rng, self.seed, spec.name + "#ctx", b"", self._calls[spec.path]
            ),
            state=self.state,
            clock=self.clock,
            default_response=default,
        )
        ctx.peer_identity = call.identities[0] if call.identities else None
        ctx.peer_identities = call.identities
        ctx.principal = call.principal
        ctx.claims = call.claims
        call.context = ctx
        return ctx

    def pick(self, call: Call, responders: Sequence[Responder]) -> Answer:
        """The responder that answers `call`: the first that picks it."""
        for responder in responders:
            answer = responder.pick(call)
            if answer is not None:
                return answer
        raise AssertionError("the default responder picks every call")  # pragma: no cover

    def exchange(self, call: Call, grpc_ctx: ServicerContext, **request: Any) -> Exchange:
        check = None
        if self.responses:  # (none: not even a lookup)
            check = self.responses.get(call.spec.path)
            if check is not None and check.spec is not call.spec:
                check = None  # a call on the snapshot before a swap: left alone
        return Exchange(
            call, self.chain, self.context, grpc_ctx=grpc_ctx, check_response=check, **request
        )

    async def respond(self, call: Call, grpc_ctx: ServicerContext, data: bytes) -> bytes:
        """Last steps before a response message leaves: chain, headers, compression, journal."""
        if self.chain.checks_responses:
            await self.chain.before_response(call, len(call.responses))
        ctx = call.context
        if ctx is not None or self.compression is not None or call.headers_out:
            pending = self._pending_headers(call, first=not call.responses)
            if pending is not None:
                await self._send_headers(grpc_ctx, *pending)
        if ctx is not None and ctx._uncompressed_next:
            grpc_ctx.disable_next_message_compression()
            ctx._uncompressed_next = False
        call.responses.append(data)
        return data

    async def fail(self, grpc_ctx: ServicerContext, exc: BaseException, call: Call) -> NoReturn:
        """End the call with the status that fits `exc`; the server keeps serving."""
        name = call.spec.name
        trailers: Metadata = call.context.trailing_metadata if call.context else ()
        if call.trailers_out:
            trailers = (*trailers, *call.trailers_out)
        if isinstance(exc, RpcAbort):
            code, details = exc.code, exc.message
            trailers = (*trailers, *_abort_trailers(exc))
        elif isinstance(exc, BadRequest):
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        elif isinstance(exc, ReturnTypeError):
            log.error("%s: %s", name, exc)
            code, details = grpc.StatusCode.INTERNAL, str(exc)
            self.errors.append((name, exc))
        else:
            cause = exc.original if isinstance(exc, Escaped) else exc
            text = str(exc) if isinstance(exc, Escaped) else f"{type(exc).__name__}: {exc}"
            where = exc.where if isinstance(exc, Escaped) else ""
            at = f" in {where}" if where else ""
            log.error("%s: behaviour raised %s%s", name, type(cause).__name__, at, exc_info=cause)
            # Cut the exception's text, never the place: that is what the caller looks for.
            place = f" ({at[1:]})" if at else ""
            code = grpc.StatusCode.UNKNOWN
            details = truncated(text, MAX_DETAILS - encoded_size(place)) + place
            self.errors.append((name, cause))
        details = truncated(details)
        if size(trailers) + encoded_size(details) > MAX_STATUS_BYTES:
            # Sent as is, the client would refuse the trailers (RESOURCE_EXHAUSTED) and see
            # something the journal never recorded: send, and record, this instead.
            log.error("%s: the status's trailers are over 8 KiB: sending INTERNAL", name)
            details = (
                f"the {code.name} status of {name} carries {size(trailers)} bytes of trailers "
                f"and details, over gRPC's {MAX_STATUS_BYTES} byte metadata limit: send less"
            )
            code = grpc.StatusCode.INTERNAL
            trailers = ()
        if not call.ended:  # (a call that expired keeps the DEADLINE_EXCEEDED it recorded)
            call.code, call.details, call.trailers = code, details, trailers
        await self.headers(call, grpc_ctx)
        self.end(call)  # journalled before the client can see the status
        await grpc_ctx.abort(code, details, trailers)
        raise AssertionError("grpc's abort() returned")  # pragma: no cover - it always raises

    async def headers(self, call: Call, grpc_ctx: ServicerContext, *, first: bool = False) -> None:
        """Headers a behaviour set, sent before the next response message or, if none comes,
        before the status, as Go and C++ servers send them; with the `first` message, the
        compression the behaviour (`ctx.set_compression`) or `server.compression` chose."""
        pending = self._pending_headers(call, first=first)
        if pending is not None:
            await self._send_headers(grpc_ctx, *pending)

    def _pending_headers(self, call: Call, *, first: bool) -> tuple[Metadata, str | None] | None:
        """What headers() has to send (metadata, compression), taken off the call's context;
        None when there is nothing, so the per-message path awaits nothing."""
        ctx = call.context
        metadata: Metadata = call.headers_out
        call.headers_out = ()
        wanted: str | None = None
        if ctx is not None:
            metadata, wanted = (*metadata, *ctx.initial_metadata), ctx._compression
            ctx.initial_metadata, ctx._compression = (), None
        if first:
            wanted = wanted or self.compression
            if ctx is not None:
                ctx._compression_sent = wanted or "identity"
        return (metadata, wanted) if metadata or wanted is not None else None

    async def _send_headers(
        self, grpc_ctx: ServicerContext, metadata: Metadata, wanted: str | None
    ) -> None:
        if wanted is not None:
            grpc_ctx.set_compression(algorithm(wanted))
        # Sent even when empty with a compression: the headers grpc.aio sends with a unary
        # response by itself leave the algorithm out, and the message would go uncompressed.
        await grpc_ctx.send_initial_metadata(metadata)

    async def finish(self, call: Call, grpc_ctx: ServicerContext) -> None:
        """Trailers a behaviour (or an interceptor) set go out with an OK status (and headers
        not sent yet)."""
        ctx = call.context
        if ctx is None:
            if call.headers_out:  # a stream that sent no message: the headers go first
                await self._send_headers(
                    grpc_ctx, *self._pending_headers(call, first=False) or ((), None)
                )
            trailers = call.trailers_out
        else:
            pending = self._pending_headers(call, first=False)
            if pending is not None:
                await self._send_headers(grpc_ctx, *pending)
            trailers = (*ctx.trailing_metadata, *call.trailers_out)
        if trailers:
            grpc_ctx.set_trailing_metadata(trailers)
            call.trailers = trailers

    def expire(self, call: Call) -> None:
        """End a call the client has given up on (its deadline passed) before grpc gets to it."""
        self.cancelled(call)
        self.end(call)

    def cancelled(self, call: Call) -> None:
        # The client cancels at its own deadline, a moment before the server's: a cancellation
        # that close is the deadline, as the client saw it.
        if call.ended:
            return
        call.code = (
            grpc.StatusCode.DEADLINE_EXCEEDED if past_deadline(call) else grpc.StatusCode.CANCELLED
        )

    async def unary_start(self, call: Call, request: bytes) -> None:
        """A unary request's call, before its responder: the request and the chain's hooks."""
        call.requests.append(request)
        chain = self.chain
        if chain.checks_calls:
            await chain.before(call)
        if chain.checks_requests:
            await chain.on_request(call, 0)

    async def close(self, call: Call, grpc_ctx: ServicerContext, exc: BaseException | None) -> None:
        """The status of a call whose responder is done (`exc` None) or raised `exc`: OK with
        the behaviour's trailers, the status that fits the exception (the abort replaces it),
        or CANCELLED / DEADLINE_EXCEEDED. `end()` comes after it, whatever it raises."""
        if isinstance(exc, ClientGone):
            self.cancelled(call)
            self.end(call)
            raise asyncio.CancelledError from None  # as grpc ends a call the client left
        if grpc_ctx.cancelled():
            self.cancelled(call)  # the client has left: what was answered never arrived
        elif exc is None:
            await self.finish(call, grpc_ctx)
        elif isinstance(exc, Exception):
            await self.fail(grpc_ctx, exc, call)
        elif isinstance(exc, GeneratorExit) or _cancelled():
            self.cancelled(call)
        else:
            # SystemExit, KeyboardInterrupt or a CancelledError of the behaviour's own: were
            # it let through, it would stop the event loop, or leave the call unanswered.
            await self.fail(grpc_ctx, Escaped(exc), call)


class _Lifecycle:
    """Ends a call the same way for the kinds that stream (`Dispatcher.close`, then `end`)."""

    __slots__ = ("call", "dispatcher", "grpc_ctx")

    def __init__(self, dispatcher: Dispatcher, call: Call, grpc_ctx: ServicerContext) -> None:
        self.dispatcher, self.call, self.grpc_ctx = dispatcher, call, grpc_ctx

    async def __aenter__(self) -> Call:
        return self.call

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        try:
            await self.dispatcher.close(self.call, self.grpc_ctx, exc)
        finally:
            self.dispatcher.end(self.call)


def _cancelled() -> bool:
    """Whether the running task is being cancelled (by grpc: the client left or the deadline
    passed), as opposed to a CancelledError a behaviour raised itself."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _abort_trailers(exc: RpcAbort) -> Metadata:
    """An RpcAbort's trailers, with its details packed as google.rpc.Status."""
    trailers: list[tuple[str, str | bytes]] = list(exc.trailers.items())
    if exc.details:
        status = status_pb2.Status(code=exc.code.value[0], message=exc.message)
        for detail in exc.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        trailers.append(("grpc-status-details-bin", status.SerializeToString()))
    return tuple(trailers)

"""One grpc.aio method handler per method, for all four RPC kinds, over raw bytes.

Requests arrive as bytes (no grpc deserializer) so that a default response can be computed from,
and cached by a digest of, the exact request bytes, and so that bytes that do not parse become a
clean INVALID_ARGUMENT instead of a framework error. Responses leave as bytes for the same reason.

This is the one place where the four RPC kinds differ: each call becomes a `Call` that passes the
interceptor chain, then an `Exchange` answered by the responder picked for it (`emulator.respond`),
with the building blocks of the `Dispatcher` (`emulator.runtime.handlers`). Each method's `Route`
is fixed when the serving snapshot is built (`emulator.runtime.snapshot`): a call ends on the
snapshot it started on.

grpc.aio gets a `Route`'s bound method as the handler: it sees a coroutine (or async generator)
function, as it must to drive it on the loop, and there is no wrapper coroutine in between.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import CoroutineType
from typing import Any, Protocol

import grpc

from emulator.changes import Changes
from emulator.contracts.model import MethodSpec, RpcKind
from emulator.respond import Responder
from emulator.runtime.handlers import Dispatcher, ServicerContext

__all__ = ["EmulatorHandler", "Route", "method_handlers"]


class Route:
    """One method as a snapshot serves it. `responders` are asked in order; the last (the
    default responder) answers whatever none of the others picks.

    Only those that may pick this method's calls are asked (`Responder.picks`): worked out at the
    first call and again after each `changes` (a test's override, stubs added or removed), so
    the next call sees a change and a call meanwhile pays one comparison. A unary-unary method
    that only the default answers, with nothing in the chain to run per message, goes the short
    way: no `Exchange`, no pick, no context manager; the same `Call`, hooks and journal record.
    """

    __slots__ = ("_asked", "_changes", "_now", "_seen", "dispatcher", "responders", "spec")

    def __init__(
        self,
        spec: MethodSpec,
        responders: Sequence[Responder],
        dispatcher: Dispatcher,
        changes: Changes | None = None,
    ) -> None:
        self.spec = spec
        self.responders = tuple(responders)
        self.dispatcher = dispatcher
        self._changes = changes or Changes()
        self._seen = -1  # the `changes` count `_asked` was worked out at
        self._asked: tuple[Responder, ...] = self.responders
        self._now: Callable[..., bytes] | None = None  # the one responder's `answer_now`

    def asked(self) -> tuple[Responder, ...]:
        """The responders that may pick a call of this method now, in order."""
        seen = self._changes.count  # read before what it counts: a later change moves it again
        if seen != self._seen:
            asked = []
            path = self.spec.path
            for responder in self.responders:
                picks = responder.picks(path)
                if picks is False:
                    continue
                asked.append(responder)
                if picks:
                    break  # it takes every call: those after it are never asked
            self._asked = tuple(asked)
            only = asked[0] if len(asked) == 1 and self.spec.kind is RpcKind.UNARY_UNARY else None
            self._now = None if only is None else only.answer_now
            self._seen = seen
        return self._asked

    def handler(self) -> grpc.RpcMethodHandler:
        factory, behaviour = {
            RpcKind.UNARY_UNARY: (grpc.unary_unary_rpc_method_handler, self.unary_unary),
            RpcKind.UNARY_STREAM: (grpc.unary_stream_rpc_method_handler, self.unary_stream),
            RpcKind.STREAM_UNARY: (grpc.stream_unary_rpc_method_handler, self.stream_unary),
            RpcKind.STREAM_STREAM: (grpc.stream_stream_rpc_method_handler, self.stream_stream),
        }[self.spec.kind]
        return factory(behaviour)

    # -- the four kinds, as grpc.aio calls them ----------------------------------------------

    async def unary_unary(self, request: bytes, grpc_ctx: ServicerContext) -> bytes:
        # The lifecycle of the other kinds, written out: the most common call pays for no
        # context manager and no extra coroutines (`Dispatcher.close` is the shared ending).
        dispatcher = self.dispatcher
        call = dispatcher.begin(self.spec, grpc_ctx)
        try:
            call.requests.append(request)
            chain = dispatcher.chain
            if chain.checks_calls:
                await chain.before(call)
            if chain.checks_requests:
                await chain.on_request(call, 0)
            asked = self.asked()
            now = self._now
            if now is not None:
                out = now(call, request)
            else:
                answer = dispatcher.pick(call, asked)
                answers = answer(dispatcher.exchange(call, grpc_ctx, request=request))
                out = answers if isinstance(answers, bytes) else await _one(answers)
            if (
                chain.checks_responses
                or call.context is not None
                or dispatcher.compression
                or call.headers_out
            ):
                out = await dispatcher.respond(call, grpc_ctx, out)
            else:
                call.responses.append(out)  # all that respond() would do
        except BaseException as exc:
            await dispatcher.close(call, grpc_ctx, exc)
            raise
        else:
            if grpc_ctx.cancelled():
                dispatcher.cancelled(call)  # the client has left: the answer never arrived
            elif call.context is not None or call.trailers_out:
                await dispatcher.finish(call, grpc_ctx)
            return out
        finally:
            dispatcher.end(call)

    async def unary_stream(self, request: bytes, grpc_ctx: ServicerContext) -> AsyncIterator[bytes]:
        dispatcher = self.dispatcher
        async with dispatcher.lifecycle(self.spec, grpc_ctx) as call:
            await dispatcher.unary_start(call, request)
            answer = dispatcher.pick(call, self.asked())
            answers = answer(dispatcher.exchange(call, grpc_ctx, request=request))
            if not isinstance(answers, AsyncIterator):  # one message, ready or awaited
                out = answers if isinstance(answers, bytes) else await answers
                yield await dispatcher.respond(call, grpc_ctx, out)
                return
            async for data in answers:
                yield await dispatcher.respond(call, grpc_ctx, data)

    async def stream_unary(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext
    ) -> bytes:
        dispatcher = self.dispatcher
        async with dispatcher.lifecycle(self.spec, grpc_ctx) as call:
            if dispatcher.chain.checks_calls:
                await dispatcher.chain.before(call)
            answer = dispatcher.pick(call, self.asked())
            answers = answer(dispatcher.exchange(call, grpc_ctx, stream=requests))
            out = answers if isinstance(answers, bytes) else await _one(answers)
            return await dispatcher.respond(call, grpc_ctx, out)

    async def stream_stream(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext
    ) -> AsyncIterator[bytes]:
        dispatcher = self.dispatcher
        async with dispatcher.lifecycle(self.spec, grpc_ctx) as call:
            if dispatcher.chain.checks_calls:
                await dispatcher.chain.before(call)
            answer = dispatcher.pick(call, self.asked())
            answers = answer(dispatcher.exchange(call, grpc_ctx, stream=requests))
            if not isinstance(answers, AsyncIterator):  # one message, ready or awaited
                out = answers if isinstance(answers, bytes) else await answers
                yield await dispatcher.respond(call, grpc_ctx, out)
                return
            async for data in answers:
                yield await dispatcher.respond(call, grpc_ctx, data)


def _one(answers: AsyncIterator[bytes] | Awaitable[bytes]) -> Awaitable[bytes]:
    """What to await for a unary answer: a coroutine itself, no layer around it."""
    return answers if type(answers) is CoroutineType else _single(answers)


async def _single(answers: AsyncIterator[bytes] | Awaitable[bytes]) -> bytes:
    """The one message a unary response has (responders yield exactly one)."""
    if not isinstance(answers, AsyncIterator):
        return await answers
    out = b""
    async for out in answers:  # noqa: B007 - the last (only) one is the answer
        pass
    return out


class _Handlers(Protocol):
    @property
    def handlers(self) -> Mapping[str, grpc.RpcMethodHandler]: ...


class _Served(Protocol):
    """What holds the snapshot being served (the server): one reference, replaced in one
    assignment (see `emulator.runtime.snapshot`)."""

    @property
    def snapshot(self) -> _Handlers: ...


class EmulatorHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """The one generic handler: each call looks its method up in the snapshot served when it
    starts, and keeps that method handler (and its route) to the end."""

    def __init__(self, served: _Served) -> None:
        self._served = served

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._served.snapshot.handlers.get(details.method)  # None: UNIMPLEMENTED


def method_handlers(routes: Mapping[str, Route]) -> dict[str, Any]:
    """A ready grpc method handler per method path, each bound to its route."""
    return {path: route.handler() for path, route in routes.items()}

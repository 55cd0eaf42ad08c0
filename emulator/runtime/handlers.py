"""One grpc.aio method handler per RPC, for all four kinds, over raw bytes.

Requests arrive as bytes (no grpc deserializer) so that a default response can be computed from,
and cached by a digest of, the exact request bytes, and so that bytes that do not parse become a
clean INVALID_ARGUMENT instead of a framework error. Responses leave as bytes for the same reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2  # type: ignore[import-untyped]

from emulator.behavior.convert import ReturnTypeError, to_message
from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.registry import Implementation, Registry, Style
from emulator.chain import Call, Chain
from emulator.chain.messages import DEFAULT_KEEP
from emulator.contracts.model import Contracts, MethodSpec, RpcKind
from emulator.errors import RpcAbort
from emulator.metadata import MAX_STATUS_BYTES, encoded_size, size, truncated
from emulator.runtime.context import CallContext, Metadata
from emulator.runtime.inflight import InFlight, past_deadline

__all__ = ["Dispatcher", "EmulatorHandler"]

log = logging.getLogger("emulator")

ServicerContext: TypeAlias = Any  # grpc ships no type hints for its aio context


class _BadRequest(Exception):
    """Request bytes that do not parse as the method's input type."""


class _ClientGone(Exception):
    """The request stream ended because the client cancelled or its deadline passed, not
    because it finished sending: what follows must not be journalled as an answer."""


class _Escaped(Exception):
    """A BaseException a behaviour let out (SystemExit, KeyboardInterrupt, its own
    CancelledError, StopIteration): it fails that call, never the server."""

    def __init__(self, exc: BaseException, hint: str = "") -> None:
        super().__init__(f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''}{hint}")
        self.original = exc


class Dispatcher:
    """Answers calls: the method's behaviour when there is one, the default response otherwise.

    Every call, whatever its kind, becomes a `Call` that passes the interceptor chain before the
    responder runs, before each response message and once its status is known.
    """

    def __init__(
        self,
        contracts: Contracts,
        registry: Registry,
        defaults: DefaultResponses,
        *,
        executor: Executor,
        state: MutableMapping[str, Any],
        clock: Callable[[], datetime.datetime],
        chain: Chain | None = None,
        client_certs: bool = False,
        max_duration: Mapping[str, float] | None = None,
        stream_executor: Executor | None = None,
        keep_messages: int = DEFAULT_KEEP,
    ) -> None:
        self.contracts = contracts
        self.registry = registry
        self.defaults = defaults
        self.executor = executor
        # Sync behaviours that read a request stream wait on the client between messages: they
        # get threads of their own, so idle streams never starve the pool of other calls.
        self.stream_executor = stream_executor or executor
        self.inflight = InFlight(self.expire)
        self.state = state
        self.clock = clock
        self.chain = chain or Chain()
        self.client_certs = client_certs  # read the peer certificate of each call (mTLS)
        self.max_duration = dict(max_duration or {})  # method path → seconds a behaviour may take
        self.keep_messages = keep_messages  # first and last messages a call keeps per direction
        self._calls: defaultdict[str, int] = defaultdict(int)
        # (method, exception) of each behaviour that failed in a way no test means to:
        # `Emulator` raises them in the test (RpcAbort and bad requests are not among them).
        # Bounded: a long-running server that nobody reads them from must not grow.
        self.errors: deque[tuple[str, BaseException]] = deque(maxlen=100)

    def reset(self) -> None:
        """Per-method call counts back to zero, so each test's `ctx.rng` replays."""
        self._calls.clear()

    # -- building blocks -------------------------------------------------------------------

    def parse(self, spec: MethodSpec, data: bytes) -> Message:
        try:
            return spec.input_class.FromString(data)
        except (DecodeError, RuntimeError) as exc:
            raise _BadRequest(
                f"request is not a valid {spec.input_class.DESCRIPTOR.full_name}: {exc}"
            ) from None

    def lifecycle(self, spec: MethodSpec, grpc_ctx: ServicerContext) -> _Lifecycle:
        """`async with` around one call of any kind: chain hooks, status and journal."""
        return _Lifecycle(self, self.begin(spec, grpc_ctx), grpc_ctx)

    def begin(self, spec: MethodSpec, grpc_ctx: ServicerContext) -> Call:
        remaining = grpc_ctx.time_remaining()
        cert = None
        if self.client_certs:
            pem = grpc_ctx.auth_context().get("x509_pem_cert")
            cert = pem[0] if pem else None
        call = Call(
            spec,
            tuple(grpc_ctx.invocation_metadata() or ()),
            grpc_ctx.peer(),
            None if remaining is None else time.time() + remaining,
            cert,
            keep=self.keep_messages,
        )
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
            self.inflight.remove(call)
        ctx = call.context
        if ctx is not None and ctx._request_stream is not None:
            ctx._request_stream.close()  # a sync behaviour waiting for a request stops
        # The journal keeps the Call until it is read: drop what records never need.
        call.context = call.peer_cert = call.stream_fault = None

    def context(self, call: Call, default: Callable[[], Message]) -> CallContext:
        spec = call.spec
        self._calls[spec.path] += 1
        ctx = CallContext(
            method=spec,
            invocation_metadata=call.metadata,
            peer=call.peer,
            deadline=call.deadline,
            rng=functools.partial(
                self.defaults.rng, spec.name + "#ctx", b"", self._calls[spec.path]
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

    def encode(self, value: object, impl: Implementation, default: Callable[[], bytes]) -> bytes:
        if value is None:
            return default()
        msg = to_message(value, impl.spec.output_class, self.contracts.pool, impl.origin)
        return msg.SerializeToString()

    async def within(self, call: Call, step: Awaitable[Any]) -> Any:
        """Await one step of a behaviour inside the method's `max_duration`, if it has one."""
        limit = self.max_duration.get(call.spec.path)
        try:
            if limit is None:
                return await step
            try:
                left = max(0.0, limit - (time.time() - call.started))
                return await asyncio.wait_for(step, left)
            except TimeoutError:
                raise RpcAbort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{call.spec.name} ran longer than its max_duration of {limit:g}s",
                ) from None
        except GeneratorExit as exc:  # raised by the behaviour: not a close of this call
            raise _Escaped(exc) from exc

    def pool(self, call: Call) -> Executor:
        return self.stream_executor if call.spec.kind.client_streaming else self.executor

    async def run(self, call: Call, impl: Implementation, *args: Any) -> Any:
        """Call a plain (non-generator) behaviour: sync ones in the thread pool, off the loop."""
        if impl.style is Style.ASYNC:
            return await self.within(call, impl.func(*args))
        loop = asyncio.get_running_loop()
        step = loop.run_in_executor(self.pool(call), functools.partial(_sync, impl.func, *args))
        return await self.within(call, step)

    async def results(self, call: Call, impl: Implementation, *args: Any) -> AsyncIterator[Any]:
        """The messages a streaming behaviour produces, whatever its style."""
        done = object()
        if impl.style is Style.ASYNC_GEN:
            generator = impl.func(*args)
            while (item := await self.within(call, anext(generator, done))) is not done:
                yield item
            return
        if impl.style is Style.SYNC_GEN:
            source: Any = impl.func(*args)
        else:
            source = await self.run(call, impl, *args)
            if source is None:
                return
            if hasattr(source, "__aiter__"):
                while (item := await self.within(call, anext(source, done))) is not done:
                    yield item
                return
            if isinstance(source, Mapping | Message | str | bytes) or not hasattr(
                source, "__iter__"
            ):
                # Iterating a dict would stream its keys: say what a stream method returns.
                raise ReturnTypeError(
                    f"{impl.origin}: returned {type(source).__name__}, but {call.spec.name} is "
                    "server streaming: yield each message, or return a list of them"
                )
            source = iter(source)
        loop = asyncio.get_running_loop()
        pool = self.pool(call)
        try:
            while True:
                step = loop.run_in_executor(pool, _sync, next, source, done)
                item = await self.within(call, step)
                if item is done:
                    return
                yield item
        finally:
            if hasattr(source, "close"):  # a cancelled call runs the generator's `finally` now
                loop.run_in_executor(pool, _close, source)

    async def respond(self, call: Call, grpc_ctx: ServicerContext, data: bytes) -> bytes:
        """Last steps before a response message leaves: chain, headers, journal."""
        if self.chain.checks_responses:
            await self.chain.before_response(call, len(call.responses))
        ctx = call.context
        if ctx is not None and ctx.initial_metadata:
            await grpc_ctx.send_initial_metadata(ctx.initial_metadata)
            ctx.initial_metadata = ()
        call.responses.append(data)
        return data

    async def fail(self, grpc_ctx: ServicerContext, exc: BaseException, call: Call) -> NoReturn:
        """End the call with the status that fits `exc`; the server keeps serving."""
        name = call.spec.name
        trailers: Metadata = call.context.trailing_metadata if call.context else ()
        if isinstance(exc, RpcAbort):
            code, details = exc.code, exc.message
            trailers = (*trailers, *_abort_trailers(exc))
        elif isinstance(exc, _BadRequest):
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        elif isinstance(exc, ReturnTypeError):
            log.error("%s: %s", name, exc)
            code, details = grpc.StatusCode.INTERNAL, str(exc)
            self.errors.append((name, exc))
        else:
            cause = exc.original if isinstance(exc, _Escaped) else exc
            log.error("%s: behaviour raised %s", name, type(cause).__name__, exc_info=cause)
            text = str(exc) if isinstance(exc, _Escaped) else f"{type(exc).__name__}: {exc}"
            code, details = grpc.StatusCode.UNKNOWN, text
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

    async def headers(self, call: Call, grpc_ctx: ServicerContext) -> None:
        """Headers a behaviour set but no response message carried: they still go out, before
        the status, as Go and C++ servers send them."""
        ctx = call.context
        if ctx is not None and ctx.initial_metadata:
            await grpc_ctx.send_initial_metadata(ctx.initial_metadata)
            ctx.initial_metadata = ()

    async def finish(self, call: Call, grpc_ctx: ServicerContext) -> None:
        """Trailers a behaviour set go out with an OK status."""
        ctx = call.context
        if ctx is None:
            return
        await self.headers(call, grpc_ctx)
        if ctx.trailing_metadata:
            grpc_ctx.set_trailing_metadata(ctx.trailing_metadata)
            call.trailers = ctx.trailing_metadata

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

    # -- the four kinds --------------------------------------------------------------------

    async def unary_unary(
        self, request: bytes, grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> bytes:
        async with self.lifecycle(spec, grpc_ctx) as call:
            call.requests.append(request)
            await self.chain.before(call)
            impl = self.registry.get(spec.path)
            if impl is None:
                out = self.defaults.cached(spec, request)
                if out is None:
                    self.parse(spec, request)
                    out = self.defaults.response_bytes(spec, request)
            else:
                message = self.parse(spec, request)
                ctx = self.context(call, lambda: self.defaults.response(spec, request))
                result = await self.run(call, impl, message, ctx)
                out = self.encode(
                    result, impl, functools.partial(self.defaults.response_bytes, spec, request)
                )
            return await self.respond(call, grpc_ctx, out)

    async def unary_stream(
        self, request: bytes, grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> AsyncIterator[bytes]:
        async with self.lifecycle(spec, grpc_ctx) as call:
            call.requests.append(request)
            await self.chain.before(call)
            message = self.parse(spec, request)
            impl = self.registry.get(spec.path)
            if impl is None:
                for index in range(self.defaults.stream_messages):
                    data = self.defaults.response_bytes(spec, request, index)
                    yield await self.respond(call, grpc_ctx, data)
            else:
                ctx = self.context(call, lambda: self.defaults.response(spec, request))
                async for item in self.results(call, impl, message, ctx):
                    default = functools.partial(
                        self.defaults.response_bytes, spec, request, len(call.responses)
                    )
                    yield await self.respond(call, grpc_ctx, self.encode(item, impl, default))

    async def stream_unary(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> bytes:
        async with self.lifecycle(spec, grpc_ctx) as call:

            def default() -> bytes:
                return self.defaults.response_bytes(spec, call.requests.digest())

            await self.chain.before(call)
            impl = self.registry.get(spec.path)
            if impl is None:
                async for _ in self._messages(spec, requests, call, grpc_ctx):
                    pass
                out = default()
            else:
                ctx = self.context(
                    call, lambda: self.defaults.response(spec, call.requests.digest())
                )
                stream = self._messages(spec, requests, call, grpc_ctx)
                argument = stream if impl.style.is_async else _SyncIterator(stream, ctx)
                out = self.encode(await self.run(call, impl, argument, ctx), impl, default)
            return await self.respond(call, grpc_ctx, out)

    async def stream_stream(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> AsyncIterator[bytes]:
        async with self.lifecycle(spec, grpc_ctx) as call:

            def last() -> bytes:
                return call.requests[-1] if call.requests else b""

            await self.chain.before(call)
            impl = self.registry.get(spec.path)
            if impl is None:
                async for _ in self._messages(spec, requests, call, grpc_ctx):
                    data = self.defaults.response_bytes(spec, last())
                    yield await self.respond(call, grpc_ctx, data)
            else:
                ctx = self.context(call, lambda: self.defaults.response(spec, last()))
                stream = self._messages(spec, requests, call, grpc_ctx)
                argument = stream if impl.style.is_async else _SyncIterator(stream, ctx)
                async for item in self.results(call, impl, argument, ctx):
                    default = functools.partial(self.defaults.response_bytes, spec, last())
                    yield await self.respond(call, grpc_ctx, self.encode(item, impl, default))

    async def _messages(
        self,
        spec: MethodSpec,
        requests: AsyncIterator[bytes],
        call: Call,
        grpc_ctx: ServicerContext,
    ) -> AsyncIterator[Message]:
        async for raw in requests:
            message = self.parse(spec, raw)
            call.requests.append(raw)
            yield message
        # grpc ends the request stream the same way when the client cancels (or its deadline
        # passes) as when it finishes sending: tell them apart, or a default would answer.
        # The cancellation comes with the end of the stream: one loop turn lets grpc deliver it
        # (the task is then cancelled right here).
        await asyncio.sleep(0)
        if grpc_ctx.cancelled() or past_deadline(call):
            raise _ClientGone


class _Lifecycle:
    """Ends a call the same way for all four kinds: OK with the behaviour's trailers, the status
    that fits an exception (the abort replaces it), or CANCELLED / DEADLINE_EXCEEDED."""

    __slots__ = ("call", "dispatcher", "grpc_ctx")

    def __init__(self, dispatcher: Dispatcher, call: Call, grpc_ctx: ServicerContext) -> None:
        self.dispatcher, self.call, self.grpc_ctx = dispatcher, call, grpc_ctx

    async def __aenter__(self) -> Call:
        return self.call

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        dispatcher, call = self.dispatcher, self.call
        try:
            if isinstance(exc, _ClientGone):
                dispatcher.cancelled(call)
                dispatcher.end(call)
                raise asyncio.CancelledError from None  # as grpc ends a call the client left
            if self.grpc_ctx.cancelled():
                dispatcher.cancelled(call)  # the client has left: what was answered never arrived
            elif exc is None:
                await dispatcher.finish(call, self.grpc_ctx)
            elif isinstance(exc, Exception):
                await dispatcher.fail(self.grpc_ctx, exc, call)
            elif isinstance(exc, GeneratorExit) or _cancelled():
                dispatcher.cancelled(call)
            else:
                # SystemExit, KeyboardInterrupt or a CancelledError of the behaviour's own: were
                # it let through, it would stop the event loop, or leave the call unanswered.
                await dispatcher.fail(self.grpc_ctx, _Escaped(exc), call)
        finally:
            dispatcher.end(call)


def _cancelled() -> bool:
    """Whether the running task is being cancelled (by grpc: the client left or the deadline
    passed), as opposed to a CancelledError a behaviour raised itself."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _sync(func: Callable[..., Any], *args: Any) -> Any:
    """Run sync behaviour code in a worker thread. StopIteration cannot cross into an asyncio
    future (the call would never end), so it becomes an error that says where it came from."""
    try:
        return func(*args)
    except GeneratorExit as exc:
        raise _Escaped(exc) from exc
    except StopIteration as exc:
        raise _Escaped(
            exc, " (did the behaviour call next() past the end of the request stream?)"
        ) from exc


class _SyncIterator(Iterator[Message]):
    """Lets a sync behaviour, running in a thread of its own, iterate an async request stream."""

    def __init__(self, stream: AsyncIterator[Message], ctx: CallContext) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._pending: Any = None
        self._closed = False
        ctx._request_stream = self  # closed when the call ends

    def __next__(self) -> Message:
        if self._closed:
            raise StopIteration
        future = asyncio.run_coroutine_threadsafe(_next_or_none(self._stream), self._loop)
        self._pending = future
        try:
            item = future.result()
        except concurrent.futures.CancelledError:
            raise StopIteration from None  # the call ended while waiting: nothing more comes
        finally:
            self._pending = None
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        """The call is over: a thread waiting for the next request stops waiting."""
        self._closed = True
        pending = self._pending
        if pending is not None:
            pending.cancel()


async def _next_or_none(stream: AsyncIterator[Message]) -> Message | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


def _close(generator: Any) -> None:
    # Still running its last step in another thread (the call was cancelled mid-step): that
    # step finishes on its own and the generator is collected afterwards.
    with contextlib.suppress(ValueError):
        generator.close()


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


class EmulatorHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """The one generic handler: a dict from method path to a ready method handler."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._handlers = {
            path: _method_handler(dispatcher, spec)
            for path, spec in dispatcher.contracts.methods.items()
        }

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(details.method)  # None: grpc answers UNIMPLEMENTED


def _method_handler(dispatcher: Dispatcher, spec: MethodSpec) -> grpc.RpcMethodHandler:
    factories: dict[RpcKind, tuple[Callable[..., Any], Callable[..., Any]]] = {
        RpcKind.UNARY_UNARY: (grpc.unary_unary_rpc_method_handler, dispatcher.unary_unary),
        RpcKind.UNARY_STREAM: (grpc.unary_stream_rpc_method_handler, dispatcher.unary_stream),
        RpcKind.STREAM_UNARY: (grpc.stream_unary_rpc_method_handler, dispatcher.stream_unary),
        RpcKind.STREAM_STREAM: (grpc.stream_stream_rpc_method_handler, dispatcher.stream_stream),
    }
    factory, behaviour = factories[spec.kind]
    return factory(_bound(behaviour, spec))


def _bound(func: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
    # A plain closure (not functools.partial) so grpc.aio still sees a coroutine or async
    # generator function and drives it natively.
    if spec.kind.server_streaming:

        async def stream_handler(request: Any, context: ServicerContext) -> AsyncIterator[bytes]:
            async for item in func(request, context, spec):
                yield item

        return stream_handler

    async def handler(request: Any, context: ServicerContext) -> bytes:
        result: bytes = await func(request, context, spec)
        return result

    return handler

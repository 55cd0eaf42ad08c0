"""One grpc.aio method handler per RPC, for all four kinds, over raw bytes.

Requests arrive as bytes (no grpc deserializer) so that a default response can be computed from,
and cached by, the exact request bytes, and so that bytes that do not parse become a clean
INVALID_ARGUMENT instead of a framework error. Responses leave as bytes for the same reason.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import struct
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from concurrent.futures import Executor
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2  # type: ignore[import-untyped]

from emulator.behavior.convert import ReturnTypeError, to_message
from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.registry import Implementation, Registry, Style
from emulator.contracts.model import Contracts, MethodSpec, RpcKind
from emulator.errors import RpcAbort
from emulator.runtime.context import CallContext

__all__ = ["Dispatcher", "EmulatorHandler"]

log = logging.getLogger("emulator")

ServicerContext: TypeAlias = Any  # grpc ships no type hints for its aio context


class _BadRequest(Exception):
    """Request bytes that do not parse as the method's input type."""


class Dispatcher:
    """Answers calls: the method's behaviour when there is one, the default response otherwise."""

    def __init__(
        self,
        contracts: Contracts,
        registry: Registry,
        defaults: DefaultResponses,
        *,
        executor: Executor,
        state: MutableMapping[str, Any],
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self.contracts = contracts
        self.registry = registry
        self.defaults = defaults
        self.executor = executor
        self.state = state
        self.clock = clock
        self._calls: defaultdict[str, int] = defaultdict(int)

    # -- building blocks -------------------------------------------------------------------

    def parse(self, spec: MethodSpec, data: bytes) -> Message:
        try:
            return spec.input_class.FromString(data)
        except (DecodeError, RuntimeError) as exc:
            raise _BadRequest(
                f"request is not a valid {spec.input_class.DESCRIPTOR.full_name}: {exc}"
            ) from None

    def context(
        self, spec: MethodSpec, grpc_ctx: ServicerContext, default: Callable[[], Message]
    ) -> CallContext:
        self._calls[spec.path] += 1
        remaining = grpc_ctx.time_remaining()
        return CallContext(
            method=spec,
            invocation_metadata=tuple(grpc_ctx.invocation_metadata() or ()),
            peer=grpc_ctx.peer(),
            deadline=None if remaining is None else time.time() + remaining,
            rng=self.defaults.rng(spec.name + "#ctx", b"", self._calls[spec.path]),
            state=self.state,
            clock=self.clock,
            default_response=default,
        )

    def encode(self, value: object, impl: Implementation, default: Callable[[], bytes]) -> bytes:
        if value is None:
            return default()
        msg = to_message(value, impl.spec.output_class, self.contracts.pool, impl.origin)
        return msg.SerializeToString()

    async def run(self, impl: Implementation, *args: Any) -> Any:
        """Call a plain (non-generator) behaviour: sync ones in the thread pool, off the loop."""
        if impl.style is Style.ASYNC:
            return await impl.func(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(impl.func, *args))

    async def results(self, impl: Implementation, *args: Any) -> AsyncIterator[Any]:
        """The messages a streaming behaviour produces, whatever its style."""
        if impl.style is Style.ASYNC_GEN:
            async for item in impl.func(*args):
                yield item
            return
        if impl.style is Style.SYNC_GEN:
            source: Any = impl.func(*args)
        else:
            source = await self.run(impl, *args)
            if source is None:
                return
            if hasattr(source, "__aiter__"):
                async for item in source:
                    yield item
                return
            source = iter(source)
        loop = asyncio.get_running_loop()
        done = object()
        while True:
            item = await loop.run_in_executor(self.executor, next, source, done)
            if item is done:
                return
            yield item

    async def fail(
        self, grpc_ctx: ServicerContext, exc: BaseException, spec: MethodSpec
    ) -> NoReturn:
        """End the call with the status that fits `exc`; the server keeps serving."""
        if isinstance(exc, RpcAbort):
            await _abort(grpc_ctx, exc)
        if isinstance(exc, _BadRequest):
            await grpc_ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if isinstance(exc, ReturnTypeError):
            log.error("%s: %s", spec.name, exc)
            await grpc_ctx.abort(grpc.StatusCode.INTERNAL, str(exc))
        log.error("%s: behaviour raised %s", spec.name, type(exc).__name__, exc_info=exc)
        await grpc_ctx.abort(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
        raise AssertionError("grpc's abort() returned")  # pragma: no cover - it always raises

    async def _send_metadata(self, ctx: CallContext, grpc_ctx: ServicerContext) -> None:
        if ctx.initial_metadata:
            await grpc_ctx.send_initial_metadata(ctx.initial_metadata)
            ctx.initial_metadata = ()

    # -- the four kinds --------------------------------------------------------------------

    async def unary_unary(
        self, request: bytes, grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> bytes:
        impl = self.registry.get(spec.path)
        if impl is None:
            cached = self.defaults.cached(spec, request)
            if cached is not None:
                return cached
        try:
            message = self.parse(spec, request)
            default = functools.partial(self.defaults.response_bytes, spec, request)
            if impl is None:
                return default()
            ctx = self.context(spec, grpc_ctx, lambda: self.defaults.response(spec, request))
            try:
                out = self.encode(await self.run(impl, message, ctx), impl, default)
                await self._send_metadata(ctx, grpc_ctx)
                return out
            finally:
                _trailers(grpc_ctx, ctx)
        except Exception as exc:
            await self.fail(grpc_ctx, exc, spec)

    async def unary_stream(
        self, request: bytes, grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> AsyncIterator[bytes]:
        impl = self.registry.get(spec.path)
        try:
            message = self.parse(spec, request)
            if impl is None:
                for index in range(self.defaults.stream_messages):
                    yield self.defaults.response_bytes(spec, request, index)
                return
            ctx = self.context(spec, grpc_ctx, lambda: self.defaults.response(spec, request))
            try:
                index = 0
                async for item in self.results(impl, message, ctx):
                    default = functools.partial(self.defaults.response_bytes, spec, request, index)
                    out = self.encode(item, impl, default)
                    await self._send_metadata(ctx, grpc_ctx)
                    yield out
                    index += 1
            finally:
                _trailers(grpc_ctx, ctx)
        except Exception as exc:
            await self.fail(grpc_ctx, exc, spec)

    async def stream_unary(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> bytes:
        impl = self.registry.get(spec.path)
        seen: list[bytes] = []
        try:
            if impl is None:
                async for raw in requests:
                    self.parse(spec, raw)
                    seen.append(raw)
                return self.defaults.response_bytes(spec, _joined(seen))
            ctx = self.context(spec, grpc_ctx, lambda: self.defaults.response(spec, _joined(seen)))
            try:
                stream = self._messages(spec, requests, seen)
                argument = stream if impl.style.is_async else _SyncIterator(stream)
                result = await self.run(impl, argument, ctx)

                def default() -> bytes:
                    return self.defaults.response_bytes(spec, _joined(seen))

                out = self.encode(result, impl, default)
                await self._send_metadata(ctx, grpc_ctx)
                return out
            finally:
                _trailers(grpc_ctx, ctx)
        except Exception as exc:
            await self.fail(grpc_ctx, exc, spec)

    async def stream_stream(
        self, requests: AsyncIterator[bytes], grpc_ctx: ServicerContext, spec: MethodSpec
    ) -> AsyncIterator[bytes]:
        impl = self.registry.get(spec.path)
        seen: list[bytes] = []
        try:
            if impl is None:
                async for raw in requests:
                    self.parse(spec, raw)
                    yield self.defaults.response_bytes(spec, raw)
                return

            def last() -> bytes:
                return seen[-1] if seen else b""

            ctx = self.context(spec, grpc_ctx, lambda: self.defaults.response(spec, last()))
            try:
                stream = self._messages(spec, requests, seen)
                argument = stream if impl.style.is_async else _SyncIterator(stream)
                async for item in self.results(impl, argument, ctx):
                    out = self.encode(
                        item, impl, lambda: self.defaults.response_bytes(spec, last())
                    )
                    await self._send_metadata(ctx, grpc_ctx)
                    yield out
            finally:
                _trailers(grpc_ctx, ctx)
        except Exception as exc:
            await self.fail(grpc_ctx, exc, spec)

    async def _messages(
        self, spec: MethodSpec, requests: AsyncIterator[bytes], seen: list[bytes]
    ) -> AsyncIterator[Message]:
        async for raw in requests:
            message = self.parse(spec, raw)
            seen.append(raw)
            yield message


class _SyncIterator(Iterator[Message]):
    """Lets a sync behaviour, running in the thread pool, iterate an async request stream."""

    def __init__(self, stream: AsyncIterator[Message]) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()

    def __next__(self) -> Message:
        future = asyncio.run_coroutine_threadsafe(_next_or_none(self._stream), self._loop)
        item = future.result()
        if item is None:
            raise StopIteration
        return item


async def _next_or_none(stream: AsyncIterator[Message]) -> Message | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


def _joined(requests: list[bytes]) -> bytes:
    """All requests of a client stream as one key: length-prefixed, so boundaries count."""
    return b"".join(struct.pack(">I", len(r)) + r for r in requests)


def _trailers(grpc_ctx: ServicerContext, ctx: CallContext) -> None:
    if ctx.trailing_metadata:
        grpc_ctx.set_trailing_metadata(ctx.trailing_metadata)


async def _abort(grpc_ctx: ServicerContext, exc: RpcAbort) -> NoReturn:
    trailers: list[tuple[str, str | bytes]] = list(exc.trailers.items())
    if exc.details:
        status = status_pb2.Status(code=exc.code.value[0], message=exc.message)
        for detail in exc.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        trailers.append(("grpc-status-details-bin", status.SerializeToString()))
    await grpc_ctx.abort(exc.code, exc.message, tuple(trailers))
    raise AssertionError("grpc's abort() returned")  # pragma: no cover - it always raises


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

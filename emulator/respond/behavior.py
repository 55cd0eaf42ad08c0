"""The behaviour responder: a method's Python behaviour (or a test's override) answers it.

Behaviours may be sync or async, plain or generators, whatever the RPC kind: sync code runs in a
thread pool, off the event loop, and a sync behaviour reading a request stream gets a blocking
iterator over it. Each step of a behaviour runs inside the call's time budget (`max_duration`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc
from google.protobuf.message import Message

from emulator._bounded import IdentityCache
from emulator.behavior.convert import ReturnTypeError, to_message
from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.registry import Implementation, Registry, Style
from emulator.call import Call
from emulator.errors import RpcAbort
from emulator.respond import (
    Answer,
    BadRequest,
    ClientGone,
    Escaped,
    Exchange,
    Responder,
    parse,
    recast,
)

__all__ = ["BehaviorResponder", "OverrideResponder"]

# Ends a call with a status of its own, or is located already (ReturnTypeError names the method).
_ANSWERED = (RpcAbort, BadRequest, ClientGone, ReturnTypeError)


class BehaviorResponder(Responder):
    """Picks calls to methods the registry has an implementation for."""

    def __init__(
        self,
        registry: Registry,
        defaults: DefaultResponses,
        pool: Any,
        *,
        executor: Executor,
        stream_executor: Executor | None = None,
    ) -> None:
        self.registry = registry
        self.defaults = defaults
        self.descriptor_pool = pool
        self.executor = executor
        # Sync behaviours that read a request stream wait on the client between messages: they
        # get threads of their own, so idle streams never starve the pool of other calls.
        self.stream_executor = stream_executor or executor
        # Per implementation: the label a call answered by it carries and its bound answer,
        # made once instead of every call (overrides come and go: bounded).
        self._answers: IdentityCache[Implementation, tuple[str, Answer]] = IdentityCache(4096)

    def pick(self, call: Call) -> Answer | None:
        impl = self.registry.get(call.spec.path)
        if impl is None:
            return None
        made = self._answers.get(impl)
        if made is None:
            made = (f"behaviour {impl.origin}", functools.partial(self.answer, impl))
            self._answers.put(impl, made)
        call.answered_by = made[0]
        return made[1]

    def picks(self, path: str) -> bool:
        return self.registry.get(path) is not None

    def answer(
        self, impl: Implementation, exchange: Exchange
    ) -> AsyncIterator[bytes] | Awaitable[bytes]:
        # One response message: a coroutine, cheaper per call than an async generator.
        if exchange.call.spec.kind.server_streaming:
            return self._stream(impl, exchange)
        return self._unary(impl, exchange)

    def _start(self, impl: Implementation, exchange: Exchange) -> tuple[Any, Any]:
        """The behaviour's `ctx` and its first argument: the request, or the request stream."""
        call, defaults = exchange.call, self.defaults
        spec = call.spec
        mine = impl.response_class

        def default() -> Message:
            # As the user's generated class when the behaviour has one, as requests are.
            return recast(defaults.response(spec, exchange.default_key()), mine)

        ctx = exchange.context_for(call, default)
        if spec.kind.client_streaming:
            stream = exchange.messages(impl.request_class)
            return ctx, stream if impl.style.is_async else _SyncIterator(stream, ctx)
        return ctx, parse(call, exchange.request, impl.request_class)

    async def _unary(self, impl: Implementation, exchange: Exchange) -> bytes:
        try:
            ctx, argument = self._start(impl, exchange)
            result = await self._run(exchange.call, impl, argument, ctx)
            return self._encode(result, impl, exchange)
        except BaseException as exc:
            raise _located(exc, impl)  # noqa: B904 - it chains what it wraps itself

    async def _stream(self, impl: Implementation, exchange: Exchange) -> AsyncIterator[bytes]:
        try:
            ctx, argument = self._start(impl, exchange)
            async for item in self._results(exchange.call, impl, argument, ctx):
                yield self._encode(item, impl, exchange)
        except BaseException as exc:
            raise _located(exc, impl)  # noqa: B904 - it chains what it wraps itself

    def _encode(self, value: object, impl: Implementation, exchange: Exchange) -> bytes:
        if value is None:  # the default response
            key, index = exchange.default_key(), exchange.default_index()
            return self.defaults.response_bytes(impl.spec, key, index)
        check = exchange.check_response
        if type(value) is impl.response_class:
            # The user's generated class, checked to declare what the contracts do: its bytes
            # as they are, with no copy into the contracts' class (rules check the bytes).
            data: bytes = value.SerializeToString()
            if check is not None:
                check(exchange.call, data, exchange.call.answered_by)
            return data
        msg = to_message(value, impl.spec.output_class, self.descriptor_pool, impl.origin)
        if check is not None:  # the response type has rules (a default's are not checked)
            check(exchange.call, msg, exchange.call.answered_by)
        return msg.SerializeToString()

    def _pool(self, call: Call) -> Executor:
        return self.stream_executor if call.spec.kind.client_streaming else self.executor

    async def _run(self, call: Call, impl: Implementation, *args: Any) -> Any:
        """Call a plain (non-generator) behaviour: sync ones in the thread pool, off the loop."""
        if impl.style is Style.ASYNC:
            return await within(call, impl.func(*args))
        loop = asyncio.get_running_loop()
        started = time.time()  # before the submit: a worker thread may start it at once
        step = loop.run_in_executor(self._pool(call), functools.partial(_sync, impl.func, *args))
        return await within(call, step, started)

    async def _results(self, call: Call, impl: Implementation, *args: Any) -> AsyncIterator[Any]:
        """The messages a streaming behaviour produces, whatever its style."""
        done = object()
        if impl.style is Style.ASYNC_GEN:
            generator = impl.func(*args)
            while (item := await within(call, anext(generator, done))) is not done:
                yield item
            return
        if impl.style is Style.SYNC_GEN:
            source: Any = impl.func(*args)
        else:
            source = await self._run(call, impl, *args)
            if source is None:
                return
            if hasattr(source, "__aiter__"):
                while (item := await within(call, anext(source, done))) is not done:
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
        pool = self._pool(call)
        try:
            while True:
                step = loop.run_in_executor(pool, _sync, next, source, done)
                item = await within(call, step)
                if item is done:
                    return
                yield item
        finally:
            if hasattr(source, "close"):  # a cancelled call runs the generator's `finally` now
                loop.run_in_executor(pool, _close, source)


class OverrideResponder(BehaviorResponder):
    """Picks only calls to methods a test has overridden (`emu.override`): they come before
    stubs, which come before the behaviours the emulator was started with."""

    def pick(self, call: Call) -> Answer | None:
        path = call.spec.path
        impl = self.registry.get(path)
        if impl is None or impl is self.registry.built(path):
            return None
        origin = impl.origin
        call.answered_by = origin if origin.startswith("override") else f"override {origin}"
        return functools.partial(self.answer, impl)

    def picks(self, path: str) -> bool:
        impl = self.registry.get(path)
        return impl is not None and impl is not self.registry.built(path)


def _located(exc: BaseException, impl: Implementation) -> BaseException:
    """What to raise for `exc` leaving a behaviour: it, told where in the behaviour it left
    (so the UNKNOWN status and the log line point at the behaviour's line), or an `Escaped`
    that carries it; RpcAbort and its kin, cancellation and GeneratorExit pass as they are."""
    if isinstance(exc, _ANSWERED):
        return exc
    if isinstance(exc, Escaped):
        exc.where = impl.raised_at(exc.original)
        return exc
    if isinstance(exc, Exception | SystemExit | KeyboardInterrupt):
        escaped = Escaped(exc, where=impl.raised_at(exc))
        escaped.__cause__ = exc
        return escaped
    return exc


async def within(call: Call, step: Awaitable[Any], started: float | None = None) -> Any:
    """Await one step of a behaviour inside the call's time budget (`max_duration`), if any;
    the time it took, from `started` (now, unless the step began before it was awaited: a
    sync behaviour handed to a thread), joins `call.behaviour_time`."""
    budget = call.budget
    if started is None:
        started = time.time()
    try:
        if budget is None:
            return await step
        limit, message = budget
        try:
            left = max(0.0, limit - (time.time() - call.started))
            return await asyncio.wait_for(step, left)
        except TimeoutError:
            raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, message) from None
    except GeneratorExit as exc:  # raised by the behaviour: not a close of this call
        raise Escaped(exc) from exc
    finally:
        spent = call.behaviour_time
        call.behaviour_time = (started if spent is None else spent[0], time.time())


def _sync(func: Callable[..., Any], *args: Any) -> Any:
    """Run sync behaviour code in a worker thread. StopIteration cannot cross into an asyncio
    future (the call would never end), so it becomes an error that says where it came from."""
    try:
        return func(*args)
    except GeneratorExit as exc:
        raise Escaped(exc) from exc
    except StopIteration as exc:
        raise Escaped(
            exc, " (did the behaviour call next() past the end of the request stream?)"
        ) from exc


class _SyncIterator(Iterator[Message]):
    """Lets a sync behaviour, running in a thread of its own, iterate an async request stream."""

    def __init__(self, stream: AsyncIterator[Message], ctx: Any) -> None:
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

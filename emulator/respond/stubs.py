"""The stub responder: declarative stubs answer the calls they match.

Asked after a test's overrides and before behaviours. A unary-request call is matched when it is
picked (its one request is there already); a client or bidi stream is matched once the messages
its method's stubs look at have arrived (none, the first, up to `index N`, or all for `any` and
`all`). A call no stub matches goes on to the next responder, the messages read so far replayed
to it, and its journal record names the closest stubs and the conditions that failed.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from emulator.behavior.convert import ReturnTypeError
from emulator.behavior.defaults import DefaultResponses
from emulator.call import Call, first_value, first_values
from emulator.contracts.model import RpcKind
from emulator.errors import RpcAbort
from emulator.faults.config import DelayConfig
from emulator.faults.rules import Abort, sample, seeded
from emulator.respond import Answer, BadRequest, Exchange, Responder, parse
from emulator.stubs.messages import StubDataError
from emulator.stubs.model import Item, Reply, Stub
from emulator.stubs.store import MethodStubs, StubSet
from emulator.stubs.templates import Fake, Template, TemplateError, rfc3339

__all__ = ["StubError", "StubResponder"]

log = logging.getLogger("emulator")

_MERGED_ENTRIES = 4096  # merged (stub message + default) answers kept, by request bytes
_SMALL_KEY = 256


class StubError(ReturnTypeError):
    """A stub's answer could not be built at call time (a template that failed, or rendered a
    value its field does not take): the call ends INTERNAL, naming the stub and the key."""


class StubResponder(Responder):
    """Picks calls that a stub of their method matches."""

    def __init__(
        self,
        stubs: StubSet,
        defaults: DefaultResponses,
        rest: Sequence[Responder],
        *,
        seed: int,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self.stubs = stubs
        self.defaults = defaults
        self.rest = tuple(rest)  # who answers what no stub matches
        self.seed = seed
        self.clock = clock
        self._merged: dict[tuple[Any, ...], bytes] = {}

    def reset(self) -> None:
        self.stubs.reset()

    # -- choosing ------------------------------------------------------------------------------

    def picks(self, path: str) -> bool | None:
        return None if self.stubs.stubbed(path) else False  # stubs: by the request (and session)

    def pick(self, call: Call) -> Answer | None:
        stubs = self.stubs
        session = _session(call, stubs.session_header) if stubs.has_sessions else None
        methods = stubs.get(call.spec.path, session)
        if methods is None:
            return None
        scenarios = stubs.scenarios_of(session)
        if not call.spec.kind.client_streaming:
            try:
                request = parse(call, call.requests[0])
            except BadRequest:
                return None  # the next responder refuses the bytes
            stub = self._choose(call, methods, (request,), scenarios)
            if stub is None:
                return None
            return functools.partial(self._answer, stub, self._take(stub, scenarios), [request])
        # A client stream is read to its end before the stub answers, as a server would; a
        # bidi stub whose stubs look at no request message may start answering at once.
        if methods.need == 0 and call.spec.kind.server_streaming:
            stub = self._choose(call, methods, (), scenarios)
            return (
                None
                if stub is None
                else functools.partial(self._answer, stub, self._take(stub, scenarios), [])
            )
        return functools.partial(self._read_then_answer, methods, scenarios)

    def _choose(
        self,
        call: Call,
        methods: MethodStubs,
        messages: Sequence[Message],
        scenarios: dict[str, str],
    ) -> Stub | None:
        stub = methods.select(call.metadata, messages, scenarios)
        if stub is None:
            misses = methods.near_misses(call.metadata, messages, scenarios)
            call.near_misses = misses
            if log.isEnabledFor(logging.DEBUG):
                shown = "; ".join(f"{m.stub} ({'; '.join(m.reasons)})" for m in misses)
                log.debug("%s: no stub matched; closest: %s", call.spec.name, shown)
            return None
        call.answered_by = f"stub {stub.name}"
        return stub

    def _take(self, stub: Stub, scenarios: dict[str, str]) -> Reply:
        """The stub's next response, counted, and its scenario moved on, at the moment it is
        chosen: two calls in flight at once take consecutive responses of a sequence."""
        reply = stub.reply()
        stub.answered += 1
        if stub.set_state:
            scenarios[stub.scenario] = stub.set_state
        return reply

    async def _read_then_answer(
        self, methods: MethodStubs, scenarios: dict[str, str], exchange: Exchange
    ) -> AsyncIterator[bytes]:
        stream = exchange.messages()
        read: list[Message] = []
        client_stream = not exchange.call.spec.kind.server_streaming
        need = None if client_stream else methods.need  # a client stream: all of it
        async for _ in _until(stream, read, need):
            pass
        call = exchange.call
        stub = self._choose(call, methods, read, scenarios)
        if stub is None:
            answer = next(a for r in self.rest if (a := r.pick(call)) is not None)
            out = answer(exchange.replaying(read, stream))
            async for data in _as_stream(out):
                yield data
            return
        answers = self._answer(stub, self._take(stub, scenarios), read, exchange, live=stream)
        async for data in _as_stream(answers):
            yield data

    # -- answering -----------------------------------------------------------------------------

    def _answer(
        self,
        stub: Stub,
        reply: Reply,
        read: list[Message],
        exchange: Exchange,
        live: AsyncIterator[Message] | None = None,
    ) -> AsyncIterator[bytes] | Awaitable[bytes] | bytes:
        kind = exchange.call.spec.kind
        if kind is RpcKind.STREAM_STREAM:
            return self._bidi(stub, reply, read, exchange, live)
        if kind.server_streaming:
            return self._stream(stub, reply, read, exchange)
        if kind.client_streaming:
            return self._unary(stub, reply, read, exchange, live or exchange.messages())
        if not (reply.headers or reply.trailers or reply.delay or reply.fails or reply.templated):
            item = reply.items[0]
            return self._build(
                stub, item, exchange, None, 0
            )  # the common case: bytes, no coroutine
        return self._unary(stub, reply, read, exchange)

    async def _unary(
        self,
        stub: Stub,
        reply: Reply,
        read: list[Message],
        exchange: Exchange,
        rest: AsyncIterator[Message] | None = None,
    ) -> bytes:
        if rest is not None and not reply.fails:
            # A client stream is answered once it has ended, as the default and behaviours
            # answer it: the journal keeps every message, the default merged onto is the whole
            # stream's, and `requests` in templates holds them all, not only those matched on.
            # (A stub that fails ends the call at once, as a server refusing a stream does.)
            async for message in rest:
                read.append(message)
        render = self._context(stub, read, exchange) if reply.templated else None
        self._headers(stub, reply, exchange, render)
        await self._wait(stub, reply.delay)
        if reply.fails:
            raise _error(reply.status)  # type: ignore[arg-type]
        return self._build(stub, reply.items[0], exchange, render, 0)

    async def _stream(
        self, stub: Stub, reply: Reply, read: Sequence[Message], exchange: Exchange
    ) -> AsyncIterator[bytes]:
        render = self._context(stub, read, exchange) if reply.templated else None
        self._headers(stub, reply, exchange, render)
        await self._wait(stub, reply.delay)
        items = reply.items
        if not reply.stream and items:
            # No `stream:` (only `message:`, or nothing but headers or a match): the default
            # stream, each message shaped by `message:`, as a bidi stub's `message:` shapes the
            # reply to each inbound message; not one message where the default sends several.
            items = items * self.defaults.stream_messages
        for index, item in enumerate(items):
            await self._wait(stub, item.delay)
            yield self._build(stub, item, exchange, render, index)
        if reply.fails:
            raise _error(reply.status)  # type: ignore[arg-type]

    async def _bidi(
        self,
        stub: Stub,
        reply: Reply,
        read: list[Message],
        exchange: Exchange,
        live: AsyncIterator[Message] | None,
    ) -> AsyncIterator[bytes]:
        """Bidi: `respond.stream` at once; then, per inbound message, the reply of the first
        `on_message` rule that holds (or `respond.message` for each one); then the status."""
        templated = reply.templated or any(
            i.message is not None and i.message.templated for r in stub.on_message for i in r.items
        )
        render = self._context(stub, read, exchange) if templated else None
        self._headers(stub, reply, exchange, render)
        await self._wait(stub, reply.delay)
        if reply.stream:
            for index, item in enumerate(reply.items):
                await self._wait(stub, item.delay)
                yield self._build(stub, item, exchange, render, index)
        if reply.fails and not stub.on_message:
            # Nothing would be sent per inbound message: fail now, as a unary or client stream
            # stub does, not once the client stops sending (a client waiting for a reply first
            # would wait for ever).
            raise _error(reply.status)  # type: ignore[arg-type]
        inbound = exchange.replaying(read, live) if live is not None else exchange
        number = 0
        async for message in inbound.messages():
            number += 1
            if render is not None:
                render = {**render, "request": message, "message_index": number}
            if stub.on_message:
                rule = next(
                    (r for r in stub.on_message if all(c.holds(message) for c in r.conditions)),
                    None,
                )
                if rule is None:
                    log.debug(
                        "%s: stub %s: no on_message rule matched message %d",
                        exchange.call.spec.name,
                        stub.name,
                        number,
                    )
                    continue
                for item in rule.items:
                    await self._wait(stub, item.delay)
                    yield self._build(stub, item, exchange, render, 0)
                if rule.status is not None:
                    if rule.status.code != grpc.StatusCode.OK:
                        raise _error(rule.status)
                    return
            elif not reply.stream:
                for item in reply.items:
                    yield self._build(stub, item, exchange, render, 0)
        if reply.fails:
            raise _error(reply.status)  # type: ignore[arg-type]

    def _build(
        self,
        stub: Stub,
        item: Item,
        exchange: Exchange,
        render: Mapping[str, Any] | None,
        index: int,
    ) -> bytes:
        spec = exchange.call.spec
        message = item.message
        if message is None:
            return self.defaults.response_bytes(spec, exchange.default_key(), index)
        check = exchange.check_response
        if check is not None and stub.recorded is not None:
            check = None  # a recording replays the real service's answer: that is the truth
        if message.fixed is not None and message.replace:
            if check is not None:
                check(exchange.call, message.message, f"stub {stub.name} ({stub.source})")
            return message.fixed
        key = exchange.default_key()
        defaults = self.defaults
        # Merged onto a default that follows the request bytes (and the clock's anchor), so the
        # same request gets the same bytes: kept, for the stub answering the same call again.
        cache = message.fixed is not None and len(key) <= _SMALL_KEY
        slot = (message, key, index, defaults.time_range)

        def default() -> Message:
            return defaults.response(spec, key, index)

        out = self._merged.get(slot) if cache else None
        if out is None:
            try:
                out = message.build(default, render)
            except (TemplateError, StubDataError) as exc:
                raise StubError(
                    f"stub {stub.name} ({stub.source}): {exc.key}: {exc.problem}"
                ) from None
            if cache:
                if len(self._merged) >= _MERGED_ENTRIES:
                    self._merged.clear()
                self._merged[slot] = out
        if check is not None:
            # Merged onto the default: the stub answers for the fields it gives, and for the
            # rules the merge breaks that the default alone keeps.
            check(
                exchange.call,
                out,
                f"stub {stub.name} ({stub.source})",
                given=None if message.replace else message.mask,
                default=default,
            )
        return out

    def _headers(
        self, stub: Stub, reply: Reply, exchange: Exchange, render: Mapping[str, Any] | None
    ) -> None:
        if not (reply.headers or reply.trailers):
            return
        call = exchange.call
        ctx = exchange.context_for(
            call, lambda: self.defaults.response(call.spec, exchange.default_key())
        )
        if reply.headers:
            ctx.set_initial_metadata(_rendered(reply.headers, render))
        if reply.trailers:
            ctx.set_trailing_metadata(_rendered(reply.trailers, render))

    async def _wait(self, stub: Stub, delay: DelayConfig | None) -> None:
        if delay is None:
            return
        seconds = sample(delay, seeded(self.seed, stub.name, stub.answered, "stub-delay"))
        seconds *= stub.delay_scale  # a recording replayed faster, or without its waits
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _context(self, stub: Stub, read: Sequence[Message], exchange: Exchange) -> dict[str, Any]:
        """What templates see (see `emulator.stubs.templates`)."""
        call = exchange.call
        index = stub.answered  # counted already: the first call answered is 1
        moment = self.clock()
        rng = seeded(self.seed, stub.name, index, "stub-template")
        fake_rng = random.Random(rng.getrandbits(64))
        return {
            "request": read[0] if read else None,
            "requests": list(read),
            "metadata": first_values(call.metadata),
            "call": {
                "index": index,
                "method": call.spec.name,
                "peer": call.peer,
                "stub": stub.name,
            },
            "now": rfc3339(moment),
            "clock": moment,
            "fake": Fake(fake_rng, self.defaults.time_range),
            "rng": rng,
        }


def _rendered(
    values: Sequence[tuple[str, Any]], render: Mapping[str, Any] | None
) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for key, value in values:
        if isinstance(value, Template):
            try:
                out.append((key, value.render(render or {})))
            except TemplateError as exc:
                raise StubError(f"{exc.key}: {exc.problem}") from None
        else:
            out.append((key, value))
    return out


def _error(status: Abort) -> RpcAbort:
    return status.error(f"{status.code.name} (from a stub)")


async def _until(
    stream: AsyncIterator[Message], read: list[Message], need: int | None
) -> AsyncIterator[Message]:
    """Read `need` messages of `stream` into `read` (None: all of them)."""
    while need is None or len(read) < need:
        try:
            message = await anext(stream)
        except StopAsyncIteration:
            return
        read.append(message)
        yield message


def _session(call: Call, header: str) -> str | None:
    """The session a call is tagged with (its first value of the session header)."""
    value = first_value(call.metadata, header)
    return value if isinstance(value, str) else None


async def _as_stream(out: AsyncIterator[bytes] | Awaitable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(out, bytes):
        yield out
    elif isinstance(out, AsyncIterator):
        async for data in out:
            yield data
    else:
        yield await out

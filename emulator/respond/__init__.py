"""Responders: what answers a call once the chain has let it through.

A call, whatever its RPC kind, is "requests in, messages out": a responder gets an `Exchange`
(the call, its request bytes or request stream) and yields the raw bytes of each response
message (or returns the bytes of its one message, when it has them at once). The dispatcher
picks the responder once per call, asking each in order:

    unimplemented methods → a test's overrides → stubs → behaviours → the default response

Each `Responder.pick(call)` returns the function that answers the call, or None to pass it on
(`picks(path)` says beforehand which methods it never, or always, picks);
a new way to answer (stubs, replay, a proxy) is a new responder in that list, never a branch per
RPC kind. The four kinds meet grpc in `emulator.runtime.handlers`, and only there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from google.protobuf.message import DecodeError, Message

from emulator.call import Call, past_deadline
from emulator.chain import Chain
from emulator.contracts.model import RpcKind

if TYPE_CHECKING:
    from emulator.validation.responses import ResponseCheck

__all__ = [
    "Answer",
    "BadRequest",
    "ClientGone",
    "Escaped",
    "Exchange",
    "Responder",
    "parse",
    "recast",
]

# The messages of the answer; for a unary response, also an awaitable of its one message, or
# its bytes when known at once (a cached default, say): no async iterator to make and drive.
_TURNS_FOR_A_CANCEL = 3

Answer: TypeAlias = Callable[["Exchange"], "AsyncIterator[bytes] | Awaitable[bytes] | bytes"]


class BadRequest(Exception):
    """Request bytes that do not parse as the method's input type: INVALID_ARGUMENT."""


class ClientGone(Exception):
    """The request stream ended because the client cancelled or its deadline passed, not
    because it finished sending: what follows must not be journalled as an answer."""


class Escaped(Exception):
    """An exception a behaviour let out, BaseExceptions included (SystemExit, KeyboardInterrupt,
    its own CancelledError, StopIteration): it fails that call (UNKNOWN), never the server.
    `where` names the behaviour's method and line, once the behaviour responder knows it."""

    def __init__(self, exc: BaseException, hint: str = "", *, where: str = "") -> None:
        super().__init__(f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''}{hint}")
        self.original = exc
        self.where = where


def parse(call: Call, data: bytes, cls: type[Message] | None = None) -> Message:
    """`data` as the method's input message (as `cls`: the user's generated class, when a
    behaviour has one), or BadRequest."""
    if cls is None:
        cls = call.spec.input_class
    decoded = call.decoded
    if decoded is not None and decoded[0] is data and type(decoded[1]) is cls:
        call.decoded = None  # taken once: whoever parses again gets a message of their own
        return decoded[1]
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise BadRequest(f"request is not a valid {cls.DESCRIPTOR.full_name}: {exc}") from None


class Exchange:
    """One call as a responder sees it: the request (unary request kinds) or the request stream
    (client and bidi streaming), read once, each message counted in `call.requests` and shown
    to the chain's `on_request` hooks before the responder gets it."""

    __slots__ = (
        "_chain",
        "_grpc_ctx",
        "_source",
        "_stream",
        "call",
        "check_response",
        "context_for",
        "request",
    )

    def __init__(
        self,
        call: Call,
        chain: Chain,
        context_for: Callable[[Call, Callable[[], Message]], Any],
        *,
        request: bytes = b"",
        stream: AsyncIterator[bytes] | None = None,
        grpc_ctx: Any = None,
        check_response: ResponseCheck | None = None,
    ) -> None:
        self.call = call
        self.request = request  # the one request's bytes, for unary request kinds
        self.context_for = context_for  # makes a behaviour's CallContext (ctx)
        self._chain = chain
        self._stream = stream
        self._grpc_ctx = grpc_ctx
        self._source: AsyncIterator[Message] | None = None  # set by replaying()
        # The method's response rules (`emulator.validation.responses.ResponseCheck`), for the
        # responders that answer with messages of their own (behaviours, stubs) to call on
        # each: None when the response type has no rules, or `validation.responses` is off.
        self.check_response = check_response

    def replaying(self, read: list[Message], rest: AsyncIterator[Message]) -> Exchange:
        """This exchange for another responder, after one has read `read` of the request stream
        (`rest` its iterator over the remainder): the messages come again, counted once."""
        other = Exchange(
            self.call,
            self._chain,
            self.context_for,
            request=self.request,
            grpc_ctx=self._grpc_ctx,
            check_response=self.check_response,
        )
        other._source = _replay(read, rest)
        return other

    async def messages(self, cls: type[Message] | None = None) -> AsyncIterator[Message]:
        """Every request message, parsed (as `cls`, if given), as it arrives (unary request
        kinds: the one)."""
        call = self.call
        if self._source is not None:
            async for message in self._source:
                # Read by a responder before (stubs, with the contracts' class): read again.
                yield recast(message, cls)
            return
        if self._stream is None:
            yield parse(call, self.request, cls)
            return
        chain = self._chain
        checks = chain.checks_requests
        async for raw in self._stream:
            message = parse(call, raw, cls)
            call.requests.append(raw)
            if checks:
                if cls is None:  # the contracts' class: validation need not decode it again
                    call.decoded = (raw, message)
                await chain.on_request(call, len(call.requests) - 1)
                call.decoded = None
            yield message
        # grpc ends the request stream the same way when the client cancels (or its deadline
        # passes) as when it finishes sending: tell them apart, or a default would answer.
        # The cancellation comes with the end of the stream: a loop turn or two lets grpc deliver
        # it (the task is then cancelled right here); one was not always enough on a loaded
        # machine, so give it three before taking the end for a finished stream.
        for _ in range(_TURNS_FOR_A_CANCEL):
            await asyncio.sleep(0)
            if self._grpc_ctx.cancelled() or past_deadline(call):
                raise ClientGone

    def default_key(self) -> bytes:
        """The bytes a default answer is derived from: the request of a unary request, the
        digest of a whole client stream, the latest message of a bidi stream."""
        call = self.call
        kind = call.spec.kind
        if not kind.client_streaming:
            return self.request
        if kind is RpcKind.STREAM_UNARY:
            return call.requests.digest()
        return call.requests[-1] if call.requests else b""

    def default_index(self) -> int:
        """Which message of a default server stream comes next (other kinds: always 0)."""
        call = self.call
        return len(call.responses) if call.spec.kind is RpcKind.UNARY_STREAM else 0


def recast(message: Message, cls: type[Message] | None) -> Message:
    """`message` as `cls` (the user's generated class, of another pool than the contracts'):
    the same bytes, read again; `message` itself when `cls` is None or already its class."""
    if cls is None or type(message) is cls:
        return message
    return cls.FromString(message.SerializeToString())


async def _replay(read: list[Message], rest: AsyncIterator[Message]) -> AsyncIterator[Message]:
    for message in read:
        yield message
    async for message in rest:
        yield message


class Responder:
    """Answers the calls it picks; `pick` returns None to leave a call to the next one, and
    names itself on the call it picks (`call.answered_by`), for the journal."""

    # A shortcut for a unary-unary method whose every call this responder picks: the answer's
    # bytes from the call and its request at once, `answered_by` set, no pick and no Exchange
    # (the cached default). None: no shortcut, the call goes through `pick`.
    answer_now: Callable[[Call, bytes], bytes] | None = None

    def pick(self, call: Call) -> Answer | None:
        raise NotImplementedError

    def picks(self, path: str) -> bool | None:
        """Whether `pick` takes every call of method `path` (True) or none (False) as things
        stand, or None when it depends on the call. The handler of each method asks only the
        responders that may pick its calls, and works them out again when what they depend on
        changes (a test's override, stubs added: `emulator.changes.Changes`)."""
        return None

    def reset(self) -> None:
        """Back to the start, between tests (counters, sequences)."""

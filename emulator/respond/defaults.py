"""The default responder: the deterministic, schema-valid answer every method has without code.

What a default is derived from follows the RPC kind (see `Exchange.default_key`): a unary
request's bytes, a whole client stream, each message of a bidi stream (one answer per request).
A default server stream has `defaults.stream_messages` messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from emulator.behavior.defaults import DefaultResponses
from emulator.call import Call
from emulator.contracts.model import RpcKind
from emulator.respond import Answer, Exchange, Responder, parse

__all__ = ["DefaultResponder"]


class DefaultResponder(Responder):
    """Answers every call it is asked about: the last responder of the list."""

    def __init__(self, defaults: DefaultResponses) -> None:
        self.defaults = defaults
        self.answer_now = self._now

    def pick(self, call: Call) -> Answer:
        call.answered_by = "default"
        return self.answer

    def picks(self, path: str) -> bool:
        return True

    def answer(self, exchange: Exchange) -> AsyncIterator[bytes] | bytes:
        call = exchange.call
        if call.spec.kind is not RpcKind.UNARY_UNARY:
            return self._stream(exchange)
        return self._unary(call, exchange.request)

    def _now(self, call: Call, request: bytes) -> bytes:
        call.answered_by = "default"
        out = self.defaults.cached(call.spec, request)
        return self._unary(call, request) if out is None else out

    def _unary(self, call: Call, request: bytes) -> bytes:
        # The common case, cached by request digest: parse only to refuse bad bytes once.
        spec, defaults = call.spec, self.defaults
        out = defaults.cached(spec, request)
        if out is None:
            parse(call, request)
            out = defaults.response_bytes(spec, request)
        return out

    async def _stream(self, exchange: Exchange) -> AsyncIterator[bytes]:
        defaults, call = self.defaults, exchange.call
        spec = call.spec
        kind = spec.kind
        if kind is RpcKind.UNARY_STREAM:
            parse(call, exchange.request)
            for index in range(defaults.stream_messages):
                yield defaults.response_bytes(spec, exchange.request, index)
        elif kind is RpcKind.STREAM_STREAM:
            async for _ in exchange.messages():
                yield defaults.response_bytes(spec, exchange.default_key())
        else:
            async for _ in exchange.messages():
                pass
            yield defaults.response_bytes(spec, exchange.default_key())

"""A dynamic client for any emulated service: no generated code needed in tests.

    reply = emu.stub("acme.shop.v1.Catalog").GetProduct({"product_id": "p1"})

Requests may be dicts (JSON or proto field names) or messages; responses are messages (streams
are iterators of messages).
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from emulator.behavior.convert import from_dict
from emulator.contracts.model import Contracts, MethodSpec, RpcKind, ServiceSpec

__all__ = ["DynamicStub", "as_request"]


def as_request(
    value: Mapping[str, Any] | Message, spec: MethodSpec, contracts: Contracts
) -> Message:
    """`value` as the method's input message; a dict with an unknown field names it."""
    cls = spec.input_class
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != cls.DESCRIPTOR.full_name:
            expected, got = cls.DESCRIPTOR.full_name, value.DESCRIPTOR.full_name
            raise TypeError(f"{spec.name} takes a {expected}, not a {got}")
        return value
    try:
        return from_dict(value, cls, contracts.pool)
    except ValueError as exc:
        raise ValueError(
            f"{spec.name}: request is not a {cls.DESCRIPTOR.full_name}: {exc}"
        ) from None


class DynamicStub:
    """Attribute access by RPC name gives a callable for that method."""

    def __init__(self, channel: grpc.Channel, service: ServiceSpec, contracts: Contracts) -> None:
        self._channel = channel
        self._service = service
        self._contracts = contracts

    def __getattr__(self, name: str) -> Callable[..., Any]:
        spec = self._service.methods.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(self._service.methods), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise AttributeError(
                f"{self._service.name} has no method {name!r}{hint} "
                f"(methods: {', '.join(self._service.methods)})"
            )
        return self._method(spec)

    def __dir__(self) -> list[str]:
        return list(self._service.methods)

    def _method(self, spec: MethodSpec) -> Callable[..., Any]:
        out = spec.output_class.FromString
        ser = _serializer
        ch = self._channel
        convert = self._requests(spec)
        if spec.kind is RpcKind.UNARY_UNARY:
            call = ch.unary_unary(spec.path, request_serializer=ser, response_deserializer=out)
            return lambda request=None, **kw: call(convert(request or {}), **kw)
        if spec.kind is RpcKind.UNARY_STREAM:
            call = ch.unary_stream(spec.path, request_serializer=ser, response_deserializer=out)
            return lambda request=None, **kw: call(convert(request or {}), **kw)
        if spec.kind is RpcKind.STREAM_UNARY:
            call = ch.stream_unary(spec.path, request_serializer=ser, response_deserializer=out)
        else:
            call = ch.stream_stream(spec.path, request_serializer=ser, response_deserializer=out)
        return lambda requests=(), **kw: call(_each(convert, requests), **kw)

    def _requests(self, spec: MethodSpec) -> Callable[[Any], Message]:
        return lambda value: as_request(value, spec, self._contracts)

    def __repr__(self) -> str:
        return f"<DynamicStub {self._service.name}>"


def _each(
    convert: Callable[[Any], Message], requests: Any
) -> Iterator[Message] | AsyncIterator[Message]:
    """A list or tuple is converted at once, so a bad dict raises its ValueError here, in the
    caller; other iterables (async ones too, on an aio channel) stay lazy, so a test can produce
    requests as the stream goes (grpc reads them itself: an error there only cancels the call)."""
    if isinstance(requests, list | tuple):
        return iter([convert(r) for r in requests])
    if hasattr(requests, "__aiter__"):
        return (convert(r) async for r in requests)
    return (convert(r) for r in requests)


def _serializer(message: Message) -> bytes:
    return message.SerializeToString()

"""Responders driven directly: an `Exchange` of a `Call` in, response bytes out, no server."""

from __future__ import annotations

import asyncio
import datetime
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from emulator import Behavior
from emulator.behavior.convert import ReturnTypeError
from emulator.behavior.defaults import DefaultResponses
from emulator.behavior.registry import Registry
from emulator.call import Call
from emulator.chain import Chain, Interceptor
from emulator.contracts import Contracts, MethodSpec
from emulator.errors import RpcAbort
from emulator.respond import BadRequest, ClientGone, Exchange
from emulator.respond.behavior import BehaviorResponder
from emulator.respond.defaults import DefaultResponder
from emulator.runtime.context import CallContext
from tests.unit.conftest import SERVICE, FakeServicerContext, collect, stream_of


def context_for(call: Call, default: Callable[[], Message]) -> CallContext:
    ctx = CallContext(
        method=call.spec,
        invocation_metadata=call.metadata,
        peer=call.peer,
        deadline=call.deadline,
        rng=lambda: random.Random(0),
        state={},
        clock=lambda: datetime.datetime.now(datetime.UTC),
        default_response=default,
    )
    call.context = ctx
    return ctx


class SeenRequests(Interceptor):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def on_request(self, call: Call, index: int) -> None:
        self.seen.append(index)


def exchange(
    call: Call,
    *,
    request: bytes = b"",
    stream: list[bytes] | None = None,
    chain: Chain | None = None,
) -> Exchange:
    if stream is None:
        return Exchange(call, chain or Chain(), context_for, request=request)
    return Exchange(
        call,
        chain or Chain(),
        context_for,
        stream=stream_of(*stream),
        grpc_ctx=call.servicer_context,
    )


@pytest.fixture
def defaults(contracts: Contracts) -> DefaultResponses:
    return DefaultResponses(contracts, seed=7, stream_messages=3)


def req(spec: Callable[[str], MethodSpec], name: str = "", n: int = 0) -> bytes:
    return spec("Unary").input_class(name=name, n=n).SerializeToString()


# -- the default responder ------------------------------------------------------------------------


async def test_default_unary_answer_is_a_pure_function_of_the_request(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], defaults: DefaultResponses
) -> None:
    responder = DefaultResponder(defaults)
    one, two = req(spec, "ada"), req(spec, "bob")

    async def answer(request: bytes) -> list[bytes]:
        made = call("Unary", requests=[request])
        return await collect(responder.pick(made)(exchange(made, request=request)))

    first = await answer(one)
    assert len(first) == 1
    assert first == await answer(one)  # the same bytes again (also from the cache)
    fresh = DefaultResponder(DefaultResponses(defaults.contracts, seed=7, stream_messages=3))
    made = call("Unary", requests=[one])
    assert await collect(fresh.pick(made)(exchange(made, request=one))) == first  # no cache
    assert first != await answer(two)
    spec("Unary").output_class.FromString(first[0])  # a valid Resp


async def test_default_refuses_request_bytes_that_do_not_parse(
    call: Callable[..., Call], defaults: DefaultResponses
) -> None:
    for method in ("Unary", "ServerStream"):
        made = call(method, requests=[b"\xff\xff"])
        with pytest.raises(BadRequest, match=r"not a valid unit\.v1\.Req"):
            await collect(DefaultResponder(defaults).answer(exchange(made, request=b"\xff\xff")))


async def test_default_server_stream_has_stream_messages_distinct_messages(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], defaults: DefaultResponses
) -> None:
    request = req(spec, "ada")
    made = call("ServerStream", requests=[request])
    got = await collect(DefaultResponder(defaults).answer(exchange(made, request=request)))
    method = spec("ServerStream")
    assert got == [defaults.response_bytes(method, request, i) for i in range(3)]
    assert len(set(got)) == 3


async def test_default_client_stream_answers_once_from_the_whole_stream(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], defaults: DefaultResponses
) -> None:
    responder = DefaultResponder(defaults)
    messages = [req(spec, "a"), req(spec, "b"), req(spec, "c")]
    seen = SeenRequests()

    async def answer(stream: list[bytes], chain: Chain | None = None) -> tuple[Call, list[bytes]]:
        made = call("ClientStream")
        return made, await collect(responder.answer(exchange(made, stream=stream, chain=chain)))

    made, got = await answer(messages, Chain([seen]))
    assert len(got) == 1
    assert len(made.requests) == 3 and list(made.requests) == messages
    assert seen.seen == [0, 1, 2]  # the chain saw each message as it arrived
    assert got == (await answer(messages))[1]
    assert got != (await answer(messages[:2]))[1]  # every message counts, not just the first
    assert got != (await answer(messages[::-1]))[1]  # and their order


async def test_default_bidi_answers_each_message(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], defaults: DefaultResponses
) -> None:
    messages = [req(spec, "a"), req(spec, "b")]
    made = call("Bidi")
    got = await collect(DefaultResponder(defaults).answer(exchange(made, stream=messages)))
    method = spec("Bidi")
    assert got == [defaults.response_bytes(method, m) for m in messages]


async def test_a_request_stream_the_client_cancelled_is_not_answered(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], defaults: DefaultResponses
) -> None:
    made = call("ClientStream", servicer_context=FakeServicerContext(cancelled=True))
    with pytest.raises(ClientGone):
        await collect(DefaultResponder(defaults).answer(exchange(made, stream=[req(spec)])))


# -- the behaviour responder ----------------------------------------------------------------------


class Echo(Behavior):
    service = SERVICE

    def Unary(self, request: Any, ctx: Any) -> Any:
        return None if request.name == "default" else {"text": f"hi {request.name}"}

    def ClientStream(self, requests: Iterator[Any], ctx: Any) -> Any:  # sync: a worker thread
        return {"count": sum(r.n for r in requests)}

    async def Bidi(self, requests: Any, ctx: Any) -> Any:
        async for r in requests:
            yield {"text": r.name.upper()}

    def ServerStream(self, request: Any, ctx: Any) -> Any:
        return {"text": "a dict is not a stream"}


class OnlyUnary(Behavior):
    service = SERVICE

    async def Unary(self, request: Any, ctx: Any) -> Any:
        await asyncio.Event().wait()  # never set: only the time budget ends it


@pytest.fixture
def behaviours(contracts: Contracts, defaults: DefaultResponses) -> Iterator[Any]:
    executor = ThreadPoolExecutor(max_workers=2)

    def make(*classes: type[Behavior]) -> BehaviorResponder:
        registry = Registry(contracts, list(classes))
        return BehaviorResponder(registry, defaults, contracts.pool, executor=executor)

    yield make
    executor.shutdown(wait=True)


def test_the_behaviour_responder_picks_only_implemented_methods(
    call: Callable[..., Call], behaviours: Any
) -> None:
    responder = behaviours(OnlyUnary)
    assert responder.pick(call("Unary")) is not None
    assert responder.pick(call("Bidi")) is None  # left to the next responder (the default)


async def test_a_sync_unary_behaviour_answers_and_none_means_the_default(
    call: Callable[..., Call],
    spec: Callable[[str], MethodSpec],
    behaviours: Any,
    defaults: DefaultResponses,
) -> None:
    responder = behaviours(Echo)
    resp = spec("Unary").output_class

    async def answer(request: bytes) -> list[bytes]:
        made = call("Unary", requests=[request])
        return await collect(responder.pick(made)(exchange(made, request=request)))

    assert [resp.FromString(b).text for b in await answer(req(spec, "ada"))] == ["hi ada"]
    fallback = req(spec, "default")
    assert await answer(fallback) == [defaults.response_bytes(spec("Unary"), fallback)]


async def test_stream_behaviours_read_requests_and_yield_messages(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], behaviours: Any
) -> None:
    responder = behaviours(Echo)
    made = call("Bidi")
    got = await collect(
        responder.pick(made)(exchange(made, stream=[req(spec, "a"), req(spec, "b")]))
    )
    assert [spec("Bidi").output_class.FromString(b).text for b in got] == ["A", "B"]

    made = call("ClientStream")
    stream = [req(spec, n=2), req(spec, n=5)]
    (summary,) = await collect(responder.pick(made)(exchange(made, stream=stream)))
    assert spec("ClientStream").output_class.FromString(summary).count == 7
    assert len(made.requests) == 2


async def test_a_server_stream_behaviour_returning_one_message_is_an_error(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], behaviours: Any
) -> None:
    made = call("ServerStream", requests=[req(spec)])
    with pytest.raises(ReturnTypeError, match="server streaming: yield each message"):
        await collect(behaviours(Echo).pick(made)(exchange(made, request=req(spec))))


async def test_a_behaviour_past_its_time_budget_ends_deadline_exceeded(
    call: Callable[..., Call], spec: Callable[[str], MethodSpec], behaviours: Any
) -> None:
    made = call("Unary", requests=[req(spec)])
    made.budget = (0.0, "Unary ran longer than its max_duration")  # what the interceptor sets
    with pytest.raises(RpcAbort) as ended:
        await collect(behaviours(OnlyUnary).pick(made)(exchange(made, request=req(spec))))
    assert ended.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert ended.value.message == "Unary ran longer than its max_duration"

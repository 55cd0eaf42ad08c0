"""Unit tests drive one part at a time (an interceptor, a responder, the chain) on `Call`s of a
small compiled contract, with no server: `call("Unary")` is a call of /unit.v1.Echo/Unary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest

from emulator.call import Call, Metadata
from emulator.contracts import Contracts, MethodSpec, load_contracts
from tests.conftest import TEST_PROTOS

ECHO = TEST_PROTOS / "unit" / "echo.proto"
SERVICE = "unit.v1.Echo"


@pytest.fixture(scope="session")
def contracts() -> Contracts:
    return load_contracts([ECHO])


@pytest.fixture
def spec(contracts: Contracts) -> Callable[[str], MethodSpec]:
    def find(method: str) -> MethodSpec:
        return contracts.methods[f"/{SERVICE}/{method}"]

    return find


class FakeServicerContext:
    """What the parts under test read of grpc's servicer context, and nothing else."""

    def __init__(self, *, cancelled: bool = False, auth: dict[str, list[bytes]] | None = None):
        self._cancelled = cancelled
        self._auth = auth or {}

    def cancelled(self) -> bool:
        return self._cancelled

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


@pytest.fixture
def call(spec: Callable[[str], MethodSpec]) -> Callable[..., Call]:
    """`call(method, metadata=(), deadline=None, requests=[...])`: a Call as the dispatcher
    begins one, the given raw requests already received."""

    def make(
        method: str = "Unary",
        *,
        metadata: Metadata = (),
        deadline: float | None = None,
        requests: Iterable[bytes] = (),
        servicer_context: Any = None,
    ) -> Call:
        made = Call(spec(method), metadata, "ipv4:127.0.0.1:1", deadline, keep=10)
        made.servicer_context = servicer_context or FakeServicerContext()
        for raw in requests:
            made.requests.append(raw)
        return made

    return make


async def stream_of(*messages: bytes) -> AsyncIterator[bytes]:
    """A request stream as grpc hands it to the dispatcher."""
    for message in messages:
        yield message


async def collect(answers: AsyncIterator[bytes] | Awaitable[bytes] | bytes) -> list[bytes]:
    """An answer's messages: an answer of one message may be its bytes, or an awaitable."""
    if isinstance(answers, bytes):
        return [answers]
    if not isinstance(answers, AsyncIterator):
        return [await answers]
    return [answer async for answer in answers]

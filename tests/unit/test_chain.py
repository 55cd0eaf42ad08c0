"""The interceptor chain: which hooks run, in which order, and per-call interceptor state."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from emulator.call import Call
from emulator.chain import Chain, Interceptor
from emulator.errors import RpcAbort


class Recorder(Interceptor):
    """Overrides every hook and writes down each call of one."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def before(self, call: Call) -> None:
        self.log.append(f"{self.name}.before")

    async def on_request(self, call: Call, index: int) -> None:
        self.log.append(f"{self.name}.on_request({index})")

    async def before_response(self, call: Call, index: int) -> None:
        self.log.append(f"{self.name}.before_response({index})")

    def after(self, call: Call) -> None:
        self.log.append(f"{self.name}.after")


class AfterOnly(Interceptor):
    def after(self, call: Call) -> None:
        pass


class RequestsOnly(Interceptor):
    async def on_request(self, call: Call, index: int) -> None:
        pass


class InheritsResponses(Recorder):
    """Overrides nothing itself: what its base class overrides still counts."""


async def test_hooks_run_in_chain_order_and_after_in_reverse(call: Callable[..., Call]) -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log)])
    one = call("Bidi")
    await chain.before(one)
    await chain.on_request(one, 0)
    await chain.before_response(one, 0)
    chain.after(one)
    assert log == [
        "a.before",
        "b.before",
        "a.on_request(0)",
        "b.on_request(0)",
        "a.before_response(0)",
        "b.before_response(0)",
        "b.after",
        "a.after",
    ]


async def test_an_abort_in_before_stops_the_interceptors_after_it(
    call: Callable[..., Call],
) -> None:
    log: list[str] = []

    class Refuses(Interceptor):
        async def before(self, call: Call) -> None:
            raise RpcAbort(grpc.StatusCode.PERMISSION_DENIED, "no")

    chain = Chain([Recorder("a", log), Refuses(), Recorder("b", log)])
    with pytest.raises(RpcAbort) as refused:
        await chain.before(call())
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert log == ["a.before"]


def test_only_hooks_an_interceptor_overrides_are_called() -> None:
    # The dispatcher skips the per-message hooks altogether when no interceptor has them.
    assert not Chain().checks_requests and not Chain().checks_responses
    only_after = Chain([AfterOnly()])
    assert not only_after.checks_requests and not only_after.checks_responses
    requests = Chain([AfterOnly(), RequestsOnly()])
    assert requests.checks_requests and not requests.checks_responses
    inherited = Chain([InheritsResponses("c", [])])
    assert inherited.checks_requests and inherited.checks_responses


async def test_interceptors_without_a_hook_are_not_called_for_it(
    call: Callable[..., Call],
) -> None:
    log: list[str] = []

    class BeforeOnly(Interceptor):
        def __init__(self) -> None:
            # A probe, not an override: the chain goes by the class, so this is never called.
            self.after = lambda call: log.append("after")  # type: ignore[method-assign]

        async def before(self, call: Call) -> None:
            log.append("before")

    chain = Chain([BeforeOnly()])
    one = call()
    await chain.before(one)
    chain.after(one)
    assert log == ["before"]


def test_state_is_per_interceptor_and_per_call(call: Callable[..., Call]) -> None:
    first, second = Interceptor(), Interceptor()
    one, two = call(), call()
    assert one.slots is None  # nothing allocated for a call no interceptor keeps state on
    assert first.state(one) is None
    assert first.state(one, "nothing") == "nothing"
    first.set_state(one, "first on one")
    second.set_state(one, "second on one")
    first.set_state(two, "first on two")
    assert first.state(one) == "first on one"
    assert second.state(one) == "second on one"
    assert first.state(two) == "first on two"
    assert second.state(two) is None
    first.set_state(one, "replaced")
    assert (first.state(one), second.state(one)) == ("replaced", "second on one")


async def test_a_hook_the_interceptor_says_is_idle_is_left_out_until_it_changes(
    call: Callable[..., Call],
) -> None:
    log: list[str] = []

    class Sometimes(Interceptor):
        busy = False

        def live(self, hook: str) -> bool:
            return self.busy and super().live(hook)

        async def before(self, call: Call) -> None:
            log.append("before")

    sometimes = Sometimes()
    chain = Chain([sometimes, AfterOnly()])
    assert not chain.checks_calls  # the dispatcher skips `before` altogether
    await chain.before(call())
    sometimes.busy = True
    sometimes.changed()  # the chain binds its hooks again
    assert chain.checks_calls
    await chain.before(call())
    sometimes.busy = False
    sometimes.changed()
    assert not chain.checks_calls
    assert log == ["before"]

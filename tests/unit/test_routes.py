"""Which responders a method's route asks: worked out once, again after each change."""

from __future__ import annotations

from collections.abc import Callable

from emulator.call import Call
from emulator.changes import Changes
from emulator.contracts import MethodSpec
from emulator.respond import Answer, Exchange, Responder
from emulator.runtime.handlers import Dispatcher
from emulator.runtime.routes import Route


class Switch(Responder):
    """Picks every call of its method while on, none while off."""

    def __init__(self, changes: Changes) -> None:
        self.on, self.changes = False, changes

    def turn(self, on: bool) -> None:
        self.on = on
        self.changes.moved()

    def picks(self, path: str) -> bool:
        return self.on

    def pick(self, call: Call) -> Answer | None:
        return self.answer if self.on else None

    def answer(self, exchange: Exchange) -> bytes:
        return b"switch"


class Last(Responder):
    answer_now = staticmethod(lambda call, request: b"now")

    def picks(self, path: str) -> bool:
        return True

    def pick(self, call: Call) -> Answer:
        return lambda exchange: b"last"


class Never(Responder):
    def picks(self, path: str) -> bool:
        return False


class Maybe(Responder):
    """Depends on the call: always asked."""


def test_a_route_asks_only_who_may_pick_and_sees_each_change(
    spec: Callable[[str], MethodSpec],
) -> None:
    changes = Changes()
    switch, last, never, maybe = Switch(changes), Last(), Never(), Maybe()
    dispatcher = Dispatcher(seed=0, state={}, clock=lambda: None)  # type: ignore[arg-type,return-value]
    route = Route(spec("Unary"), [never, switch, last, maybe], dispatcher, changes)
    assert route.asked() == (last,)  # the responder after it that picks all is never asked
    assert route._now is not None  # the one responder's shortcut for a unary call
    switch.turn(True)
    assert route.asked() == (switch,)
    assert route._now is None  # it has no shortcut: the call goes through its pick
    switch.turn(False)
    assert route.asked() == (last,)
    stream = Route(spec("Bidi"), [maybe, last], dispatcher, changes)
    assert stream.asked() == (maybe, last)
    assert stream._now is None  # only unary-unary calls take the short way

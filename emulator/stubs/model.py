"""Compiled stubs: what `emulator.stubs.build` makes of a `StubConfig`, ready to match and answer.

A `Stub` holds its conditions, its responses (`Reply`: one, or a sequence) and its counters. Its
`failures()` say why a call does not match (empty: it matches), in the words near-miss reports
use; matching and answering are `emulator.stubs.store` and `emulator.respond.stubs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from emulator.contracts.model import MethodSpec
from emulator.faults.config import DelayConfig
from emulator.faults.rules import Abort
from emulator.stubs.conditions import Condition
from emulator.stubs.messages import MessageSpec
from emulator.stubs.templates import Template

__all__ = ["Item", "OnMessage", "Reply", "Stub"]

HeaderValue = str | bytes | Template


@dataclass(frozen=True, slots=True)
class Item:
    """One message sent: `message` built onto the default (None: the default as it is)."""

    message: MessageSpec | None
    delay: DelayConfig | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: messages (a unary response has one, or none when it fails), then the
    status; headers before the first message, trailers with the status."""

    items: tuple[Item, ...]
    status: Abort | None = None  # None or OK: the call succeeds
    headers: tuple[tuple[str, HeaderValue], ...] = ()
    trailers: tuple[tuple[str, HeaderValue], ...] = ()
    delay: DelayConfig | None = None  # before anything is sent
    stream: bool = False  # `stream:` given (bidi: sent at once, not per inbound message)

    @property
    def fails(self) -> bool:
        return self.status is not None and self.status.code.value[0] != 0

    @property
    def templated(self) -> bool:
        return any(isinstance(v, Template) for _, v in (*self.headers, *self.trailers)) or any(
            i.message is not None and i.message.templated for i in self.items
        )


@dataclass(frozen=True, slots=True)
class OnMessage:
    """A bidi rule: inbound messages its conditions hold for get `items` back."""

    conditions: tuple[Condition, ...]
    items: tuple[Item, ...]
    status: Abort | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class Stub:
    """One stub of one or more methods (a pattern matches several; they share its counters)."""

    name: str
    source: str  # `file:line`, `emulator.yaml:12`, `emu.stubs.add()`
    methods: tuple[MethodSpec, ...]
    order: int  # file order among stubs of equal priority and specificity
    priority: int = 0
    request: tuple[Condition, ...] = ()
    metadata: tuple[Condition, ...] = ()
    mode: str | int = "first"  # client/bidi streams: first, any, all, or an index
    # Client streams, `match.requests`: the whole stream, a message's conditions each.
    stream: tuple[tuple[Condition, ...], ...] | None = None
    recorded: Any = None  # a recording's provenance (`RecordedConfig`), or None
    # Recorded waits are multiplied by it (`replay.timings`: 1 as recorded, 0 none).
    delay_scale: float = 1.0
    times: int | None = None
    replies: tuple[Reply, ...] = ()
    then: str = "repeat_last"
    on_message: tuple[OnMessage, ...] = ()
    scenario: str = ""
    when_state: str = ""
    set_state: str = ""
    answered: int = 0  # calls it has answered since the last reset
    origin: str = "file"  # file, config or runtime (runtime stubs go at reset)
    # The test session it belongs to: it answers only calls tagged with it (None: every call).
    session: str | None = None
    sort_key: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))

    def __post_init__(self) -> None:
        self.in_session(self.session)

    def in_session(self, session: str | None) -> None:
        """Belong to `session`: a session's own stubs come before the shared ones, whatever
        their priority, since a test's stubs are meant to win over the environment's."""
        self.session = session
        specificity = len(self.request) + len(self.metadata) + bool(self.when_state)
        specificity += sum(map(len, self.stream or ())) + (self.stream is not None)
        self.sort_key = (session is None, -self.priority, -specificity, self.order)

    @property
    def exhausted(self) -> str:
        """Why the stub matches nothing more ("" while it still may)."""
        if self.times is not None and self.answered >= self.times:
            return f"answered its {self.times} time{'s' if self.times != 1 else ''}"
        if self.then == "fall_through" and self.answered >= len(self.replies):
            return f"its sequence of {len(self.replies)} responses is used up"
        return ""

    def reply(self) -> Reply:
        """The response for the next call it answers (counted by `answered`)."""
        replies, index = self.replies, self.answered
        if index < len(replies):
            return replies[index]
        if self.then == "cycle":
            return replies[index % len(replies)]
        return replies[-1]

    def matches(
        self, metadata: Any, messages: Sequence[Message], scenarios: dict[str, str]
    ) -> bool:
        """`not failures(..., explain=False)` without building the reasons: the per-call path.
        A stub that does not match costs a few tests then, not a formatted message each (1,000
        regex stubs, which no index serves, spent most of their time writing reasons)."""
        if self.exhausted:
            return False
        if self.when_state and scenarios.get(self.scenario, "started") != self.when_state:
            return False
        for condition in self.metadata:
            if not condition.holds(metadata):
                return False
        if self.stream is not None:
            return len(messages) == len(self.stream) and all(
                all(c.holds(m) for c in conditions)
                for m, conditions in zip(messages, self.stream, strict=True)
            )
        if not self.request:
            return True
        mode = self.mode
        if isinstance(mode, int) or mode == "first":
            index = mode if isinstance(mode, int) else 0
            return index < len(messages) and self._holds_for(messages[index])
        if not messages:
            return False
        if mode == "any":
            return any(self._holds_for(message) for message in messages)
        return all(self._holds_for(message) for message in messages)

    def _holds_for(self, message: Message) -> bool:
        return all(condition.holds(message) for condition in self.request)

    def failures(
        self,
        metadata: Any,
        messages: Sequence[Message],
        scenarios: dict[str, str],
        *,
        explain: bool,
    ) -> list[str]:
        """Why a call with these headers and request messages does not match (empty: it does);
        with `explain` False, the first reason found stops the check."""
        found: list[str] = []
        used = self.exhausted
        if used:
            found.append(used)
            if not explain:
                return found
        if self.when_state:
            state = scenarios.get(self.scenario, "started")
            if state != self.when_state:
                found.append(f"scenario {self.scenario} is {state!r}, not {self.when_state!r}")
                if not explain:
                    return found
        for condition in self.metadata:
            reason = condition.check(metadata)
            if reason is not None:
                found.append(reason)
                if not explain:
                    return found
        if self.stream is not None:
            found.extend(self._stream_failures(messages, explain))
        elif self.request:
            found.extend(self._request_failures(messages, explain))
        return found

    def _stream_failures(self, messages: Sequence[Message], explain: bool) -> list[str]:
        assert self.stream is not None
        if len(messages) != len(self.stream):
            return [f"the stream had {len(messages)} messages, not {len(self.stream)}"]
        for number, (message, conditions) in enumerate(zip(messages, self.stream, strict=True), 1):
            failed = [r for c in conditions if (r := c.check(message)) is not None]
            if failed:
                shown = failed if explain else failed[:1]
                return [f"message {number} of {len(messages)}: {'; '.join(shown)}"]
        return []

    def _request_failures(self, messages: Sequence[Message], explain: bool) -> list[str]:
        mode = self.mode
        if isinstance(mode, int) or mode == "first":
            index = mode if isinstance(mode, int) else 0
            if index >= len(messages):
                return [f"no request message {index + 1} (the stream had {len(messages)})"]
            return self.message_failures(messages[index], explain)
        if not messages:
            return ["no request message was received"]
        if mode == "any":
            last: list[str] = []
            for message in messages:
                last = self.message_failures(message, explain)
                if not last:
                    return []
            return [f"no message of {len(messages)} matched; the last: {'; '.join(last)}"]
        for number, message in enumerate(messages, 1):  # all
            failed = self.message_failures(message, explain)
            if failed:
                return [f"message {number} of {len(messages)}: {'; '.join(failed)}"]
        return []

    def message_failures(self, message: Message, explain: bool) -> list[str]:
        found: list[str] = []
        for condition in self.request:
            reason = condition.check(message)
            if reason is not None:
                found.append(reason)
                if not explain:
                    break
        return found

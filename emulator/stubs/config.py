"""The shape of a stub, as stub files, `stubs:` in emulator.yaml and `emu.stubs.add()` write it.

Pure data, checked by `emulator._schema` (unknown keys and wrong types name the key and line);
what needs the contracts (methods, fields, enum names, output types) is `emulator.stubs.build`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from emulator.faults.config import AbortConfig

__all__ = [
    "OnMessageConfig",
    "RecordedConfig",
    "ResponseConfig",
    "StreamItemConfig",
    "StubConfig",
    "StubMatchConfig",
]


@dataclass(frozen=True, kw_only=True)
class StubMatchConfig:
    """Which calls a stub answers; everything given must hold."""

    request: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "field path → value or conditions (equals, regex, gte, ...)"},
    )
    metadata: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "header → value or conditions"}
    )
    requests: tuple[dict[str, Any], ...] | None = field(
        default=None,
        metadata={
            "help": "client streams: the whole stream, one mapping of conditions per message, "
            "in order (what recordings match on)"
        },
    )
    # first | any | all | index N (or the number N): which messages of a client or bidi stream
    # `request` is checked against.
    message: Any = field(
        default="first",
        metadata={"help": "client and bidi streams: `first`, `any`, `all` or `index N`"},
    )


@dataclass(frozen=True, kw_only=True)
class StreamItemConfig:
    """One message of a streamed response or of a bidi reply."""

    message: dict[str, Any] = field(default_factory=dict, metadata={"help": "its fields"})
    replace: bool = field(
        default=False, metadata={"help": "only these fields, not merged onto the default"}
    )
    delay: Any = field(default=None, metadata={"help": "a wait before it: `20ms`, or a delay kind"})


@dataclass(frozen=True, kw_only=True)
class ResponseConfig:
    """What a stub answers: a message, a stream of them, a status, headers and trailers."""

    message: dict[str, Any] | None = field(
        default=None, metadata={"help": "the response message, merged onto the default"}
    )
    replace: bool = field(
        default=False, metadata={"help": "send only the fields given, not merged onto the default"}
    )
    stream: tuple[StreamItemConfig, ...] | None = field(
        default=None, metadata={"help": "server and bidi streams: the messages, in order"}
    )
    status: AbortConfig | None = field(
        default=None, metadata={"help": "the status the call ends with (default OK)"}
    )
    headers: dict[str, Any] = field(default_factory=dict, metadata={"help": "initial metadata"})
    trailers: dict[str, Any] = field(default_factory=dict, metadata={"help": "trailing metadata"})
    delay: Any = field(
        default=None,
        metadata={
            "help": "a wait before the response: `50ms`, or {fixed|uniform|normal|lognormal}"
        },
    )


@dataclass(frozen=True, kw_only=True)
class OnMessageConfig:
    """Bidi streams: the reply to each inbound message that matches."""

    match: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "conditions on the inbound message's fields"}
    )
    reply: tuple[StreamItemConfig, ...] = field(
        default=(), metadata={"help": "the messages sent back for it"}
    )
    status: AbortConfig | None = field(
        default=None, metadata={"help": "end the call with this status after the reply"}
    )


@dataclass(frozen=True, kw_only=True)
class RecordedConfig:
    """Where a recorded stub comes from (written by `emulate record`)."""

    at: str = field(default="", metadata={"help": "when it was recorded (RFC 3339, UTC)"})
    upstream: str = field(default="", metadata={"help": "the service it was recorded from"})
    messages: str = field(
        default="", metadata={"help": "fingerprint of the method's messages it was recorded with"}
    )


@dataclass(frozen=True, kw_only=True)
class StubConfig:
    """One stub."""

    name: str = field(default="", metadata={"help": "named in the journal, logs and near misses"})
    method: str = field(default="", metadata={"help": "`pkg.Service/Method`, or a method pattern"})
    match: StubMatchConfig = field(
        default_factory=StubMatchConfig, metadata={"help": "which calls; default: all"}
    )
    priority: int = field(default=0, metadata={"help": "higher wins"})
    times: int | None = field(
        default=None, metadata={"help": "answer this many matching calls, then stop matching"}
    )
    respond: ResponseConfig | None = field(default=None, metadata={"help": "the response"})
    sequence: tuple[ResponseConfig, ...] = field(
        default=(), metadata={"help": "a response per consecutive matching call"}
    )
    then: Literal["repeat_last", "cycle", "fall_through"] = field(
        default="repeat_last",
        metadata={"help": "after the sequence: repeat the last, cycle, or stop"},
    )
    on_message: tuple[OnMessageConfig, ...] = field(
        default=(), metadata={"help": "bidi streams: a reply per inbound message that matches"}
    )
    scenario: str = field(
        default="", metadata={"help": "a named state machine this stub is part of"}
    )
    when_state: str = field(
        default="",
        metadata={"help": "match only in this scenario state (scenarios start at `started`)"},
    )
    set_state: str = field(default="", metadata={"help": "the scenario's state after answering"})
    recorded: RecordedConfig | None = field(
        default=None, metadata={"help": "a recording's provenance (written by `emulate record`)"}
    )

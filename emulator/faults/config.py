"""The `faults:` and `rate_limits:` sections of emulator.yaml, as validated dataclasses.

    faults:
      - name: payments-outage
        match: {method: "shop.v1.Payments/*", metadata: {x-tenant: acme}, request: {currency: EUR}}
        when: {probability: 0.25, calls: [1, 2], after_calls: 10, window: {start: 5s, duration: 9s}}
        abort: {code: UNAVAILABLE, message: "...", details: [{"@type": "...RetryInfo", ...}],
                trailers: {grpc-retry-pushback-ms: "200"}}
        delay: {fixed: 150ms}        # or uniform: [50ms, 150ms], normal: {mean, stddev},
                                     #    lognormal: {median, sigma}
        stream: {abort_after: 3, message_delay: 20ms}
        deadline: exceed
        health: NOT_SERVING          # the matched service reports it while the rule applies
    rate_limits:
      - {match: {method: "shop.v1.Payments/*"}, rps: 5, burst: 2}

Pure data: nothing here imports grpc, so the config module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from emulator._schema import Duration

__all__ = [
    "AbortConfig",
    "DelayConfig",
    "FaultConfig",
    "LogNormalConfig",
    "MatchConfig",
    "NormalConfig",
    "RateLimitConfig",
    "StreamFaultConfig",
    "WhenConfig",
    "WindowConfig",
]


@dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """Which calls a rule applies to; all that is given must match."""

    method: str = field(
        default="*", metadata={"help": "method pattern: `pkg.Svc/Method`, `pkg.Svc/*` or `*`"}
    )
    metadata: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "headers that must match (any value of a repeated header)"},
    )
    request: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "a partial match on the first request message's fields"},
    )


@dataclass(frozen=True, kw_only=True)
class WindowConfig:
    """A span of time, counted in the emulator clock from its start (or `reset()`)."""

    start: Duration = field(default=0.0, metadata={"help": "when it opens, after the start"})
    duration: Duration = field(metadata={"help": "how long it stays open"})


@dataclass(frozen=True, kw_only=True)
class WhenConfig:
    """When a matching call gets the fault; everything given must hold."""

    probability: float = field(
        default=1.0, metadata={"help": "a seeded draw, 0 to 1, independent per fault kind"}
    )
    calls: tuple[int, ...] = field(
        default=(), metadata={"help": "only these matching calls (1 = the first)"}
    )
    after_calls: int = field(
        default=0, metadata={"help": "from matching call `after_calls + 1` on"}
    )
    window: WindowConfig | None = field(
        default=None, metadata={"help": "only while this window is open"}
    )


@dataclass(frozen=True, kw_only=True)
class AbortConfig:
    """The status a faulted call ends with."""

    code: str = field(metadata={"help": "a status code name, such as UNAVAILABLE"})
    message: str = field(default="", metadata={"help": "the status message"})
    details: tuple[dict[str, Any], ...] = field(
        default=(), metadata={"help": "google.rpc.Status details, as JSON with `@type`"}
    )
    trailers: dict[str, str] = field(
        default_factory=dict, metadata={"help": "trailing metadata sent with the status"}
    )


@dataclass(frozen=True, kw_only=True)
class NormalConfig:
    """A normally distributed delay."""

    mean: Duration = field(metadata={"help": "the mean delay"})
    stddev: Duration = field(metadata={"help": "its standard deviation"})


@dataclass(frozen=True, kw_only=True)
class LogNormalConfig:
    """A log-normally distributed delay: most calls near the median, a long tail."""

    median: Duration = field(metadata={"help": "the median delay"})
    sigma: float = field(metadata={"help": "the spread (standard deviation of its logarithm)"})


@dataclass(frozen=True, kw_only=True)
class DelayConfig:
    """A delay before the call goes on; exactly one kind."""

    fixed: Duration | None = field(default=None, metadata={"help": "always this long"})
    uniform: tuple[Duration, ...] = field(
        default=(), metadata={"help": "`[low, high]`: uniformly between them"}
    )
    normal: NormalConfig | None = field(default=None, metadata={"help": "normally distributed"})
    lognormal: LogNormalConfig | None = field(
        default=None, metadata={"help": "log-normally distributed"}
    )


@dataclass(frozen=True, kw_only=True)
class StreamFaultConfig:
    """Faults of a server stream."""

    abort_after: int | None = field(
        default=None,
        metadata={"help": "messages sent before the stream ends with the rule's `abort`"},
    )
    message_delay: Duration = field(
        default=0.0, metadata={"help": "a delay before each streamed message"}
    )


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """One fault rule: which calls, when, and what goes wrong."""

    # Required: an empty name is refused with a message that says so.
    name: str = field(
        default="", metadata={"help": "the rule's name (required), for logs, journal and counters"}
    )
    match: MatchConfig = field(
        default_factory=MatchConfig, metadata={"help": "which calls; default: all"}
    )
    when: WhenConfig = field(default_factory=WhenConfig, metadata={"help": "when; default: always"})
    abort: AbortConfig | None = field(default=None, metadata={"help": "end the call with a status"})
    delay: DelayConfig | None = field(default=None, metadata={"help": "delay the call"})
    stream: StreamFaultConfig | None = field(
        default=None, metadata={"help": "cut or slow a server stream"}
    )
    deadline: Literal["exceed"] | None = field(
        default=None, metadata={"help": "hold the call until the client's deadline passes"}
    )
    health: Literal["NOT_SERVING", "SERVICE_UNKNOWN"] | None = field(
        default=None,
        metadata={"help": "what grpc.health.v1 reports for the matched service meanwhile"},
    )


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    """A token bucket per rule; calls over it answer RESOURCE_EXHAUSTED."""

    name: str = field(default="", metadata={"help": "named in the RESOURCE_EXHAUSTED message"})
    match: MatchConfig = field(
        default_factory=MatchConfig, metadata={"help": "which calls; default: all"}
    )
    rps: float = field(metadata={"help": "calls allowed per second (tokens added)"})
    burst: int = field(default=1, metadata={"help": "at most this many tokens saved up"})

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
    method: str = "*"  # "pkg.Svc/Method", "pkg.Svc/*" or "*"
    metadata: dict[str, str] = field(default_factory=dict)  # all must match
    request: dict[str, Any] = field(default_factory=dict)  # partial match on request fields


@dataclass(frozen=True, kw_only=True)
class WindowConfig:
    start: Duration = 0.0  # after emulator start
    duration: Duration


@dataclass(frozen=True, kw_only=True)
class WhenConfig:
    probability: float = 1.0  # a seeded draw, independent per fault kind
    calls: tuple[int, ...] = ()  # only these matching calls (1 = the first)
    after_calls: int = 0  # from matching call after_calls + 1 on
    window: WindowConfig | None = None


@dataclass(frozen=True, kw_only=True)
class AbortConfig:
    code: str  # a grpc.StatusCode name, e.g. UNAVAILABLE
    message: str = ""
    details: tuple[dict[str, Any], ...] = ()  # google.rpc details as JSON with "@type"
    trailers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class NormalConfig:
    mean: Duration
    stddev: Duration


@dataclass(frozen=True, kw_only=True)
class LogNormalConfig:
    median: Duration
    sigma: float


@dataclass(frozen=True, kw_only=True)
class DelayConfig:
    fixed: Duration | None = None
    uniform: tuple[Duration, ...] = ()  # [low, high]
    normal: NormalConfig | None = None
    lognormal: LogNormalConfig | None = None


@dataclass(frozen=True, kw_only=True)
class StreamFaultConfig:
    abort_after: int | None = None  # messages sent before the stream ends with `abort`
    message_delay: Duration = 0.0  # before each streamed message


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    name: str = ""  # required: an empty name is refused with a message that says so
    match: MatchConfig = field(default_factory=MatchConfig)
    when: WhenConfig = field(default_factory=WhenConfig)
    abort: AbortConfig | None = None
    delay: DelayConfig | None = None
    stream: StreamFaultConfig | None = None
    deadline: Literal["exceed"] | None = None
    health: Literal["NOT_SERVING", "SERVICE_UNKNOWN"] | None = None


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    name: str = ""
    match: MatchConfig = field(default_factory=MatchConfig)
    rps: float
    burst: int = 1

"""Per-method figures of a journal, and how two journals' figures differ (drift).

Latencies are the calls' `durationSeconds`; percentiles interpolate between the two nearest
calls (as numpy's default does), so a method with one call has that call's time for each.
Drift compares a journal with a baseline (say, one recorded from the real service): p50 and
p99 beyond `latency` (a fraction: 0.5 is ±50%) of the baseline's, or an error rate more than
`errors` (a fraction of calls: 0.05 is five percentage points) away from the baseline's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emulator.report.calls import Call

__all__ = [
    "Drift",
    "MethodStats",
    "compare",
    "duration_text",
    "percent_text",
    "percentile",
    "summarize",
]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The `fraction` (0 to 1) percentile of values sorted ascending; NaN for none."""
    if not ordered:
        return math.nan
    at = (len(ordered) - 1) * fraction
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


@dataclass(frozen=True, slots=True)
class MethodStats:
    method: str
    calls: int
    errors: int  # calls whose code is not OK
    codes: dict[str, int]  # code → calls, most frequent first
    p50: float  # seconds
    p90: float
    p99: float
    max: float
    durations: tuple[float, ...]  # sorted ascending

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def summarize(calls: Iterable[Call]) -> dict[str, MethodStats]:
    """Method → its figures, methods in name order."""
    by_method: dict[str, list[Call]] = {}
    for call in calls:
        by_method.setdefault(call.method, []).append(call)
    found = {}
    for method in sorted(by_method):
        own = by_method[method]
        durations = tuple(sorted(c.duration for c in own))
        codes = Counter(c.code for c in own)
        found[method] = MethodStats(
            method=method,
            calls=len(own),
            errors=sum(n for code, n in codes.items() if code != "OK"),
            codes=dict(codes.most_common()),
            p50=percentile(durations, 0.5),
            p90=percentile(durations, 0.9),
            p99=percentile(durations, 0.99),
            max=durations[-1],
            durations=durations,
        )
    return found


@dataclass(frozen=True, slots=True)
class Drift:
    """One method's figures next to the baseline's, and what is beyond the thresholds."""

    method: str
    current: MethodStats | None  # None: the method is only in the baseline
    baseline: MethodStats | None  # None: only in the journal
    flags: tuple[str, ...]  # one short sentence per figure beyond its threshold

    @property
    def drifted(self) -> bool:
        return bool(self.flags)


def _change(now: float, then: float) -> float:
    """Relative change; infinite when the baseline was 0 and now is not."""
    if then == 0:
        return 0.0 if now == 0 else math.inf
    return (now - then) / then


def compare(
    current: dict[str, MethodStats],
    baseline: dict[str, MethodStats],
    *,
    latency: float,
    errors: float,
) -> list[Drift]:
    """Each method of either journal, in name order. A method only one of them has is listed
    without flags: there is nothing to compare it with."""
    found = []
    for method in sorted(current.keys() | baseline.keys()):
        now, then = current.get(method), baseline.get(method)
        flags: list[str] = []
        if now is not None and then is not None:
            for name, a, b in (("p50", now.p50, then.p50), ("p99", now.p99, then.p99)):
                change = _change(a, b)
                if abs(change) > latency:
                    flags.append(
                        f"{name} {duration_text(a)} vs {duration_text(b)}: {change_text(a, b)}"
                    )
            difference = now.error_rate - then.error_rate
            if abs(difference) > errors:
                flags.append(
                    f"error rate {percent_text(now.error_rate)} vs {percent_text(then.error_rate)}"
                )
        found.append(Drift(method, now, then, tuple(flags)))
    return found


def duration_text(seconds: float) -> str:
    """`0.42ms`, `12.5ms`, `999ms`, `1.2s`, `250s`: three significant digits."""
    if math.isnan(seconds):
        return "-"
    if seconds < 0.9995:
        return f"{seconds * 1000:.3g}ms"
    return f"{seconds:.3g}s" if seconds < 999.5 else f"{seconds:.0f}s"


def percent_text(fraction: float) -> str:
    """`0.5%`, `30%`, `127%`, `1040%`: three significant digits, never an exponent."""
    if math.isinf(fraction):
        return "∞%"
    percent = fraction * 100
    return f"{percent:.3g}%" if percent < 999.5 else f"{percent:.0f}%"


def change_text(now: float, then: float) -> str:
    """`50.6% faster`, `127% slower`, and from twice the baseline's on `11.3x slower`."""
    if then > 0 and now / then >= 2:
        return f"{now / then:.3g}x slower"
    change = _change(now, then)
    return f"{percent_text(abs(change))} {'slower' if change > 0 else 'faster'}"

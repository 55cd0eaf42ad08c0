"""The report as one HTML page: figures, tables and the inline SVG charts, nothing fetched.

The template (`page.html`) is Jinja2 with autoescaping: method names, details and requests come
from the calls, so they are escaped; only the charts, drawn here, go in as they are.
"""

from __future__ import annotations

import datetime
import math
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from emulator.report import charts
from emulator.report.calls import Call
from emulator.report.stats import Drift, MethodStats, duration_text, percent_text

__all__ = ["render"]

SLOWEST = 10  # calls in the table of the slowest
FAILED = 100  # failed calls listed; the rest are counted


def render(
    calls: Sequence[Call],
    stats: dict[str, MethodStats],
    *,
    journal: str,
    baseline: dict[str, MethodStats] | None = None,
    baseline_name: str = "",
    drifts: list[Drift] | None = None,
    latency_threshold: float = 0.0,
    error_threshold: float = 0.0,
) -> str:
    import jinja2

    template = resources.files("emulator.report").joinpath("page.html").read_text("utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    codes = [c.code for c in calls] + [code for s in (baseline or {}).values() for code in s.codes]
    palette = charts.colours(codes)
    drawn: dict[str, str | None] = dict.fromkeys(("calls_by_status", "latency", "faults", "drift"))
    if calls:
        drawn["calls_by_status"] = charts.calls_by_status(stats, palette)
        drawn["latency"] = charts.latency(stats, baseline)
        drawn["faults"] = charts.faults_over_time(calls)
    if baseline is not None and any(m in baseline for m in stats):
        drawn["drift"] = charts.drift(stats, baseline)
    started = [c.started_at for c in calls]
    return environment.from_string(template).render(
        title=f"grpc-emulator report: {Path(journal).name}",
        journal=journal,
        calls=calls,
        stats=stats,
        first=f"{min(started):%Y-%m-%d %H:%M:%S}" if calls else "",
        last=f"{max(started):%Y-%m-%d %H:%M:%S}" if calls else "",
        span=_span(max(started) - min(started)) if calls else "",
        failed=[c for c in calls if not c.ok],
        failed_limit=FAILED,
        faulted=sum(1 for c in calls if c.faults),
        fault_counts=Counter(f for c in calls for f in sorted(set(c.faults))).most_common(),
        slowest=sorted(calls, key=lambda c: (-c.duration, c.line))[:SLOWEST],
        palette=palette,
        charts=drawn,
        drifts=drifts,
        drifted=[d for d in drifts or () if d.drifted],
        baseline_name=baseline_name,
        latency_threshold=percent_text(latency_threshold),
        error_points=f"{error_threshold * 100:.3g}",
        ms=duration_text,
        percent=percent_text,
        pair=_pair,
        rate_pair=_rate_pair,
        time=lambda c: f"{c.started_at:%H:%M:%S.%f}"[:-3],
        version=_version(),
    )


def _pair(drift: Drift, figure: str) -> str:
    def one(stats: MethodStats | None) -> str:
        return duration_text(getattr(stats, figure)) if stats is not None else "-"

    return f"{one(drift.current)} / {one(drift.baseline)}"


def _rate_pair(drift: Drift) -> str:
    def one(stats: MethodStats | None) -> str:
        return percent_text(stats.error_rate) if stats is not None else "-"

    return f"{one(drift.current)} / {one(drift.baseline)}"


def _span(delta: datetime.timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds >= 1 or seconds == 0 else duration_text(seconds)
    minutes, seconds = divmod(math.floor(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grpc-emulator")
    except PackageNotFoundError:  # pragma: no cover - a source tree never installed
        return "unknown"

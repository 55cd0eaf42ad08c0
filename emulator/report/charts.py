"""The report's charts, drawn with matplotlib as SVG to put inline in the page.

Static SVG rather than a JavaScript chart library: the page opens anywhere with no network and
no script (CI artifact viewers and Jenkins' HTML publisher block scripts by default), text stays
text (searchable, selectable), and the same journal draws the same bytes (no date, fixed ids).
Each chart is a `Figure` of its own, never pyplot's global state, so nothing needs a display.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from typing import Literal, ParamSpec, TypeVar

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from emulator.report.calls import Call
from emulator.report.stats import MethodStats, duration_text

__all__ = ["calls_by_status", "drift", "faults_over_time", "latency"]

OK_COLOUR = "#3a9d5d"
BASELINE_COLOUR = "#8c8c8c"
CURRENT_COLOUR = "#3b6fb6"
# Codes other than OK, then fault rules, take these in name order: the same code gets the same
# colour in every chart of a page.
PALETTE = (
    "#d1495b", "#edae49", "#00798c", "#8e5ea2", "#f07f3c", "#30638e", "#b5651d", "#6a994e",
    "#c9184a", "#5f0f40",
)  # fmt: skip
# Fault rules: colours of their own, so that a rule never looks like a status code.
RULE_PALETTE = ("#7b2cbf", "#ff8fab", "#2a9d8f", "#9c6644", "#4361ee", "#f4a261", "#6c757d")
WIDTH = 9.0  # inches: 864px at the page's 96px per inch
_IDS = re.compile(r'(id="|href="#|url\(#)([^")]+)')


def colours(names: Sequence[str], palette: Sequence[str] = PALETTE) -> dict[str, str]:
    """A colour for each name; `OK` is always green."""
    others = sorted(n for n in set(names) if n != "OK")
    found = {name: palette[i % len(palette)] for i, name in enumerate(others)}
    found["OK"] = OK_COLOUR
    return found


def _legend_outside(axes: Axes) -> None:
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


P = ParamSpec("P")
R = TypeVar("R")


def _drawn(draw: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(draw)
    def drawing(*args: P.args, **kwargs: P.kwargs) -> R:
        # Method names and fault rules are text, never mathtext: a `$` in a name stays a `$`.
        with matplotlib.rc_context({"text.parse_math": False, "svg.fonttype": "none"}):
            return draw(*args, **kwargs)

    return drawing


def _svg(figure: Figure, name: str, label: str) -> str:
    """The figure as an `<svg>` element: no XML prolog, ids prefixed with `name` so that the
    charts of one page never share one, and a label for screen readers."""
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        figure.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = out.getvalue()
    text = text[text.index("<svg") :]
    text = _IDS.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace(
        "<svg ", f'<svg class="chart" data-chart="{name}" role="img" aria-label="{label}" ', 1
    )


def _figure(rows: int) -> Figure:
    figure = Figure(figsize=(WIDTH, max(2.2, 0.9 + 0.42 * rows)), layout="constrained")
    figure.set_facecolor("white")
    return figure


def _style(axes: Axes, grid: Literal["x", "y"] = "x") -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.grid(axis=grid, color="#e5e5e5", linewidth=0.8)
    axes.set_axisbelow(True)


@_drawn
def calls_by_status(stats: dict[str, MethodStats], palette: dict[str, str]) -> str:
    """Horizontal bars, one per method, split by status code (coloured by `palette`)."""
    methods = list(stats)
    codes = sorted({code for s in stats.values() for code in s.codes}, key=lambda c: (c != "OK", c))
    figure = _figure(len(methods))
    axes = figure.add_subplot()
    left = [0] * len(methods)
    for code in codes:
        counts = [stats[m].codes.get(code, 0) for m in methods]
        axes.barh(methods, counts, left=left, color=palette[code], label=code, height=0.6)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    axes.invert_yaxis()  # the first method on top, as in the table
    axes.set_xlabel("calls")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(axes)
    _style(axes)
    return _svg(figure, "calls-by-status", "calls per method, by status code")


def _log_ms(axes: Axes) -> None:
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: duration_text(value)))
    axes.set_xlabel("call duration (log scale)")


@_drawn
def latency(stats: dict[str, MethodStats], baseline: dict[str, MethodStats] | None) -> str:
    """A box plot of each method's call durations (whiskers at 1.5 IQR, the rest as dots), on
    a log scale; with a baseline, its box in grey under the journal's."""
    methods = list(stats) + [m for m in (baseline or {}) if m not in stats]
    figure = _figure(len(methods) * (2 if baseline else 1))
    axes = figure.add_subplot()
    step = 1.0
    offset = 0.2 if baseline else 0.0

    def boxes(source: dict[str, MethodStats], shift: float, colour: str, label: str) -> None:
        shown = [(i, source[m].durations) for i, m in enumerate(methods) if m in source]
        if not shown:
            return
        floor = 1e-6  # a log scale has no 0: a call that took no time shows at 1µs
        plot = axes.boxplot(
            [[max(d, floor) for d in ds] for _, ds in shown],
            positions=[i * step + shift for i, _ in shown],
            orientation="horizontal",
            widths=0.32 if baseline else 0.55,
            patch_artist=True,
            manage_ticks=False,
            flierprops={"marker": ".", "markersize": 3, "markeredgecolor": colour},
            medianprops={"color": "black"},
        )
        for box in plot["boxes"]:
            box.set_facecolor(colour)
            box.set_alpha(0.75)
        plot["boxes"][0].set_label(label)

    boxes(stats, -offset, CURRENT_COLOUR, "this journal")
    if baseline:
        boxes(baseline, offset, BASELINE_COLOUR, "baseline")
        _legend_outside(axes)
    axes.set_yticks([i * step for i in range(len(methods))], methods)
    axes.set_ylim(len(methods) - 0.5, -0.5)
    _log_ms(axes)
    _style(axes)
    return _svg(figure, "latency", "call duration per method")


@_drawn
def faults_over_time(calls: Sequence[Call], bins: int = 60) -> str | None:
    """Faults injected per time slice, stacked by rule, with failed calls as a line; None when
    no call had a fault."""
    if not any(c.faults for c in calls):
        return None
    start = min(c.started_at for c in calls)
    seconds = [(c.started_at - start).total_seconds() for c in calls]
    span = max(seconds) or 1.0
    width = span / bins
    slices = [min(int(s / width), bins - 1) for s in seconds]
    rules = sorted({f for c in calls for f in c.faults})
    palette = colours(rules, RULE_PALETTE)
    figure = Figure(figsize=(WIDTH, 3.2), layout="constrained")
    axes = figure.add_subplot()
    x = [(i + 0.5) * width for i in range(bins)]
    bottom = [0] * bins
    for rule in rules:
        counts = [0] * bins
        for call, at in zip(calls, slices, strict=True):
            counts[at] += call.faults.count(rule)
        axes.bar(x, counts, width=width * 0.9, bottom=bottom, color=palette[rule], label=rule)
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
    failed = [0] * bins
    for call, at in zip(calls, slices, strict=True):
        failed[at] += not call.ok
    axes.plot(x, failed, color="black", linewidth=1.2, marker=".", label="failed calls")
    axes.set_xlim(0, span)
    axes.set_xlabel(f"seconds since the first call ({start:%Y-%m-%d %H:%M:%S} UTC)")
    axes.set_ylabel("per slice")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(axes)
    _style(axes, grid="y")
    return _svg(figure, "faults-over-time", "faults injected over time, by rule")


@_drawn
def drift(stats: dict[str, MethodStats], baseline: dict[str, MethodStats]) -> str:
    """p50 and p99 of each method both journals have, the journal's next to the baseline's."""
    methods = [m for m in stats if m in baseline]
    figure = _figure(len(methods) * 2)
    axes = figure.add_subplot()
    height = 0.2
    for n, (name, colour) in enumerate(
        (("baseline", BASELINE_COLOUR), ("journal", CURRENT_COLOUR))
    ):
        source = baseline if name == "baseline" else stats
        for k, (figure_name, alpha) in enumerate((("p50", 1.0), ("p99", 0.55))):
            values = [max(getattr(source[m], figure_name), 1e-6) for m in methods]
            positions = [i + (n * 2 + k - 1.5) * height for i in range(len(methods))]
            axes.barh(
                positions,
                values,
                height=height * 0.9,
                color=colour,
                alpha=alpha,
                label=f"{name} {figure_name}",
            )
    axes.set_yticks(range(len(methods)), methods)
    axes.set_ylim(len(methods) - 0.5, -0.5)
    _log_ms(axes)
    axes.set_xlabel("p50 and p99 (log scale)")
    _legend_outside(axes)
    _style(axes)
    return _svg(figure, "drift", "p50 and p99 per method, this journal against the baseline")

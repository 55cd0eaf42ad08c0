"""`emulate report JOURNAL.jsonl [-o report.html] [--baseline OTHER.jsonl] [--fail-on-drift]`.

One self-contained HTML page from a `--journal-out` journal: calls per method and status,
latency per method, faults over time, the slowest and the failed calls. With `--baseline`,
each method's p50, p99 and error rate against the baseline's; drift is listed on stdout too,
and `--fail-on-drift` makes it exit 1. Bad input: one line naming the file and line, exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from emulator.errors import EmulatorError

__all__ = ["run"]

EXIT_DRIFT = 1


def _percentage(text: str) -> float:
    number = text.strip().removesuffix("%")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a percentage such as 50%, got {text!r}"
        ) from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a percentage of 0 or more, got {text!r}")
    return value / 100


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="emulate report",
        description="Write a journal (`emulate --journal-out FILE`) as one HTML page that "
        "needs no network; compare it with a baseline journal.",
    )
    parser.add_argument("journal", metavar="JOURNAL.jsonl", help="a --journal-out file")
    parser.add_argument(
        "-o", "--output", metavar="FILE", default="report.html", help="the page (report.html)"
    )
    parser.add_argument(
        "--baseline",
        metavar="OTHER.jsonl",
        help="a journal to compare with (say, the real service's)",
    )
    parser.add_argument(
        "--threshold",
        metavar="PERCENT",
        type=_percentage,
        default=0.5,
        help="drift: p50 or p99 this far from the baseline's, either way (default 50%%)",
    )
    parser.add_argument(
        "--error-threshold",
        metavar="POINTS",
        type=_percentage,
        default=0.05,
        help="drift: an error rate this many percentage points from the baseline's (default 5%%)",
    )
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when a method drifted")
    args = parser.parse_args(list(argv))
    if args.fail_on_drift and not args.baseline:
        parser.error("--fail-on-drift needs --baseline")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EmulatorError(
            "needs matplotlib, which draws the charts: pip install 'grpc-emulator[report]'"
        ) from None
    from emulator.report import compare, read_journal, summarize
    from emulator.report.page import render

    calls = read_journal(args.journal)
    stats = summarize(calls)
    baseline = drifts = None
    if args.baseline:
        baseline = summarize(read_journal(args.baseline))
        drifts = compare(stats, baseline, latency=args.threshold, errors=args.error_threshold)
    page = render(
        calls,
        stats,
        journal=args.journal,
        baseline=baseline,
        baseline_name=args.baseline or "",
        drifts=drifts,
        latency_threshold=args.threshold,
        error_threshold=args.error_threshold,
    )
    try:
        Path(args.output).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise EmulatorError(f"{args.output}: cannot be written: {exc.strerror}") from None
    failed = sum(1 for c in calls if not c.ok)
    print(f"{args.output}: {len(calls)} calls, {len(stats)} methods, {failed} failed")
    if drifts is None:
        return 0
    drifted = [d for d in drifts if d.drifted]
    for drift in drifted:
        print(f"drift: {drift.method}: {'; '.join(drift.flags)}")
    if not drifted:
        compared = sum(1 for d in drifts if d.current and d.baseline)
        print(f"no drift: {compared} methods within the thresholds of {args.baseline}")
    return EXIT_DRIFT if drifted and args.fail_on_drift else 0

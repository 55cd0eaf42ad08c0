"""Interleaved load rounds of emulator variants, and the medians of what they gave.

    per_round = run_rounds(variants, rounds, loadgen)   # {variant name: [one result a round]}
    median, (low, high) = median_iqr(ratios(per_round[B], per_round[A], "rps"))

Each round starts every variant afresh, one at a time, in an order that rotates: a long-lived
process can be a few per cent faster or slower than its twin for its whole life (memory layout,
hash seed), and an idle twin still competes for the CPU. Ratios are taken per round, then the
median. Used by bench/stubs.py, bench/faults.py, bench/sessions.py, bench/record.py,
bench/validation.py and bench/issue17.py;
bench/run.py keeps its servers up between rounds (its start-up is measured apart).
The summary helpers below (`two_way`, `ratio_summary`, `print_ratio`, `spread`) are the one
copy of the per-round ratio, IQR and verdict-figure code those benchmarks share.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from run import (  # bench/ is sys.path[0]
    BenchError,
    Child,
    machine_facts,
    start,
    write_results,  # noqa: F401 - the benches import it from here
)


def pinning() -> tuple[list[str], set[int] | None]:
    """Servers on the last CPU, this script and the load generator on the others: on a small
    machine that keeps the two from trading places, which is most of the round-to-round noise."""
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if len(cpus) < 2 or taskset is None:
        return [], None
    return [taskset, "-c", str(cpus[-1])], set(cpus[:-1])


def pinned(no_pin: bool) -> tuple[list[str], set[int] | None]:
    """`pinning()` applied to this process (the load generator inherits it), unless `no_pin`:
    the prefix for server commands, and the CPUs left to the load."""
    prefix, others = ([], None) if no_pin else pinning()
    if others is not None:
        os.sched_setaffinity(0, others)
    return prefix, others


@dataclass
class Variant:
    """One emulator configuration: how to start it, and what to check before and after load.

    `ready(child)` runs once the server listens: it waits for the first answer, checks that the
    variant serves what it says (BenchError if not) and returns the perf_counter() of that first
    answer, or None not to report start-up. `after(child)` checks it still answers after the
    load. `loadgen`, if set, replaces the rounds' load generator for this variant (another
    request or other headers)."""

    name: str
    cmd: list[str]
    ready: Callable[[Child], float | None]
    after: Callable[[Child], object]
    env: dict[str, str] = field(default_factory=dict)
    loadgen: Any = None


def run_rounds(
    variants: Sequence[Variant],
    rounds: int,
    loadgen: Any,
    *,
    timeout: float = 30.0,
    width: int = 14,
    rps_width: int = 8,
) -> dict[str, list[dict[str, Any]]]:
    """`rounds` rotating rounds of every variant; per variant, one loadgen result a round with
    the server's CPU a call (and, when `ready` reports it, start-up and RSS)."""
    per_round: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    order = list(variants)
    for number in range(rounds):
        shift = number % len(order)
        for variant in order[shift:] + order[:shift]:  # rotate who goes first
            result = _one(variant, variant.loadgen or loadgen, timeout)
            per_round[variant.name].append(result)
            first = (
                f"  first RPC {result['first_rpc_ms']:.0f} ms" if "first_rpc_ms" in result else ""
            )
            print(
                f"  round {number + 1}/{rounds} {variant.name:<{width}} "
                f"{result['rps']:>{rps_width}.0f} req/s"
                f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
                f"  {result['server_cpu_us_per_req']:.0f} us CPU/req{first}",
                flush=True,
            )
    return per_round


def _one(variant: Variant, loadgen: Any, timeout: float) -> dict[str, Any]:
    child = start(variant.name, variant.cmd, variant.env, timeout=timeout)
    try:
        served = variant.ready(child)
        cpu = child.cpu_seconds()
        result: dict[str, Any] = loadgen.run(child.port)
        if result["errors"]:
            raise BenchError(f"{variant.name}: {result['errors']} calls failed under load")
        result["server_cpu_us_per_req"] = (
            (child.cpu_seconds() - cpu) * 1e6 / max(1, result["requests"])
        )  # includes the warm-up calls: comparable between variants only
        if served is not None:
            result["listening_ms"] = child.listening_ms
            result["first_rpc_ms"] = (served - child.t0) * 1000
            result.update(child.rss_mb())
        variant.after(child)  # still answering properly after the load
    finally:
        child.stop()
    return result


# -- summaries -----------------------------------------------------------------------------------


def ratios(results: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[float]:
    """`key` of each round's result over the base's of the same round."""
    return [r[key] / b[key] for r, b in zip(results, base, strict=True) if b[key]]


def median_iqr(values: Sequence[float]) -> tuple[float, list[float]]:
    """The median and the interquartile range (both ends, rounded to 3 places)."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), [round(quartiles[0], 3), round(quartiles[2], 3)]


def medians(results: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """The median over rounds of each of `keys` that every round has."""
    return {
        key: statistics.median(r[key] for r in results)
        for key in keys
        if all(r.get(key) is not None for r in results)
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    """The median of per-round figures, their IQR, and the figures (3 places)."""
    median, iqr = median_iqr(values)
    return {"median": median, "iqr": iqr, "per_round": [round(v, 3) for v in values]}


def ratio_summary(values: Sequence[float]) -> dict[str, Any]:
    """Per-round ratios as a summary's `ratio`, `ratio_iqr` and `ratios_per_round`."""
    median, iqr = median_iqr(values)
    return {"ratio": median, "ratio_iqr": iqr, "ratios_per_round": [round(x, 3) for x in values]}


def print_ratio(label: str, summary: dict[str, Any]) -> None:
    """The per-round ratios of `ratio_summary`, then their median and IQR."""
    low, high = summary["ratio_iqr"]
    print(f"ratio per round ({label}): {summary['ratios_per_round']}")
    print(f"  median {summary['ratio']:.3f}, interquartile range {low:.3f}-{high:.3f}")


def two_way(
    per_round: dict[str, list[dict[str, Any]]], base: str, other: str, keys: Sequence[str]
) -> dict[str, Any]:
    """A two-variant summary: per variant the medians of `keys` and its RPS per round; the
    `ratio_summary` of `other`'s RPS over `base`'s, and `cpu_ratio`, the median of `base`'s
    server CPU a call over `other`'s."""
    summary: dict[str, Any] = {
        name: {**medians(results, keys), "rps_per_round": [round(r["rps"], 1) for r in results]}
        for name, results in per_round.items()
    }
    summary.update(ratio_summary(ratios(per_round[other], per_round[base], "rps")))
    cpu = ratios(per_round[base], per_round[other], "server_cpu_us_per_req")
    summary["cpu_ratio"] = statistics.median(cpu)
    return summary


def run_meta(
    args: argparse.Namespace, loadgen: Any, prefix: list[str], others: set[int] | None
) -> dict[str, Any]:
    """What a results file says about the run: load shape, pinning and machine."""
    return {
        "loadgen": loadgen.describe(),
        "loadgen_kind": loadgen.name,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "pinning": f"servers: {prefix[-1]}, load: {sorted(others)}" if others else "none",
        **machine_facts(),
    }


def load_parser(doc: str, rounds: int, duration: float, output: Path) -> argparse.ArgumentParser:
    """The options every load benchmark takes (rounds, load shape, pinning, output); a
    benchmark adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds, help="rotating load rounds")
    parser.add_argument("--duration", type=float, default=duration, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--python-load", action="store_true", help="skip h2load even if present")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers to a CPU")
    parser.add_argument("--output", type=Path, default=output)
    return parser

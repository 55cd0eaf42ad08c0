"""Benchmark: what installing grpc-emulator adds to every pytest run that never uses it.

    python bench/plugin_import.py [--rounds 30]

pytest loads the `emulator` plugin (a `pytest11` entry point) in every session of an environment
that has grpc-emulator installed. Measures, on this machine, the CPU and wall time of
`pytest -q -p no:cacheprovider` over one trivial test (no fixture) in a subprocess, for:
  without   `-p no:emulator`: the plugin is not loaded at all (the baseline);
  plugin    the plugin as installed;
  eager     `-p no:emulator -p emulator.testing`: what loading used to cost, when the plugin
            imported emulator.testing (grpc, protobuf, the server) at load.
Also `python -c "import emulator.pytest_plugin"` against `python -c "import pytest"`.
Variants alternate round by round (the order rotates); figures are medians of the differences
to the baseline of the same round, in CPU time of the child (user + system: what the run costs,
robust to other load on a small shared machine) and in wall time. Prints a table and PASS/FAIL
against the target, writes bench/results/plugin_import.json, exits 0 unless the benchmark
itself breaks.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run.py re-executes with the venv's python when grpc is missing; importing it does the same here.
from run import HERE, REPO, machine_facts, verdicts

TARGET_MS = 20.0
TIMEOUT = 120.0

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
"""

TRIVIAL = """\
def test_trivial():
    assert 1 + 1 == 2
"""

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
SESSIONS: dict[str, list[str]] = {
    "without": [*PYTEST, "-p", "no:emulator"],
    "plugin": PYTEST,
    "eager": [*PYTEST, "-p", "no:emulator", "-p", "emulator.testing"],
}
IMPORTS: dict[str, list[str]] = {
    "import pytest": [sys.executable, "-c", "import pytest"],
    "import emulator.pytest_plugin": [sys.executable, "-c", "import emulator.pytest_plugin"],
}


class BenchError(RuntimeError):
    """A pytest run or an import failed."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU ms, wall ms) of one run of `command`."""
    cpu0, t0 = _cpu(), time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    wall, cpu = (time.perf_counter() - t0) * 1000, (_cpu() - cpu0) * 1000
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr}")
    return cpu, wall


Times = dict[str, dict[str, list[float]]]  # "cpu" / "wall" → variant → ms per round


def rounds_of(variants: dict[str, list[str]], rounds: int, cwd: Path) -> Times:
    names = list(variants)
    for name in names:  # warms the page cache and the .pyc files, untimed
        timed(variants[name], cwd)
    times: Times = {"cpu": {n: [] for n in names}, "wall": {n: [] for n in names}}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            cpu, wall = timed(variants[name], cwd)
            times["cpu"][name].append(cpu)
            times["wall"][name].append(wall)
    return times


def differences(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Per variant, the median over rounds of (variant - baseline of the same round), in ms."""
    return {
        name: statistics.median(t - b for t, b in zip(ts, times[baseline], strict=True))
        for name, ts in times.items()
        if name != baseline
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "plugin_import.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-plugin-"))
    (work / "pytest.ini").write_text(INI)
    (work / "test_trivial.py").write_text(TRIVIAL)
    meta = {
        "rounds": args.rounds,
        **machine_facts(),
    }
    try:
        print("pytest sessions of one trivial test", flush=True)
        sessions = rounds_of(SESSIONS, args.rounds, work)
        print("imports", flush=True)
        imports = rounds_of(IMPORTS, args.rounds, work)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cost = {kind: differences(sessions[kind], "without") for kind in ("cpu", "wall")}
    import_cost = {
        kind: differences(imports[kind], "import pytest")["import emulator.pytest_plugin"]
        for kind in ("cpu", "wall")
    }
    print()
    print("                   CPU median (+ vs without)   wall median (+ vs without)")
    for name in SESSIONS:
        row = f"  pytest, {name:<8}"
        for kind in ("cpu", "wall"):
            extra = f" ({cost[kind][name]:+6.1f})" if name in cost[kind] else " " * 9
            row += f"   {statistics.median(sessions[kind][name]):7.1f} ms{extra}      "
        print(row)
    print(
        f"  import emulator.pytest_plugin - import pytest: {import_cost['cpu']:+.1f} ms CPU, "
        f"{import_cost['wall']:+.1f} ms wall"
    )
    plugin = cost["cpu"]["plugin"]
    checks = verdicts(
        [
            (
                f"the plugin adds <= {TARGET_MS:.0f} ms to a pytest run that does not use it",
                plugin <= TARGET_MS,
                f"{plugin:+.1f} ms CPU, {cost['wall']['plugin']:+.1f} ms wall "
                f"(eager import: {cost['cpu']['eager']:+.1f} ms CPU)",
            )
        ]
    )
    rounded = {
        kind: {name: [round(t, 1) for t in ts] for name, ts in by_name.items()}
        for kind, by_name in sessions.items()
    }
    document = {
        "meta": meta,
        "pytest_ms": rounded,
        "import_ms": {
            kind: {name: [round(t, 1) for t in ts] for name, ts in by_name.items()}
            for kind, by_name in imports.items()
        },
        "plugin_cost_ms": {kind: round(cost[kind]["plugin"], 1) for kind in cost},
        "eager_cost_ms": {kind: round(cost[kind]["eager"], 1) for kind in cost},
        "import_cost_ms": {kind: round(v, 1) for kind, v in import_cost.items()},
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    print(f"\nwrote {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

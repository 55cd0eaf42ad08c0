"""Benchmark: the in-process `Emulator` and the pytest fixture, in one run.

    python bench/inprocess.py [--reps 50] [--tests 500] [--call-tests 1000] [--rounds 3]

Measures, on this machine:
  (a) `with Emulator(protos="protos/") as emu: emu.stub(...).GetProduct({})`, from before
      `Emulator(...)` to after the first reply, with a warm contract cache (after one untimed
      start in this process); the median of --reps starts. The cold first start is shown too.
  (b) the per-test overhead of the shared `emulator` fixture (both resets included): a generated
      file of --tests tests that take the fixture and do nothing, against the same tests without
      it, each run by `pytest -q -p no:cacheprovider` in a subprocess. Reported two ways: from
      the setup+teardown durations pytest records per test (fixture minus plain, median), and
      from the wall times ((t_fixture - t_plain) / N, median over --rounds alternating rounds).
      Also the median of one `emu.reset()` in this process.
  (c) the wall time of `pytest` over --call-tests generated tests that each make one call through
      the fixture (median over --rounds).
Prints a table and PASS/FAIL per target, writes bench/results/inprocess.json, exits 0 unless
the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# run.py re-executes with the venv's python when grpc is missing; importing it does the same here.
from run import HERE, REPO, machine_facts, verdicts

from emulator import Emulator

PROTOS = REPO / "protos"
SERVICE = "acme.shop.v1.Catalog"
TARGET_START_MS, TARGET_OVERHEAD_MS, TARGET_CALL_TESTS_S = 10.0, 2.0, 15.0
PYTEST_TIMEOUT = 300.0

INI = f"""\
[pytest]
emulator_protos = {PROTOS}
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# Records each test's setup and teardown durations, as pytest measured them.
CONFTEST = """\
import json
import os

_durations = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_DURATIONS"], "w") as f:
        json.dump(_durations, f)
"""


class BenchError(RuntimeError):
    """The benchmark itself broke (a pytest run failed, an RPC failed...)."""


# -- (a) start to first RPC -------------------------------------------------------------------


def start_to_first_rpc() -> float:
    t0 = time.perf_counter()
    with Emulator(protos=PROTOS) as emu:
        reply = emu.stub(SERVICE).GetProduct({})
        elapsed = time.perf_counter() - t0
    if not reply.ByteSize():
        raise BenchError("GetProduct returned an empty Product")
    return elapsed * 1000


def measure_start(reps: int) -> dict[str, Any]:
    cold = start_to_first_rpc()  # the first in this process: compiles or reads the disk cache
    times = [start_to_first_rpc() for _ in range(reps)]
    exits = []
    for _ in range(min(reps, 10)):  # how long leaving the `with` block takes, for reference
        emu = Emulator(protos=PROTOS).__enter__()
        emu.stub(SERVICE).GetProduct({})
        t0 = time.perf_counter()
        emu.__exit__(None, None, None)
        exits.append((time.perf_counter() - t0) * 1000)
    return {
        "first_start_ms": cold,
        "warm_median_ms": statistics.median(times),
        "warm_p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
        "warm_all_ms": [round(t, 2) for t in times],
        "exit_median_ms": statistics.median(exits),
    }


def measure_reset(reps: int = 2000) -> dict[str, float]:
    """One `emu.reset()` on a running emulator after one call, as the fixture does it."""
    times = []
    with Emulator(protos=PROTOS) as emu:
        stub = emu.stub(SERVICE)
        for _ in range(reps):
            stub.GetProduct({})
            t0 = time.perf_counter()
            emu.reset()
            times.append((time.perf_counter() - t0) * 1000)
    return {"reset_median_ms": statistics.median(times), "reset_p99_ms": _p(times, 0.99)}


# -- (b), (c) generated pytest sessions -------------------------------------------------------


def test_file(count: int, body: str, fixture: bool) -> str:
    arg = "emulator" if fixture else ""
    lines = [f"def test_{i}({arg}):\n    {body}\n" for i in range(count)]
    return "\n\n".join(lines)


CALL = f"emulator.stub({SERVICE!r}).GetProduct({{'product_id': 'p1'}})"


class Session:
    """A directory with pytest.ini, a timing conftest and one generated test file."""

    def __init__(self, root: Path, name: str, source: str) -> None:
        self.dir = root / name
        self.dir.mkdir()
        (self.dir / "pytest.ini").write_text(INI)
        (self.dir / "conftest.py").write_text(CONFTEST)
        (self.dir / f"test_{name}.py").write_text(source)
        self.name = name

    def run(self, env: dict[str, str]) -> tuple[float, dict[str, float]]:
        """Wall seconds of `pytest -q -p no:cacheprovider`, and per-test setup+teardown."""
        durations = self.dir / "durations.json"
        t0 = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=self.dir,
            env={**os.environ, **env, "BENCH_DURATIONS": str(durations)},
            capture_output=True,
            text=True,
            timeout=PYTEST_TIMEOUT,
            check=False,
        )
        wall = time.perf_counter() - t0
        if result.returncode != 0:
            raise BenchError(f"pytest {self.name} failed:\n{result.stdout[-3000:]}{result.stderr}")
        return wall, json.loads(durations.read_text())


def measure_sessions(tests: int, call_tests: int, rounds: int, work: Path) -> dict[str, Any]:
    env = {"GRPC_EMULATOR_CACHE_DIR": str(work / "cache")}
    sessions = {
        "plain": Session(work, "plain", test_file(tests, "pass", fixture=False)),
        "fixture": Session(work, "fixture", test_file(tests, "pass", fixture=True)),
        "calls": Session(work, "calls", test_file(call_tests, CALL, fixture=True)),
    }
    sessions["fixture"].run(env)  # warms the contract cache and the import caches, untimed
    walls: dict[str, list[float]] = {name: [] for name in sessions}
    per_test: dict[str, list[float]] = {name: [] for name in sessions}
    for number in range(rounds):
        names = list(sessions)
        for name in names[number % 3 :] + names[: number % 3]:  # rotate who goes first
            wall, durations = sessions[name].run(env)
            walls[name].append(wall)
            per_test[name].append(statistics.median(durations.values()) * 1000)
            print(f"  round {number + 1}/{rounds} {name:<8} {wall:6.2f} s", flush=True)
    wall_overheads = [
        (f - p) * 1000 / tests for f, p in zip(walls["fixture"], walls["plain"], strict=True)
    ]
    setup_overheads = [f - p for f, p in zip(per_test["fixture"], per_test["plain"], strict=True)]
    return {
        "tests": tests,
        "call_tests": call_tests,
        "wall_s": {name: [round(w, 3) for w in ws] for name, ws in walls.items()},
        "setup_teardown_median_ms": {
            name: [round(d, 4) for d in ds] for name, ds in per_test.items()
        },
        "overhead_wall_ms": statistics.median(wall_overheads),
        "overhead_setup_teardown_ms": statistics.median(setup_overheads),
        "call_tests_wall_s": statistics.median(walls["calls"]),
        "call_tests_per_test_ms": statistics.median(walls["calls"]) * 1000 / call_tests,
    }


# -- report -------------------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(start: dict[str, Any], reset: dict[str, float], sessions: dict[str, Any]) -> list[str]:
    n, m = sessions["tests"], sessions["call_tests"]
    print()
    print("in-process start: Emulator(protos) -> first GetProduct reply")
    print(f"  first start in process   {start['first_start_ms']:8.1f} ms")
    print(f"  warm, median             {start['warm_median_ms']:8.1f} ms")
    print(f"  warm, p90                {start['warm_p90_ms']:8.1f} ms")
    print(f"  leaving `with`, median   {start['exit_median_ms']:8.1f} ms")
    print("fixture, shared server")
    print(f"  emu.reset(), median      {reset['reset_median_ms']:8.3f} ms")
    print(f"  setup+teardown - plain   {sessions['overhead_setup_teardown_ms']:8.3f} ms per test")
    print(f"  wall (fixture - plain)/N {sessions['overhead_wall_ms']:8.3f} ms per test (N={n})")
    walls = sessions["wall_s"]
    print(
        f"  pytest wall, median      plain {statistics.median(walls['plain']):.2f} s, "
        f"fixture {statistics.median(walls['fixture']):.2f} s"
    )
    print(f"{m} tests with one call each")
    print(
        f"  pytest wall, median      {sessions['call_tests_wall_s']:8.2f} s "
        f"({sessions['call_tests_per_test_ms']:.2f} ms per test)"
    )
    overhead = max(sessions["overhead_setup_teardown_ms"], sessions["overhead_wall_ms"])
    checks = [
        (
            f"in-process start to first RPC <= {TARGET_START_MS:.0f} ms (warm cache)",
            start["warm_median_ms"] <= TARGET_START_MS,
            f"{start['warm_median_ms']:.1f} ms",
        ),
        (
            f"fixture overhead per test <= {TARGET_OVERHEAD_MS:.0f} ms (the larger of both ways)",
            overhead <= TARGET_OVERHEAD_MS,
            f"{overhead:.2f} ms",
        ),
        (
            f"{m} tests with one call <= {TARGET_CALL_TESTS_S:.0f} s",
            sessions["call_tests_wall_s"] <= TARGET_CALL_TESTS_S,
            f"{sessions['call_tests_wall_s']:.2f} s",
        ),
    ]
    return verdicts(checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50, help="timed in-process starts")
    parser.add_argument("--tests", type=int, default=500, help="tests for the overhead run")
    parser.add_argument("--call-tests", type=int, default=1000, help="tests that make a call")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pytest rounds")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "inprocess.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    os.environ["GRPC_EMULATOR_CACHE_DIR"] = str(work / "cache")  # this process and children
    meta = {
        "reps": args.reps,
        "rounds": args.rounds,
        **machine_facts(),
    }
    try:
        print("in-process start", flush=True)
        start = measure_start(args.reps)
        reset = measure_reset()
        print("generated pytest sessions", flush=True)
        sessions = measure_sessions(args.tests, args.call_tests, args.rounds, work)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checks = report(start, reset, sessions)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "start": start, "reset": reset, "pytest": sessions}
    args.output.write_text(json.dumps({**document, "checks": checks}, indent=2) + "\n")
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    print(f"\nwrote {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

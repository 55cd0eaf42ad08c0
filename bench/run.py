"""Benchmark: the emulator against a bare grpc.aio server on the same contract, in one run.

    python bench/run.py [--duration 5] [--rounds 3] [--startup-reps 5] [--python-load]
    make bench

Measures, on this machine and with one load generator (h2load when on PATH, else
bench/load_client.py in its own process), unary GetProduct throughput and latency at
concurrency 32 for: the bare server (bench/bare_server.py), the emulator with default
responses, and the emulator with a trivial async behaviour (bench/trivial_behavior.py).
Rounds alternate between the three so that machine noise hits all of them alike. Then
process start to first successful RPC (cold and warm contract cache) and idle RSS.
Prints a table and PASS/FAIL per target, writes bench/results/latest.json, exits 0 unless
the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

try:
    import grpc
except ImportError:  # `python bench/run.py` outside the venv: rerun with the venv's python
    # Compare environments, not binaries: the venv's python is a symlink to the system one.
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    raise

from loadgen import Load, LoadError, make_loadgen  # noqa: E402 - bench/ is sys.path[0]

METHOD = "/acme.shop.v1.Catalog/GetProduct"
REQUEST = b"\x0a\x05sku-1"  # GetProductRequest{product_id: "sku-1"}, field 1 length-delimited
TARGET_START_MS, TARGET_RSS_MB = 150.0, 60.0
TARGET_RATIO = {"emulator (defaults)": 0.90, "emulator + behaviour": 0.85}  # x bare RPS
START_TIMEOUT = 30.0

BARE = "bare grpc.aio"
EMULATOR = "emulator (defaults)"
BEHAVIOUR = "emulator + behaviour"


def machine_facts() -> dict[str, Any]:
    """What every results file says about where and when it was measured."""
    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class BenchError(RuntimeError):
    """The benchmark itself broke (a server did not start, a probe failed...)."""


def bare_cmd(gen_dir: Path) -> list[str]:
    return [sys.executable, str(HERE / "bare_server.py"), "--port", "0", "--gen-dir", str(gen_dir)]


def emulator_cmd(behaviour: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "emulator", "--proto", "protos", "--port", "0"]
    return [*cmd, "--behaviors", str(HERE / "trivial_behavior.py")] if behaviour else cmd


def port_of(line: str) -> int:
    """`42407` (bare) or `emulator listening on 127.0.0.1:42407` (emulator)."""
    return int(line.strip().rsplit(":", 1)[-1].split()[-1])


class Child:
    """A server process: started at `t0`, its stdout read by a thread, stderr kept in a file."""

    running: list[Child] = []  # noqa: RUF012 - every live child, for the final clean-up

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: TextIO = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        Child.running.append(self)
        threading.Thread(target=self._read, daemon=True).start()
        self.port = 0
        self.listening_ms = 0.0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_listening(self, timeout: float = START_TIMEOUT) -> int:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise BenchError(f"{self.name} did not start: {self.errors()}")
        self.listening_ms = (time.perf_counter() - self.t0) * 1000
        self.port = port_of(line)
        return self.port

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-2000:] or f"exit status {self.proc.poll()}"

    def rss_mb(self) -> dict[str, float]:
        fields: dict[str, float] = {}
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = row.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        if self in Child.running:
            Child.running.remove(self)


def first_rpc(port: int, timeout: float = START_TIMEOUT) -> float:
    """Call GetProduct until it succeeds; the perf_counter() of the first success."""
    served, reply = call_until_served(port, REQUEST, timeout, call_timeout=2.0)
    if not reply:
        raise BenchError(f"GetProduct on port {port} returned an empty Product")
    return served


def call_until_served(
    port: int, request: bytes, timeout: float = 60.0, call_timeout: float = 5.0
) -> tuple[float, bytes]:
    """Call GetProduct with `request` until it succeeds: the perf_counter() of the first
    success, and the reply."""
    deadline = time.perf_counter() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        while True:
            try:
                reply: bytes = call(request, timeout=call_timeout)
            except grpc.RpcError as exc:
                if time.perf_counter() > deadline:
                    raise BenchError(f"GetProduct on port {port} keeps failing: {exc}") from exc
                time.sleep(0.002)
                continue
            return time.perf_counter(), reply


def start(
    name: str, cmd: list[str], env: dict[str, str] | None = None, timeout: float = START_TIMEOUT
) -> Child:
    child = Child(name, cmd, env)
    try:
        child.wait_listening(timeout)
    except BaseException:
        child.stop()
        raise
    return child


# -- start-up and idle memory ------------------------------------------------------------------


def startup_once(name: str, cmd: list[str], env: dict[str, str] | None) -> dict[str, float]:
    child = start(name, cmd, env)
    try:
        ready = first_rpc(child.port)
        time.sleep(0.2)  # let the process settle before reading its idle RSS
        return {
            "first_rpc_ms": (ready - child.t0) * 1000,
            "listening_ms": child.listening_ms,
            "rss_mb": child.rss_mb()["VmRSS"],
        }
    finally:
        child.stop()


def compile_bytecode() -> None:
    """Compile the emulator's modules to bytecode, as `pip install` does for an installed
    package. With PYTHONDONTWRITEBYTECODE set (as on the CI machines) a source checkout would
    otherwise compile its ~100 modules again at every start (about 140 ms), while grpc and
    protobuf, the bare server's imports, load the bytecode pip wrote: that measures the checkout,
    not the emulator a user starts. Python still checks each file's mtime, so a stale one is
    never used."""
    import compileall

    compileall.compile_dir(REPO / "emulator", quiet=1)


def measure_startup(reps: int) -> dict[str, Any]:
    """Cold: a fresh cache (emulator) / fresh generated modules (bare); warm: the same again."""
    compile_bytecode()
    runs: dict[str, list[dict[str, float]]] = {}
    starters: dict[str, Callable[[Path], tuple[list[str], dict[str, str] | None]]] = {
        BARE: lambda d: (bare_cmd(d), None),
        EMULATOR: lambda d: (emulator_cmd(), {"GRPC_EMULATOR_CACHE_DIR": str(d)}),
    }
    for _ in range(reps):
        for name, starter in starters.items():
            with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
                for phase in ("cold", "warm"):
                    cmd, env = starter(Path(tmp) / "cache")
                    runs.setdefault(f"{name}/{phase}", []).append(startup_once(name, cmd, env))
    summary: dict[str, Any] = {}
    for key, values in runs.items():
        name, phase = key.split("/")
        entry = summary.setdefault(name, {})
        for metric in ("first_rpc_ms", "listening_ms"):
            entry[f"{phase}_{metric}"] = statistics.median(v[metric] for v in values)
            entry[f"{phase}_{metric}_all"] = [round(v[metric], 1) for v in values]
        if phase == "warm":
            entry["idle_rss_mb"] = statistics.median(v["rss_mb"] for v in values)
    return summary


# -- throughput ---------------------------------------------------------------------------------


def measure_load(loadgen: Any, rounds: int, cache: Path) -> dict[str, Any]:
    env = {"GRPC_EMULATOR_CACHE_DIR": str(cache)}
    children: dict[str, Child] = {}
    try:
        children[BARE] = start(BARE, bare_cmd(cache / "bare"))
        children[EMULATOR] = start(EMULATOR, emulator_cmd(), env)
        children[BEHAVIOUR] = start(BEHAVIOUR, emulator_cmd(behaviour=True), env)
        for child in children.values():
            first_rpc(child.port)
        per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in children}
        names = list(children)
        for number in range(rounds):
            for name in names[number % 3 :] + names[: number % 3]:  # rotate who goes first
                child = children[name]
                cpu = child.cpu_seconds()
                result = loadgen.run(child.port)
                result["server_cpu_us_per_req"] = (
                    (child.cpu_seconds() - cpu) * 1e6 / max(1, result["requests"])
                )  # includes the warm-up calls, so only comparable between variants
                result.update(child.rss_mb())
                first_rpc(child.port, timeout=5)  # still answering properly after the load
                per_round[name].append(result)
                print(
                    f"  round {number + 1}/{rounds} {name:<22} {result['rps']:>9.0f} req/s"
                    f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms",
                    flush=True,
                )
    finally:
        for child in children.values():
            child.stop()
    return per_round


def summarise_load(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: the round with the median RPS; ratios to bare within the same rounds."""
    bare = per_round[BARE]
    summary: dict[str, Any] = {}
    for name, results in per_round.items():
        ranked = sorted(results, key=lambda r: r["rps"])
        median = ranked[(len(ranked) - 1) // 2]  # the lower one of an even count
        ratios = [r["rps"] / b["rps"] for r, b in zip(results, bare, strict=True) if b["rps"]]
        summary[name] = {
            **median,
            "ratio_to_bare": statistics.median(ratios) if ratios else float("nan"),
            "ratios_per_round": [round(x, 3) for x in ratios],
            "rps_per_round": [round(r["rps"], 1) for r in results],
        }
    return summary


# -- report -------------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(load: dict[str, Any], startup: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}")
    print(
        f"GetProduct, concurrency {meta['concurrency']}, {meta['rounds']} alternating rounds of "
        f"{meta['duration']:g}s (+{meta['warmup']:g}s warm-up); the median round per variant"
    )
    head = f"{'variant':<22} {'RPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8} "
    print(head + f"{'CPU us/req':>10} {'resp B':>7} {'x bare':>7}")
    for name, r in load.items():
        print(
            f"{name:<22} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['VmRSS']:>8.1f} {r['server_cpu_us_per_req']:>10.0f} "
            f"{_num(r.get('response_bytes')):>7} {r['ratio_to_bare']:>7.2f}"
        )
    print()
    print(f"start-up: process start -> first successful GetProduct, median of {meta['reps']}")
    print(f"{'server':<22} {'cold ms':>8} {'warm ms':>8} {'listen ms':>10} {'idle RSS MB':>12}")
    for name, s in startup.items():
        print(
            f"{name:<22} {s['cold_first_rpc_ms']:>8.0f} {s['warm_first_rpc_ms']:>8.0f} "
            f"{s['cold_listening_ms']:>10.0f} {s['idle_rss_mb']:>12.1f}"
        )
    checks = [
        (
            f"{name} >= {TARGET_RATIO[name]}x bare RPS at c={meta['concurrency']}",
            load[name]["ratio_to_bare"] >= TARGET_RATIO[name],
            f"{load[name]['ratio_to_bare']:.2f}x",
        )
        for name in (EMULATOR, BEHAVIOUR)
    ]
    emu = startup[EMULATOR]
    checks.append(
        (
            f"emulator start to first RPC <= {TARGET_START_MS:.0f} ms (cold cache)",
            emu["cold_first_rpc_ms"] <= TARGET_START_MS,
            f"{emu['cold_first_rpc_ms']:.0f} ms",
        )
    )
    checks.append(
        (
            f"emulator idle RSS <= {TARGET_RSS_MB:.0f} MB",
            emu["idle_rss_mb"] <= TARGET_RSS_MB,
            f"{emu['idle_rss_mb']:.1f} MB",
        )
    )
    return verdicts(checks)


def verdicts(checks: list[tuple[str, bool, str]]) -> list[str]:
    """Print and return one PASS/FAIL line per (target, met, figure)."""
    print()
    lines = [f"{'PASS' if ok else 'FAIL'}  {what}: {got}" for what, ok, got in checks]
    print("\n".join(lines))
    return lines


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """Write a benchmark's results file and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"\nwrote {shown}")


def terminated(signum: int, frame: object) -> None:
    """SIGTERM as SystemExit, so that `finally` blocks stop every server."""
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating load rounds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connections", type=int, default=4, help="connections / channels")
    parser.add_argument("--startup-reps", type=int, default=5)
    parser.add_argument("--python-load", action="store_true", help="skip h2load even if present")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server

    load_shape = Load(
        METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup
    )
    loadgen = make_loadgen(load_shape, args.python_load)
    cache = Path(tempfile.mkdtemp(prefix="bench-run-"))
    meta = {
        "loadgen": loadgen.describe(),
        "loadgen_kind": loadgen.name,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "reps": args.startup_reps,
        **machine_facts(),
    }
    try:
        print(f"throughput ({loadgen.describe()})", flush=True)
        per_round = measure_load(loadgen, args.rounds, cache)
        print("start-up and idle memory", flush=True)
        startup = measure_startup(args.startup_reps)
    except (BenchError, LoadError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in list(Child.running):
            child.stop()
        loadgen.close()
        shutil.rmtree(cache, ignore_errors=True)
    load = summarise_load(per_round)
    checks = report(load, startup, meta)
    write_results(args.output, {"meta": meta, "load": load, "startup": startup, "checks": checks})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

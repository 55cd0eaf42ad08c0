"""A/B: this checkout's emulator against another checkout's, in one run, with h2load.

    .venv/bin/python bench/compare.py --source DIR [--rounds 8] [--behaviour]

`DIR` holds another version of the package (e.g. `git archive <commit> | tar -x -C DIR`). Both
emulators serve the bundled contracts (with bench/trivial_behavior.py when --behaviour) and take
alternating 4 s h2load rounds (32 streams); the medians of RPS and server CPU per call go to
stdout and bench/results/compare.json. Differences below the run-to-run spread (a few percent on
a shared 2-vCPU machine) are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from run import HERE, REPO, machine_facts

REQUEST = b"\x00\x00\x00\x00\x07\x0a\x05sku-1"  # one framed GetProductRequest{product_id: "sku-1"}
METHOD = "acme.shop.v1.Catalog/GetProduct"


def start(source: Path, behaviour: bool) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "emulator", "--proto", str(REPO / "protos"), "--port", "0"]
    if behaviour:
        args += ["--behaviors", str(HERE / "trivial_behavior.py")]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "PYTHONPATH": str(source)},
        cwd=tempfile.gettempdir(),  # never this checkout's package by accident
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("emulator listening on "):
        proc.kill()
        raise SystemExit(f"{source}: the emulator did not start")
    return proc, line.split()[-1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_of(proc: subprocess.Popen[str], target: str, body: Path) -> tuple[float, float]:
    before = cpu_seconds(proc.pid)
    load = ["h2load", "-c", "4", "-m", "8", "-t", "1", "-D", "4", "-d", str(body)]
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    out = subprocess.run(
        [*load, *headers, f"http://{target}/{METHOD}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
    rate = re.search(r"finished in .*?, ([0-9.]+) req/s", out)
    if done is None or rate is None or int(done.group(1)) == 0:
        raise SystemExit(f"h2load gave no result:\n{out}")
    return float(rate.group(1)), (cpu_seconds(proc.pid) - before) / int(done.group(1)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--behaviour", action="store_true", help="with a trivial behaviour")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("needs h2load (Debian's nghttp2-client)")
    with tempfile.TemporaryDirectory() as work:
        body = Path(work) / "request.bin"
        body.write_bytes(REQUEST)
        variants = {"this": REPO, "other": args.source.resolve()}
        servers = {name: start(path, args.behaviour) for name, path in variants.items()}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        try:
            for index in range(args.rounds):
                order = list(variants) if index % 2 == 0 else list(reversed(variants))
                for name in order:
                    results[name].append(round_of(*servers[name], body))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
    summary = {
        name: {
            "rps": statistics.median(r for r, _ in rounds),
            "cpu_us_per_call": statistics.median(c for _, c in rounds),
        }
        for name, rounds in results.items()
    }
    for name, figures in summary.items():
        print(f"{name:<6} {figures['rps']:>8.0f} RPS {figures['cpu_us_per_call']:>6.0f} µs/call")
    ratio = summary["this"]["rps"] / summary["other"]["rps"]
    print(f"this / other: {ratio:.2f}x RPS")
    out = HERE / "results" / "compare.json"
    out.parent.mkdir(exist_ok=True)
    meta = {**machine_facts(), "rounds": args.rounds, "behaviour": args.behaviour}
    out.write_text(json.dumps({"meta": meta, "results": summary, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()

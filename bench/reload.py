"""What a hot reload of the bundled contracts costs, against a cold `emulate check` of them.

    python bench/reload.py [--rounds 7]
    make bench-reload

One `emulate --proto protos/ --behaviors behaviors/` serves a copy of the bundled project; each
round adds a comment line to one of its .proto files (new content: compiled again, not taken
from the compile cache) and times an admin `Reload` from the request to its answer, then times
a cold `emulate check` of the same copy (a new process, with an empty compile cache of its own):
interpreter start, imports, compiling, loading the behaviours. The two alternate, round by
round, so machine noise hits both alike. Target: the median reload within 2x the median check.
Prints a table and PASS/FAIL, writes bench/results/reload-latest.json, exits 0 unless the
benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from rounds import write_results  # noqa: E402 - bench/ is sys.path[0]

# grpc through run.py: importing it re-executes this script under the venv when grpc is missing.
from run import BenchError, grpc, machine_facts, start, verdicts  # noqa: E402 - bench/ helpers

sys.path.insert(0, str(REPO))
from emulator.admin.descriptor import pb  # noqa: E402 - after the venv check

TARGET = 2.0


def reload_once(port: int) -> float:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/emulator.admin.v1.Admin/Reload",
            request_serializer=pb.ReloadRequest.SerializeToString,
            response_deserializer=pb.ReloadResult.FromString,
        )
        started = time.perf_counter()
        done = call(pb.ReloadRequest(), timeout=120)
        took = time.perf_counter() - started
    if done.services < 2:
        raise BenchError(f"the reload served {done.services} services: {done.message}")
    return took


def check_once(project: Path, cache: Path) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "check",
            "--proto",
            "protos",
            "--behaviors",
            "behaviors",
        ],
        cwd=project,
        env={"GRPC_EMULATOR_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"emulate check failed: {done.stderr}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reload-latest.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(REPO / "protos", project / "protos")
        shutil.copytree(REPO / "behaviors", project / "behaviors")
        touched = project / "protos" / "acme" / "shop" / "v1" / "catalog.proto"
        cmd = [sys.executable, "-m", "emulator", "--proto", str(project / "protos")]
        cmd += ["--behaviors", str(project / "behaviors"), "--port", "0"]
        child = start("emulator", cmd, {"GRPC_EMULATOR_CACHE_DIR": str(Path(tmp) / "served")})
        reloads: list[float] = []
        checks: list[float] = []
        try:
            for number in range(args.rounds):
                with touched.open("a") as out:
                    out.write(f"// round {number}: new content, compiled again\n")
                reloads.append(reload_once(child.port))
                checks.append(check_once(project, Path(tmp) / "check-cache"))
                print(
                    f"  round {number + 1}/{args.rounds}: reload {reloads[-1]:.3f} s, "
                    f"cold emulate check {checks[-1]:.3f} s",
                    flush=True,
                )
        finally:
            child.stop()
    reload_s, check_s = statistics.median(reloads), statistics.median(checks)
    ratio = reload_s / check_s
    summary: dict[str, Any] = {
        "reload_s": reload_s,
        "check_s": check_s,
        "ratio": ratio,
        "reloads": [round(x, 4) for x in reloads],
        "checks": [round(x, 4) for x in checks],
    }
    print()
    print(f"reload of the bundled contracts (admin Reload): median {reload_s:.3f} s")
    print(f"cold `emulate check` of them:                   median {check_s:.3f} s")
    checks_done = [
        (
            f"reload within {TARGET:g}x a cold emulate check",
            ratio <= TARGET,
            f"{ratio:.2f}x ({reload_s:.3f} vs {check_s:.3f} s)",
        )
    ]
    lines = verdicts(checks_done)
    meta = {"rounds": args.rounds, **machine_facts()}
    write_results(args.out, {"meta": meta, "summary": summary, "checks": lines})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load generators for bench/run.py: h2load (nghttp2-client) when on PATH, else load_client.py.

Both drive calls at a fixed total concurrency against 127.0.0.1 (unary GetProduct unless the
Load says otherwise: a server stream, or a bidi stream sending `messages` requests) and return
the same summary: requests, errors, rps, p50_ms, p99_ms, mean_ms (plus tool-specific extras).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class LoadError(RuntimeError):
    """The load generator failed or its output could not be read."""


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass(frozen=True)
class Load:
    """One load shape: `concurrency` in-flight calls of `method` with request bytes `body`."""

    method: str
    body: bytes
    concurrency: int = 32
    connections: int = 4
    duration: float = 5.0
    warmup: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()  # sent with every call (a session's header)
    kind: str = "unary"  # or "server-stream", "bidi": what load_client.py calls
    messages: int = 1  # request messages a call sends (bidi); each is `body`

    @property
    def streams_per_connection(self) -> int:
        return max(1, self.concurrency // self.connections)


class H2Load:
    """gRPC over h2c with h2load: a POST whose body is `messages` length-prefixed gRPC frames
    (one for unary and server-streaming calls); h2load reads the whole response stream."""

    name = "h2load"

    def __init__(self, path: str, load: Load) -> None:
        self.path = path
        self.load = load
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-h2load-"))
        self.body_file = self.workdir / "request.bin"
        frame = b"\x00" + len(load.body).to_bytes(4, "big") + load.body
        self.body_file.write_bytes(frame * load.messages)
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        self.version = version.stdout.strip() or "h2load"

    def describe(self) -> str:
        ld = self.load
        return (
            f"{self.version}: -c {ld.connections} -m {ld.streams_per_connection} "
            f"(= {ld.connections * ld.streams_per_connection} concurrent streams), -t 1"
        )

    def _run(self, port: int, duration: float, log: Path | None) -> str:
        ld = self.load
        cmd = [
            self.path,
            "-t1",
            f"-c{ld.connections}",
            f"-m{ld.streams_per_connection}",
            f"-D{round(duration * 1000)}ms",
            f"-d{self.body_file}",
            "-Hcontent-type: application/grpc",
            "-Hte: trailers",
            *(f"-H{key}: {value}" for key, value in ld.headers),
            f"http://127.0.0.1:{port}{ld.method}",
        ]
        if log is not None:
            cmd.insert(1, f"--log-file={log}")
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration + 30, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"h2load did not finish: {' '.join(cmd)}") from exc
        if done.returncode != 0:
            raise LoadError(f"h2load exited {done.returncode}: {done.stderr or done.stdout}")
        return done.stdout

    def run(self, port: int) -> dict[str, Any]:
        self._run(port, self.load.warmup, None)
        log = self.workdir / f"h2load-{port}.log"
        out = self._run(port, self.load.duration, log)
        return parse_h2load(out, log, self.load.duration)

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def parse_h2load(out: str, log: Path, duration: float) -> dict[str, Any]:
    finished = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    counts = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    traffic = re.search(r"traffic: .*?, [\d.]+\w*B \((\d+)\) data", out)
    if not (finished and counts and traffic):
        raise LoadError(f"cannot read h2load's output:\n{out}")
    succeeded = int(counts.group(3))
    errors = sum(int(counts.group(i)) for i in (4, 5, 6))
    # h2load sees HTTP 200 for every gRPC call, so an error status would show as a response
    # without a message: 5 bytes of frame prefix or nothing. Check the bytes per response.
    data_per_response = int(traffic.group(1)) / succeeded if succeeded else 0.0
    latencies = sorted(
        int(row.split("\t")[2]) / 1000.0
        for row in log.read_text().splitlines()
        if row.count("\t") >= 2 and row.split("\t")[1] == "200"
    )
    log.unlink(missing_ok=True)
    return {
        "requests": succeeded,
        "errors": errors,
        "rps": float(finished.group(1)),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "response_bytes": round(data_per_response, 1),
        "duration_s": duration,
    }


class PythonLoad:
    """bench/load_client.py in a separate process: grpc.aio coroutines over a few channels."""

    name = "python"

    def __init__(self, load: Load) -> None:
        self.load = load

    def describe(self) -> str:
        ld = self.load
        return (
            f"bench/load_client.py (grpc.aio, separate process): {ld.concurrency} coroutines "
            f"over {ld.connections} channels"
        )

    def run(self, port: int) -> dict[str, Any]:
        ld = self.load
        cmd = [
            sys.executable,
            str(HERE / "load_client.py"),
            f"--target=127.0.0.1:{port}",
            f"--method={ld.method}",
            f"--body-hex={ld.body.hex()}",
            f"--concurrency={ld.concurrency}",
            f"--channels={ld.connections}",
            f"--duration={ld.duration:g}",
            f"--warmup={ld.warmup:g}",
            *(f"--header={key}:{value}" for key, value in ld.headers),
            f"--kind={ld.kind}",
            f"--messages={ld.messages}",
        ]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=ld.duration + ld.warmup + 30,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError("load_client.py did not finish") from exc
        if done.returncode != 0:
            raise LoadError(f"load_client.py exited {done.returncode}: {done.stderr}")
        try:
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise LoadError(f"cannot read load_client.py's output: {done.stdout!r}") from exc
        result["duration_s"] = ld.duration
        return result

    def close(self) -> None:
        pass


def make_loadgen(load: Load, force_python: bool) -> H2Load | PythonLoad:
    path = None if force_python else shutil.which("h2load")
    if path is None:
        return PythonLoad(load)
    return H2Load(path, load)

"""Benchmark: what big calls and long streams leave in an emulator's memory, against its idle RSS.

    .venv/bin/python bench/memory.py [--calls 300] [--messages 300000] [--source DIR]

Starts `emulate --port 0 --config ...` as its own process for each workload and reads its RSS
from /proc: idle (after start and one small call), then after the workload:

- unary, with `journal.limit: 1` and with the default journal: `--calls` distinct GetProduct
  calls of 4,000,000 bytes each (just under grpc's default 4 MiB receive limit, so no channel or
  server option changes; the default echoes product_id, so each response is as big);
- stream, with the default journal (one call: its limit does not matter): one ListProducts
  server stream of `--messages` messages of ~1 KiB, from a behaviour written to a temporary
  directory.

Memory does not vary from round to round the way throughput does, so one round is the default.
`--source DIR` runs the emulator from another checkout (the one before a change, say) with the
same client. Prints a table, writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# grpc through run.py: importing it re-executes this script under the venv when grpc is missing.
from run import BenchError, Child, first_rpc, grpc, start, terminated  # noqa: E402 - bench/

UNARY = "/acme.shop.v1.Catalog/GetProduct"
STREAM = "/acme.shop.v1.Catalog/ListProducts"
REQUEST_BYTES = 4_000_000  # under grpc's 4 MiB (4,194,304) default receive limit, with headroom
PAD = 1_000  # description bytes per streamed message: ~1 KiB each on the wire

BEHAVIOUR = f'''
from emulator import Behavior

PAD = "d" * {PAD}


class Stream(Behavior):
    """ListProducts streams `page.page_size` messages of about 1 KiB."""

    service = "acme.shop.v1.Catalog"

    async def ListProducts(self, request, ctx):
        product = ctx.method.output_class
        for index in range(request.page.page_size):
            yield product(product_id=f"p{{index:07d}}", description=PAD)
'''

JOURNALS: dict[str, dict[str, Any]] = {
    "journal.limit 1": {"limit": 1},
    "default journal": {},
}
WORKLOADS = [
    ("unary", "journal.limit 1"),
    ("unary", "default journal"),
    ("stream", "default journal"),
]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: how strings and sub-messages travel."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def big_request(index: int) -> bytes:
    """GetProductRequest{product_id: "000042xxx..."}, REQUEST_BYTES long, distinct per index."""
    size = REQUEST_BYTES - 1 - len(_varint(REQUEST_BYTES))
    data = _field(1, f"{index:06d}".encode() + b"x" * (size - 6))
    assert len(data) == REQUEST_BYTES
    return data


def stream_request(messages: int) -> bytes:
    """ListProductsRequest{page: {page_size: messages}}."""
    return _field(2, _varint(1 << 3 | 0) + _varint(messages))


def emulator_cmd(source: Path, config: Path, behaviours: Path) -> list[str]:
    # `-c` rather than `-m emulator`, so that the package comes from `source` and not from the
    # checkout installed in the venv.
    code = f"import sys; sys.path.insert(0, {str(source)!r}); from emulator.cli import main; "
    code += "raise SystemExit(main())"
    return [
        sys.executable,
        "-c",
        code,
        "--proto",
        str(source / "protos"),
        "--behaviors",
        str(behaviours),
        "--config",
        str(config),
        "--port",
        "0",
    ]


def run_unary(port: int, calls: int) -> dict[str, float]:
    started = time.perf_counter()
    sent = received = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(UNARY)
        for index in range(calls):
            request = big_request(index)
            reply = call(request, timeout=60)
            sent += len(request)
            received += len(reply)
    return {
        "calls": calls,
        "sent_mb": sent / 1e6,
        "received_mb": received / 1e6,
        "seconds": time.perf_counter() - started,
    }


def run_stream(port: int, messages: int) -> dict[str, float]:
    started = time.perf_counter()
    count = received = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for reply in channel.unary_stream(STREAM)(stream_request(messages), timeout=300):
            count += 1
            received += len(reply)
    if count != messages:
        raise BenchError(f"the stream sent {count} messages, expected {messages}")
    return {
        "messages": count,
        "mean_message_bytes": received / count if count else 0.0,
        "received_mb": received / 1e6,
        "seconds": time.perf_counter() - started,
    }


def measure(
    source: Path, work: Path, journal_name: str, workload: str, args: argparse.Namespace
) -> dict[str, Any]:
    config = work / f"{journal_name.replace(' ', '-').replace('.', '-')}.yaml"
    journal = JOURNALS[journal_name]
    config.write_text(
        "journal:\n" + "".join(f"  {k}: {v}\n" for k, v in journal.items()) if journal else ""
    )
    child = start(f"emulator ({journal_name})", emulator_cmd(source, config, work / "behaviors"))
    try:
        first_rpc(child.port)
        time.sleep(0.2)  # let the process settle before reading its idle RSS
        idle = child.rss_mb()
        if workload == "unary":
            detail = run_unary(child.port, args.calls)
        else:
            detail = run_stream(child.port, args.messages)
        after = child.rss_mb()
        if child.proc.poll() is not None:
            raise BenchError(f"the emulator exited: {child.errors()}")
    finally:
        child.stop()
    return {
        "journal": journal_name,
        "workload": workload,
        "idle_rss_mb": idle["VmRSS"],
        "after_rss_mb": after["VmRSS"],
        "grown_mb": after["VmRSS"] - idle["VmRSS"],
        "peak_rss_mb": after["VmHWM"],
        **detail,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="distinct 4 MB unary calls")
    parser.add_argument("--messages", type=int, default=300_000, help="streamed ~1 KiB messages")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each measure; medians")
    parser.add_argument("--source", type=Path, default=REPO, help="checkout to run emulate from")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "memory.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server
    source = args.source.resolve()

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        (work / "behaviors").mkdir()
        (work / "behaviors" / "stream_behavior.py").write_text(BEHAVIOUR)
        try:
            for round_ in range(args.rounds):
                for workload, journal_name in WORKLOADS:
                    print(f"round {round_ + 1}: {workload}, {journal_name}", flush=True)
                    runs.append(measure(source, work, journal_name, workload, args))
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            for child in list(Child.running):
                child.stop()

    results = []
    for workload, journal_name in WORKLOADS:
        mine = [r for r in runs if r["workload"] == workload and r["journal"] == journal_name]
        summary = {
            key: statistics.median(r[key] for r in mine)
            for key in mine[0]
            if isinstance(mine[0][key], int | float)
        }
        results.append({"workload": workload, "journal": journal_name, **summary})

    print(
        f"\n{'workload':<8} {'journal':<16} {'idle MB':>8} {'after MB':>9} {'grown MB':>9} "
        f"{'peak MB':>8} {'seconds':>8}"
    )
    for r in results:
        print(
            f"{r['workload']:<8} {r['journal']:<16} {r['idle_rss_mb']:>8.1f} "
            f"{r['after_rss_mb']:>9.1f} {r['grown_mb']:>9.1f} {r['peak_rss_mb']:>8.1f} "
            f"{r['seconds']:>8.1f}"
        )
    meta = {
        "source": str(source),
        "calls": args.calls,
        "request_bytes": REQUEST_BYTES,
        "messages": args.messages,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "machine": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"meta": meta, "results": results, "runs": runs}, indent=2))
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    print(f"\nwrote {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

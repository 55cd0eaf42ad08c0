"""What full telemetry costs a call: traces exported to a local OTLP receiver, metrics and an
access log to a file, against the same emulator with telemetry off, in one run; and full
telemetry with the request id sent back in the trailers (`telemetry.request_id_response`).

    python bench/telemetry.py [--rounds 8] [--duration 2]
    make bench-telemetry

Both emulators are started afresh each round (bench/rounds.py), alternating which goes first;
the load generator of bench/run.py drives unary GetProduct at concurrency 32. The receiver is
opentelemetry-proto's TraceService, served by this process, counting the spans it is sent.
Target: full telemetry >= 0.7x the throughput with it off (the median of per-round ratios),
judged both ways the request id can go back (headers, the default, cost grpc.aio a batch).
Prints a table and PASS/FAIL, writes bench/results/telemetry.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from loadgen import Load, LoadError, make_loadgen  # noqa: E402 - bench/ is sys.path[0]
from rounds import (  # noqa: E402
    Variant,
    load_parser,
    medians,
    pinned,
    print_ratio,
    ratio_summary,
    ratios,
    run_meta,
    run_rounds,
    write_results,
)
from run import (  # noqa: E402 - bench/ helpers (and grpc, under the venv)
    METHOD,
    REQUEST,
    BenchError,
    Child,
    emulator_cmd,
    first_rpc,
    grpc,
    terminated,
    verdicts,
)

TARGET_RATIO = 0.70
OFF = "telemetry off"
FULL = "full telemetry"
# The same with the request id sent back in the trailers (`telemetry.request_id_response`):
# grpc.aio sends headers of a call's own in a batch of their own; trailers go with the status.
TRAILERS = "full, id in trailers"


class Receiver:
    """An OTLP/gRPC trace receiver that counts the spans exported to it."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.spans = 0
        lock = threading.Lock()
        outer = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    outer.spans += n
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def write_config(folder: Path, receiver: int) -> tuple[Path, Path]:
    """emulator.yaml with everything on; the access log's path and the config's."""
    access, config = folder / "access.jsonl", folder / "emulator.yaml"
    telemetry = {
        "traces": {"endpoint": f"http://127.0.0.1:{receiver}"},
        "metrics": {"port": 0},
    }
    log = {"access": "all", "access_file": str(access)}
    config.write_text(json.dumps({"telemetry": telemetry, "log": log}))  # JSON is YAML
    return access, config


def main() -> int:
    parser = load_parser(__doc__, 8, 2.0, HERE / "results" / "telemetry.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)

    prefix, others = pinned(args.no_pin)  # the load generator and the receiver inherit it
    shape = Load(METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup)
    loadgen = make_loadgen(shape, args.python_load)
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        access, config = write_config(Path(tmp), receiver.port)
        env = {"GRPC_EMULATOR_CACHE_DIR": str(Path(tmp) / "cache")}

        def ready(child: Child) -> None:
            first_rpc(child.port)

        after = lambda child: first_rpc(child.port, timeout=5)  # noqa: E731
        variants = [
            Variant(OFF, [*prefix, *emulator_cmd()], ready, after, env),
            Variant(FULL, [*prefix, *emulator_cmd(), "--config", str(config)], ready, after, env),
            Variant(
                TRAILERS,
                [*prefix, *emulator_cmd(), "--config", str(config)],
                ready,
                after,
                {**env, "EMULATOR_TELEMETRY_REQUEST_ID_RESPONSE": "trailers"},
            ),
        ]
        print(f"throughput ({loadgen.describe()})", flush=True)
        try:
            per_round = run_rounds(variants, args.rounds, loadgen, width=21, rps_width=9)
        except (BenchError, LoadError) as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            loadgen.close()
            for child in list(Child.running):
                child.stop()
        logged = sum(1 for _ in access.open()) if access.exists() else 0
    receiver.server.stop(0)
    if not receiver.spans or not logged:
        print("bench: error: no spans reached the receiver or no access lines were written")
        return 1
    keys = ("rps", "server_cpu_us_per_req")
    summary: dict[str, Any] = {name: medians(r, keys) for name, r in per_round.items()}
    summary.update(ratio_summary(ratios(per_round[FULL], per_round[OFF], "rps")))
    summary["trailers"] = ratio_summary(ratios(per_round[TRAILERS], per_round[OFF], "rps"))
    summary.update(spans_received=receiver.spans, access_lines=logged)
    return report(per_round, summary, run_meta(args, loadgen, prefix, others), args)


def report(
    per_round: dict[str, list[dict[str, Any]]],
    summary: dict[str, Any],
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> int:
    ratio = summary["ratio"]
    print()
    for name in (OFF, FULL, TRAILERS):
        r = summary[name]
        print(f"{name:<21} {r['rps']:>8.0f} RPS  {r['server_cpu_us_per_req']:>6.0f} us CPU/call")
    print_ratio("full / off", summary)
    print_ratio("full, id in trailers / off", summary["trailers"])
    print(f"spans received: {summary['spans_received']}; access lines: {summary['access_lines']}")
    trailers = summary["trailers"]["ratio"]
    target = f">= {TARGET_RATIO:.2f}x the throughput with it off"
    checks = verdicts(
        [
            (
                f"full telemetry, request id in trailers {target}",
                trailers >= TARGET_RATIO,
                f"{trailers:.3f}x",
            ),
            # The default: grpc.aio sends a call's own headers in a batch of their own.
            (
                f"full telemetry, request id in headers (the default) {target}",
                ratio >= TARGET_RATIO,
                f"{ratio:.3f}x",
            ),
        ]
    )
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

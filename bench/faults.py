"""What 20 fault rules that match nothing cost, against the same emulator without rules, in one run.

    python bench/faults.py [--rounds 12] [--duration 1.5] [--python-load]

Two emulator processes serve the example contracts: one without faults, one with a config of 20
fault rules that never fire on GetProduct: 16 name other methods, 4 name GetProduct but match a
header the load never sends (so those are looked at on every call). The load generator of
bench/run.py (h2load when on PATH, else bench/load_client.py) drives unary GetProduct at
concurrency 32 against each, alternating which goes first. Target: with the rules, throughput
>= 0.95x without (the median of the per-round ratios). Prints a table and PASS/FAIL, writes
bench/results/faults.json, exits 0 unless the benchmark itself breaks.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from loadgen import Load, LoadError, make_loadgen  # noqa: E402 - bench/ is sys.path[0]
from rounds import (  # noqa: E402
    Variant,
    load_parser,
    pinned,
    print_ratio,
    run_meta,
    run_rounds,
    two_way,
    write_results,
)

# grpc through run.py: importing it re-executes this script under the venv when grpc is missing.
from run import (  # noqa: E402 - bench/ helpers
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

TARGET_RATIO = 0.95
PLAIN = "no fault rules"
RULES = "20 idle fault rules"
OTHER_METHODS = [
    "acme.shop.v1.Catalog/ListProducts",
    "acme.shop.v1.Catalog/UpdateProduct",
    "acme.shop.v1.Catalog/GetCategoryTree",
    "acme.shop.v1.Orders/CreateOrder",
    "acme.shop.v1.Orders/UploadLineItems",
    "acme.shop.v1.Orders/Chat",
    "acme.shop.v1.Orders/WatchOrder",
    "acme.shop.v1.Orders/Ping",
]
PROBE = "/acme.shop.v1.Orders/Ping"  # with x-bench-probe: the one call a rule answers


def rules() -> list[dict[str, Any]]:
    """20 rules: none fires on GetProduct; `probe` proves the file was loaded."""
    out: list[dict[str, Any]] = [
        {
            "name": "probe",
            "match": {"method": PROBE.lstrip("/"), "metadata": {"x-bench-probe": "yes"}},
            "abort": {"code": "FAILED_PRECONDITION", "message": "probe"},
        }
    ]
    kinds = [
        {"abort": {"code": "UNAVAILABLE"}},
        {"delay": {"fixed": "200ms"}},
        {"abort": {"code": "UNAVAILABLE"}, "when": {"probability": 0.5}},
        {"deadline": "exceed"},
    ]
    for i in range(15):  # other methods
        method = OTHER_METHODS[i % len(OTHER_METHODS)]
        out.append({"name": f"other-{i}", "match": {"method": method}, **kinds[i % len(kinds)]})
    for i in range(4):  # GetProduct itself, behind a header the load never sends
        out.append(
            {
                "name": f"header-{i}",
                "match": {"method": METHOD.lstrip("/"), "metadata": {f"x-never-{i}": "1"}},
                **kinds[i % len(kinds)],
            }
        )
    assert len(out) == 20
    return out


def check_rules_loaded(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary(PROBE)(b"", metadata=[("x-bench-probe", "yes")], timeout=5)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return
            raise BenchError(f"the probe rule answered {exc.code().name}") from exc
        raise BenchError("the rules emulator did not apply its probe rule: config not loaded?")


def measure(
    loadgen: Any, rounds: int, config: Path, prefix: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Both servers started afresh each round, one at a time (see bench/rounds.py)."""
    env = {"GRPC_EMULATOR_CACHE_DIR": str(config.parent / "cache")}

    def ready(child: Child) -> None:
        first_rpc(child.port)

    def ready_with_rules(child: Child) -> None:
        first_rpc(child.port)
        check_rules_loaded(child.port)

    after = lambda child: first_rpc(child.port, timeout=5)  # noqa: E731
    variants = [
        Variant(PLAIN, [*prefix, *emulator_cmd()], ready, after, env),
        Variant(
            RULES, [*prefix, *emulator_cmd(), "--config", str(config)], ready_with_rules, after, env
        ),
    ]
    return run_rounds(variants, rounds, loadgen, width=20, rps_width=9)


def interceptor_cost(calls: int = 100_000) -> dict[str, float]:
    """The faults interceptor's own time per GetProduct call, in this process, without and with
    the 20 rules: the part of the difference that is not noise."""
    import asyncio

    sys.path.insert(0, str(REPO))
    from emulator.call import Call
    from emulator.config import Config
    from emulator.contracts import load_contracts
    from emulator.faults.setup import build_faults

    contracts = load_contracts([str(REPO / "protos")], [])
    spec = contracts.methods[METHOD]
    metadata = (("user-agent", "h2load"), ("content-type", "application/grpc"), ("te", "trailers"))

    async def per_call(config: Config) -> float:
        faults = build_faults(config)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(calls):
                call = Call(spec, metadata, "ipv4:127.0.0.1:1", None)
                await faults.before(call)
                faults.after(call)
            best = min(best, (time.perf_counter() - started) / calls * 1e6)
        return best

    plain = asyncio.run(per_call(Config.from_mapping({})))
    ruled = asyncio.run(per_call(Config.from_mapping({"faults": rules()})))
    return {"without_us": plain, "with_us": ruled, "extra_us": ruled - plain}


def summarise(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return two_way(per_round, PLAIN, RULES, ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req"))


def report(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}; CPU pinning: {meta['pinning']}")
    print(
        f"GetProduct, concurrency {meta['concurrency']}, {meta['rounds']} alternating rounds of "
        f"{meta['duration']:g}s (+{meta['warmup']:g}s warm-up); medians over rounds"
    )
    print(f"{'variant':<20} {'RPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}  RPS/round")
    for name in (PLAIN, RULES):
        r = summary[name]
        rounds = " ".join(f"{x:.0f}" for x in r["rps_per_round"])
        print(
            f"{name:<20} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['server_cpu_us_per_req']:>11.0f}  {rounds}"
        )
    print_ratio("rules / none", summary)
    cost = summary["interceptor"]
    share = cost["extra_us"] / summary[PLAIN]["server_cpu_us_per_req"]
    print(
        f"faults interceptor in-process: {cost['without_us']:.2f} us/call without rules, "
        f"{cost['with_us']:.2f} us with the 20 (+{cost['extra_us']:.2f} us, {share:.1%} of the "
        "server CPU per call)"
    )
    checks = [
        (
            f"with 20 idle rules >= {TARGET_RATIO:.2f}x the throughput without",
            summary["ratio"] >= TARGET_RATIO,
            f"{summary['ratio']:.3f}x (server CPU per call: {summary['cpu_ratio']:.3f}x)",
        )
    ]
    return verdicts(checks)


def main() -> int:
    parser = load_parser(__doc__, 12, 1.5, HERE / "results" / "faults.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops both servers

    prefix, others = pinned(args.no_pin)
    shape = Load(METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup)
    loadgen = make_loadgen(shape, args.python_load)
    meta = run_meta(args, loadgen, prefix, others)
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        config = Path(tmp) / "emulator.yaml"
        # JSON is YAML; protos come from --proto on the command line.
        config.write_text(json.dumps({"faults": rules()}, indent=1))
        print(f"throughput ({loadgen.describe()})", flush=True)
        try:
            per_round = measure(loadgen, args.rounds, config, prefix)
        except (BenchError, LoadError) as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            loadgen.close()
            for child in list(Child.running):
                child.stop()
    summary = summarise(per_round)
    summary["interceptor"] = interceptor_cost()
    checks = report(summary, meta)
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What declarative stubs cost a unary call: many on the called method, many on other methods.

    python bench/stubs.py [--rounds 8] [--duration 2] [--no-pin] [--python-load]
    make bench-stubs

Emulator processes serve protos/ and take unary GetProduct {product_id: "p500"} at concurrency
32 from the load generator of bench/run.py (h2load when on PATH, else bench/load_client.py):

- `defaults`: no stubs, the default response (the baseline);
- `1k on method`: 1,000 stubs on GetProduct, `match: {request: {product_id: pN}}` (N = 0..999),
  `respond: {message: {name: "stub N"}}` merged onto the default; target >= 0.8x defaults;
- `10 elsewhere`: 10 stubs on the other methods of acme.shop.v1, plus one GetProduct stub for p500;
- `10k elsewhere`: 10,000 such stubs plus the same one: a call looks at its own method's stubs
  only, so the target is >= 0.9x `10 elsewhere`;
- `1k regex`: the 1,000 stubs of `1k on method` matching `{regex: "^pN$"}`, which no index
  serves: what a linear scan of 501 stubs costs (information, no target).

The stub files are YAML in a temporary folder, served with `--stubs DIR`. Each round starts
every variant afresh, one at a time, in an order that rotates (as bench/faults.py does), so each
start is also a start-up measurement: process start to the first GetProduct a stub answered.
Ratios are per round against `defaults` of the same round, then the median. Prints a table and
PASS/FAIL, writes bench/results/stubs-latest.json, exits 0 unless the benchmark itself breaks.
"""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

from loadgen import Load, LoadError, make_loadgen  # noqa: E402 - bench/ is sys.path[0]
from rounds import (  # noqa: E402
    Variant,
    load_parser,
    medians,
    pinned,
    ratios,
    run_meta,
    run_rounds,
    write_results,
)

# grpc through run.py: importing it re-executes this script under the venv when grpc is missing.
from run import (  # noqa: E402 - bench/ helpers
    METHOD,
    BenchError,
    Child,
    call_until_served,
    emulator_cmd,
    grpc,
    terminated,
    verdicts,
)

REQUEST = b"\x0a\x04p500"  # GetProductRequest{product_id: "p500"}, field 1 length-delimited
GET_PRODUCT = METHOD.lstrip("/")
TARGET_ON_METHOD = 0.80  # x defaults
TARGET_ELSEWHERE = 0.90  # 10,000 elsewhere x 10 elsewhere
START_TIMEOUT = 180.0  # 10,000 stubs take seconds to load, more on a busy machine

DEFAULTS = "defaults"
ON_METHOD = "1k on method"
FEW_ELSEWHERE = "10 elsewhere"
MANY_ELSEWHERE = "10k elsewhere"
REGEX = "1k regex"
VARIANTS = (DEFAULTS, ON_METHOD, FEW_ELSEWHERE, MANY_ELSEWHERE, REGEX)

# The other methods of acme.shop.v1, each with the request field its stubs match on and the
# response they give (a stream for server streams; bidi answers each inbound message).
OTHERS: list[tuple[str, str, str, bool]] = [
    ("acme.shop.v1.Catalog/ListProducts", "category_id", "name", True),
    ("acme.shop.v1.Catalog/UpdateProduct", "product.product_id", "name", False),
    ("acme.shop.v1.Catalog/GetCategoryTree", "root_category_id", "name", False),
    ("acme.shop.v1.Orders/CreateOrder", "customer_id", "order_id", False),
    ("acme.shop.v1.Orders/UploadLineItems", "product_id", "item_count", False),
    ("acme.shop.v1.Orders/Chat", "order_id", "text", False),
    ("acme.shop.v1.Orders/WatchOrder", "order_id", "note", True),
]
# Stub 3 of the others is a CreateOrder one: the probe that proves the files were loaded.
PROBE = ("/acme.shop.v1.Orders/CreateOrder", b"\x0a\x02k3", b"stub-3")


# -- the stub files ------------------------------------------------------------------------------


def _yaml(value: Any) -> str:
    """A scalar as YAML: JSON strings and numbers are YAML too."""
    return json.dumps(value)


def get_product_stubs(count: int, *, regex: bool) -> Iterator[str]:
    for n in range(count):
        cond = f'{{regex: "^p{n}$"}}' if regex else f"p{n}"
        yield (
            f"- name: get-product-{n}\n"
            f"  method: {GET_PRODUCT}\n"
            f"  match:\n    request:\n      product_id: {cond}\n"
            f'  respond:\n    message: {{name: "stub {n}"}}\n'
        )


def other_stubs(count: int) -> Iterator[str]:
    for n in range(count):
        method, field, out, stream = OTHERS[n % len(OTHERS)]
        value: Any = {"item_count": n, "order_id": f"stub-{n}"}.get(out, f"stub {n}")
        message = f"{{{out}: {_yaml(value)}}}"
        respond = (
            f"    stream:\n      - message: {message}\n" if stream else f"    message: {message}\n"
        )
        yield (
            f"- name: other-{n}\n"
            f"  method: {method}\n"
            f"  match:\n    request:\n      {field}: k{n}\n"
            f"  respond:\n{respond}"
        )


def the_p500_stub() -> str:
    return (
        f"- name: get-product-p500\n  method: {GET_PRODUCT}\n"
        "  match:\n    request:\n      product_id: p500\n"
        '  respond:\n    message: {name: "stub 500"}\n'
    )


def write_stubs(root: Path) -> dict[str, Path | None]:
    """A folder of stub files per variant (None: no --stubs)."""
    files: dict[str, list[str]] = {
        ON_METHOD: list(get_product_stubs(1000, regex=False)),
        FEW_ELSEWHERE: [*other_stubs(10), the_p500_stub()],
        MANY_ELSEWHERE: [*other_stubs(10_000), the_p500_stub()],
        REGEX: list(get_product_stubs(1000, regex=True)),
    }
    folders: dict[str, Path | None] = {DEFAULTS: None}
    for name, stubs in files.items():
        folder = root / name.replace(" ", "-")
        folder.mkdir()
        (folder / "stubs.yaml").write_text("".join(stubs))
        folders[name] = folder
    return folders


# -- one run -------------------------------------------------------------------------------------


def check_answers(name: str, port: int, reply: bytes) -> None:
    """The variant serves what it says: the p500 stub (or the default), and the other stubs."""
    stubbed = b"stub 500" in reply
    if stubbed != (name != DEFAULTS):
        raise BenchError(f"{name}: GetProduct p500 answered {reply[:80]!r}")
    if name in (FEW_ELSEWHERE, MANY_ELSEWHERE):
        method, body, expect = PROBE
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = channel.unary_unary(method)(body, timeout=5.0)
        if expect not in answer:
            raise BenchError(f"{name}: {method} did not answer from its stub: {answer[:80]!r}")


def measure(
    loadgen: Any, rounds: int, folders: dict[str, Path | None], cache: Path, prefix: list[str]
) -> dict[str, list[dict[str, Any]]]:
    env = {"GRPC_EMULATOR_CACHE_DIR": str(cache)}
    variants = []
    for name in VARIANTS:
        folder = folders[name]
        cmd = [*prefix, *emulator_cmd()]
        if folder is not None:
            cmd += ["--stubs", str(folder)]

        def ready(child: Child, name: str = name) -> float:
            served, reply = call_until_served(child.port, REQUEST)
            check_answers(name, child.port, reply)
            return served

        after = lambda child: call_until_served(child.port, REQUEST, timeout=5)  # noqa: E731
        variants.append(Variant(name, cmd, ready, after, env))
    return run_rounds(variants, rounds, loadgen, timeout=START_TIMEOUT)


def responder_cost(
    folders: dict[str, Path | None], calls: int = 20_000, seconds: float = 0.2, rounds: int = 5
) -> dict[str, float]:
    """Per variant, the microseconds a GetProduct p500 call spends choosing and building its
    answer, in this process (the best of 5 rounds): the responders the server asks, without grpc
    or the rest of the call, so the part of the difference between variants that is not noise."""
    import datetime

    sys.path.insert(0, str(REPO))
    from emulator.behavior.defaults import DefaultResponses
    from emulator.call import Call
    from emulator.config import Config
    from emulator.contracts import load_contracts
    from emulator.respond import Exchange
    from emulator.respond.defaults import DefaultResponder
    from emulator.respond.stubs import StubResponder
    from emulator.stubs.files import load_stubs
    from emulator.stubs.store import StubSet

    contracts = load_contracts([str(REPO / "protos")], [])
    spec = contracts.methods[METHOD]
    metadata = (("user-agent", "h2load"), ("content-type", "application/grpc"), ("te", "trailers"))
    defaults = DefaultResponses.from_config(contracts, Config.from_mapping({}))
    default = DefaultResponder(defaults)
    anchor = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    chains = {
        name: (
            StubResponder(
                StubSet(load_stubs([folder] if folder else [], contracts)),
                defaults,
                [default],
                seed=0,
                clock=lambda: anchor,
            ),
            default,
        )
        for name, folder in folders.items()
    }

    def per_call(chain: tuple[Any, ...], count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            call = Call(spec, metadata, "ipv4:127.0.0.1:1", None)
            call.requests.append(REQUEST)
            answer = next(a for r in chain if (a := r.pick(call)) is not None)
            data = answer(Exchange(call, None, None, request=REQUEST))  # type: ignore[arg-type]
            assert isinstance(data, bytes)
        return (time.perf_counter() - started) / count

    # About `seconds` a run, at most `calls` calls (a linear scan is a thousand times slower);
    # the variants take turns, round by round, and each keeps its best round.
    counts = {
        name: max(100, min(calls, int(seconds / per_call(chain, 100))))
        for name, chain in chains.items()
    }
    out = {name: float("inf") for name in chains}
    for _ in range(rounds):
        for name, chain in chains.items():
            out[name] = min(out[name], per_call(chain, counts[name]) * 1e6)
    return out


# -- summary and report --------------------------------------------------------------------------


MEDIANS = (
    "rps",
    "p50_ms",
    "p99_ms",
    "server_cpu_us_per_req",
    "listening_ms",
    "first_rpc_ms",
    "VmRSS",
    "response_bytes",
)


def summarise(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, results in per_round.items():
        per = ratios(results, per_round[DEFAULTS], "rps")
        summary[name] = medians(results, MEDIANS)
        summary[name]["ratio_to_defaults"] = statistics.median(per)
        summary[name]["ratios_per_round"] = [round(x, 3) for x in per]
        summary[name]["rps_per_round"] = [round(r["rps"], 1) for r in results]
    elsewhere = ratios(per_round[MANY_ELSEWHERE], per_round[FEW_ELSEWHERE], "rps")
    summary["10k/10 elsewhere"] = {
        "ratio": statistics.median(elsewhere),
        "ratios_per_round": [round(x, 3) for x in elsewhere],
    }
    load_ms = [
        m["first_rpc_ms"] - f["first_rpc_ms"]
        for m, f in zip(per_round[MANY_ELSEWHERE], per_round[FEW_ELSEWHERE], strict=True)
    ]
    summary["10k stubs load ms"] = statistics.median(load_ms)
    return summary


def report(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}; CPU pinning: {meta['pinning']}")
    print(
        f"GetProduct p500, concurrency {meta['concurrency']}, {meta['rounds']} rotating rounds of "
        f"{meta['duration']:g}s (+{meta['warmup']:g}s warm-up); medians over rounds"
    )
    print(
        f"{'variant':<14} {'RPS':>7} {'x dflt':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7} "
        f"{'resp B':>7} {'1st RPC':>8} {'RSS MB':>7}  ratio/round"
    )
    for name in VARIANTS:
        r = summary[name]
        print(
            f"{name:<14} {r['rps']:>7.0f} {r['ratio_to_defaults']:>7.2f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['server_cpu_us_per_req']:>7.0f} "
            f"{r.get('response_bytes', float('nan')):>7.0f} {r['first_rpc_ms']:>6.0f}ms "
            f"{r['VmRSS']:>7.1f}  {r['ratios_per_round']}"
        )
    elsewhere = summary["10k/10 elsewhere"]
    print(f"10k / 10 elsewhere per round: {elsewhere['ratios_per_round']}")
    print(
        f"start-up with 10,000 stubs: {summary[MANY_ELSEWHERE]['first_rpc_ms']:.0f} ms to the "
        f"first RPC, {summary['10k stubs load ms']:.0f} ms more than with 11 (median per round)"
    )
    cost = summary["in-process us"]
    print(
        "in-process, choosing and building the answer (us a call): "
        + ", ".join(f"{name} {cost[name]:.1f}" for name in VARIANTS)
    )
    checks = [
        (
            f"1,000 stubs on GetProduct >= {TARGET_ON_METHOD:.2f}x defaults",
            summary[ON_METHOD]["ratio_to_defaults"] >= TARGET_ON_METHOD,
            f"{summary[ON_METHOD]['ratio_to_defaults']:.3f}x",
        ),
        (
            f"10,000 stubs on other methods >= {TARGET_ELSEWHERE:.2f}x 10 on other methods",
            elsewhere["ratio"] >= TARGET_ELSEWHERE,
            f"{elsewhere['ratio']:.3f}x",
        ),
    ]
    lines = verdicts(checks)
    print(
        f"info  1,000 regex stubs (linear scan): {summary[REGEX]['ratio_to_defaults']:.3f}x "
        f"defaults, {summary[REGEX]['server_cpu_us_per_req']:.0f} us CPU a call vs "
        f"{summary[DEFAULTS]['server_cpu_us_per_req']:.0f}"
    )
    return lines


def main() -> int:
    parser = load_parser(__doc__, 8, 2.0, HERE / "results" / "stubs-latest.json")
    parser.add_argument("--in-process-only", action="store_true", help="skip the servers")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server

    prefix, others = pinned(args.no_pin)
    shape = Load(METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup)
    loadgen = make_loadgen(shape, args.python_load)
    meta = run_meta(args, loadgen, prefix, others)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    try:
        folders = write_stubs(tmp)
        if args.in_process_only:
            cost = responder_cost(folders)
            print("\n".join(f"{name:<14} {us:6.2f} us a call" for name, us in cost.items()))
            return 0
        print(f"throughput ({loadgen.describe()})", flush=True)
        per_round = measure(loadgen, args.rounds, folders, tmp / "cache", prefix)
        summary = summarise(per_round)
        summary["in-process us"] = responder_cost(folders)
    except (BenchError, LoadError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in list(Child.running):
            child.stop()
        loadgen.close()
        shutil.rmtree(tmp, ignore_errors=True)
    checks = report(summary, meta)
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

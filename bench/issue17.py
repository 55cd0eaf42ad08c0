"""Benchmark: every row of issue 17's table (performance) as a ratio, in one run.

    python bench/issue17.py [--rounds 6] [--duration 2] [--startup-reps 5] [--inprocess-reps 30]
        [--only unary,streams,startup,inprocess] [--python-load] [--no-pin]

Rows, each against a bare grpc.aio server (bench/bare_server.py: protoc-generated classes of the
same contract, compiled in-process on a cold start) in the same run:
  - server CPU per unary GetProduct call (from /proc) for default responses, a trivial async
    behaviour returning a dict (bench/trivial_behavior.py) and the same returning a message
    (bench/trivial_message_behavior.py); unary RPS at c=32 of the dict behaviour;
  - server-streaming messages/s: ListProducts with default responses of 100 messages a call
    (`EMULATOR_DEFAULTS_STREAM_MESSAGES=100`) against 100 prebuilt Products;
  - bidi echo messages/s: Orders/Chat, 100 requests a call, echoed by bench/echo_behavior.py
    against the bare server's echo;
  - process start to first RPC, cold and warm cache (bench/run.py's measure_startup);
  - in-process `Emulator` start to first RPC, warm (bench/inprocess.py's measure_start).
Throughput rounds rotate all eight servers (bench/rounds.py: each started afresh, pinned to one
CPU, the load on the other); every server's first answer is checked to be what the variant
claims, and under h2load each call's response bytes must equal that first answer's. Ratios are
taken per round (per start-up repetition) and reported as medians with their IQR. Writes
bench/results/issue17.json; exits 0 unless the benchmark itself breaks.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
from bare_server import generate, load_modules
from loadgen import Load, LoadError, make_loadgen
from rounds import (
    Variant,
    load_parser,
    pinned,
    ratios,
    run_meta,
    run_rounds,
    spread,
    write_results,
)
from run import (
    HERE,
    BenchError,
    Child,
    bare_cmd,
    emulator_cmd,
    measure_startup,
    verdicts,
)

UNARY = "/acme.shop.v1.Catalog/GetProduct"
STREAM = "/acme.shop.v1.Catalog/ListProducts"
BIDI = "/acme.shop.v1.Orders/Chat"
STREAM_MESSAGES = 100  # a server stream's messages, and a bidi call's requests
PARTS = ("unary", "streams", "startup", "inprocess")

# name: (the issue's row, measure, target, True if the figure must be at least the target)
TARGETS: dict[str, tuple[str, str, float, bool]] = {
    "cpu_defaults": ("server CPU per call, default responses, vs bare", "x", 1.05, False),
    "cpu_dict": ("server CPU per call, trivial async behaviour returning a dict", "x", 1.10, False),
    "cpu_message": ("server CPU per call, trivial behaviour returning a message", "x", 1.05, False),
    "rps_dict": ("unary RPS at c=32, trivial (dict) behaviour, vs bare", "x", 0.90, True),
    "stream": ("server-streaming messages/s, defaults, 100 a call, vs bare", "x", 0.90, True),
    "bidi": ("bidi echo messages/s, 100 a call, vs bare", "x", 0.85, True),
    "start_cold": ("process start -> first RPC, cold cache, vs bare", "x", 1.10, False),
    "start_warm": ("process start -> first RPC, warm cache, vs bare", "x", 1.05, False),
    "inprocess": ("in-process Emulator start -> first RPC, warm", "ms", 5.0, False),
}


def frames_bytes(messages: list[bytes]) -> int:
    """The DATA bytes h2load counts for these response messages (5-byte gRPC prefix each)."""
    return sum(5 + len(m) for m in messages)


class Checks:
    """What each variant must answer, decoded with the bare server's generated classes."""

    def __init__(self, gen_dir: Path) -> None:
        generate(gen_dir)
        self.catalog, _ = load_modules(gen_dir)
        self.orders, _ = load_modules(gen_dir, "orders")
        self.request = self.catalog.GetProductRequest(product_id="sku-1").SerializeToString()
        self.stream_request = self.catalog.ListProductsRequest().SerializeToString()
        self.chat = [
            self.orders.ChatMessage(order_id="o-1", text=f"hello {n}").SerializeToString()
            for n in range(3)
        ]
        self.trivial = self.catalog.Product(
            product_id="sku-1", name="Bench Product", stock_count=42
        ).SerializeToString()

    def first_answer(self, port: int, kind: str) -> list[bytes]:
        """Call until served (the server may still be binding handlers); the answer's messages."""
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            if kind == "unary":
                return [channel.unary_unary(UNARY)(self.request, timeout=10)]
            if kind == "server-stream":
                return list(channel.unary_stream(STREAM)(self.stream_request, timeout=10))
            return list(channel.stream_stream(BIDI)(iter(self.chat), timeout=10))

    def unary(self, expect: str) -> Callable[[list[bytes]], None]:
        def check(answer: list[bytes]) -> None:
            product = self.catalog.Product.FromString(answer[0])
            if expect == "bare" and product.product_id != "sku-1":
                raise BenchError(f"bare GetProduct answered {product}")
            if expect == "defaults" and (not answer[0] or answer[0] == self.trivial):
                raise BenchError("defaults: GetProduct did not answer a default Product")
            if expect == "trivial" and answer[0] != self.trivial:
                raise BenchError(f"the trivial behaviour did not answer: got {product}")

        return check

    def stream(self, bare: bool) -> Callable[[list[bytes]], None]:
        def check(answer: list[bytes]) -> None:
            if len(answer) != STREAM_MESSAGES:
                raise BenchError(f"ListProducts sent {len(answer)} messages, not {STREAM_MESSAGES}")
            products = [self.catalog.Product.FromString(m) for m in answer]
            if bare and [p.product_id for p in products] != [f"sku-{n}" for n in range(100)]:
                raise BenchError("bare ListProducts did not stream its prebuilt Products")
            if not bare and not all(answer):
                raise BenchError("defaults: ListProducts sent an empty Product")

        return check

    def echo(self, answer: list[bytes]) -> None:
        if answer != self.chat:
            raise BenchError(f"Chat did not echo its 3 messages: got {answer!r}")


def variant(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    kind: str,
    *,
    check: Callable[[list[bytes]], None],
    checks: Checks,
    loadgen: Any,
) -> Variant:
    seen: dict[str, int] = {}

    def ready(child: Child) -> None:
        answer = checks.first_answer(child.port, kind)
        check(answer)
        seen["bytes"] = frames_bytes(answer)

    def after(child: Child) -> None:
        check(checks.first_answer(child.port, kind))  # still answers properly after the load

    def run(port: int) -> dict[str, Any]:
        result: dict[str, Any] = loadgen.run(port)
        got = result.get("response_bytes")
        # A bidi call under load sends 100 copies of the first checked message: 100 echoes.
        want = seen["bytes"] if kind != "bidi" else STREAM_MESSAGES * frames_bytes(checks.chat[:1])
        # h2load also counts the bytes of the calls still streaming when it stops (up to one
        # a concurrent stream), so a call's share may be a little more than its own, never less.
        slack = want * loadgen.load.concurrency / max(1, result["requests"])
        if got is not None and not want - 0.5 <= got <= want + slack + 0.5:
            raise BenchError(f"{name}: {got} response bytes a call under load, {want} expected")
        per_call = STREAM_MESSAGES if kind != "unary" else 1
        result["messages_per_s"] = (
            result.get("messages", result["requests"] * per_call) / (result["duration_s"])
        )
        return result

    # The variant's own load generator: the shared one, checking each run's bytes.
    checked = SimpleNamespace(name=loadgen.name, describe=loadgen.describe, run=run)
    return Variant(name, cmd, ready, after, env, checked)


def figure(values: list[float], of: float, base: float, measure: str) -> dict[str, Any]:
    """One row's figure: the median of its per-round ratios (`value`), their IQR, the ratios,
    and the medians of the measure that they divide."""
    ratio = spread(values)
    return {
        "value": ratio["median"],
        "iqr": ratio["iqr"],
        "per_round": ratio["per_round"],
        "of": of,
        "base": base,
        "measure": measure,
    }


def throughput(args: Any, parts: set[str], cache: Path, checks: Checks) -> dict[str, Any]:
    env = {"GRPC_EMULATOR_CACHE_DIR": str(cache / "emulator")}
    gen = cache / "bare"

    def load(method: str, body: bytes, kind: str = "unary", messages: int = 1) -> Any:
        shape = Load(
            method,
            body,
            args.concurrency,
            args.connections,
            args.duration,
            args.warmup,
            kind=kind,
            messages=messages,
        )
        return make_loadgen(shape, args.python_load)

    loads = {
        "unary": load(UNARY, checks.request),
        "server-stream": load(STREAM, checks.stream_request, "server-stream"),
        "bidi": load(BIDI, checks.chat[0], "bidi", STREAM_MESSAGES),
    }
    behaviour = [*emulator_cmd(), "--behaviors"]
    trivial = checks.unary("trivial")

    def make(name: str, cmd: list[str], env: dict[str, str], kind: str, check: Any) -> Variant:
        return variant(name, cmd, env, kind, check=check, checks=checks, loadgen=loads[kind])

    variants: list[Variant] = []
    if "unary" in parts:
        variants += [
            make("bare", bare_cmd(gen), {}, "unary", checks.unary("bare")),
            make("defaults", emulator_cmd(), env, "unary", checks.unary("defaults")),
            make("dict", [*behaviour, str(HERE / "trivial_behavior.py")], env, "unary", trivial),
            make(
                "message",
                [*behaviour, str(HERE / "trivial_message_behavior.py")],
                env,
                "unary",
                trivial,
            ),
        ]
    if "streams" in parts:
        stream_env = {**env, "EMULATOR_DEFAULTS_STREAM_MESSAGES": str(STREAM_MESSAGES)}
        variants += [
            make("bare stream", bare_cmd(gen), {}, "server-stream", checks.stream(bare=True)),
            make("stream", emulator_cmd(), stream_env, "server-stream", checks.stream(bare=False)),
            make("bare bidi", bare_cmd(gen), {}, "bidi", checks.echo),
            make("bidi", [*behaviour, str(HERE / "echo_behavior.py")], env, "bidi", checks.echo),
        ]
    try:
        per_round = run_rounds(variants, args.rounds, None, width=12)
    finally:
        for generator in loads.values():
            generator.close()
    meta = run_meta(args, loads["unary"], *args.pin)
    figures: dict[str, Any] = {}

    def ratio(key: str, variant: str, base: str, measure: str) -> None:
        figures[key] = figure(
            ratios(per_round[variant], per_round[base], measure),
            statistics.median(r[measure] for r in per_round[variant]),
            statistics.median(r[measure] for r in per_round[base]),
            measure,
        )

    if "unary" in parts:
        cpu = "server_cpu_us_per_req"
        ratio("cpu_defaults", "defaults", "bare", cpu)
        ratio("cpu_dict", "dict", "bare", cpu)
        ratio("cpu_message", "message", "bare", cpu)
        ratio("rps_dict", "dict", "bare", "rps")
    if "streams" in parts:
        ratio("stream", "stream", "bare stream", "messages_per_s")
        ratio("bidi", "bidi", "bare bidi", "messages_per_s")
    return {"meta": meta, "figures": figures, "per_round": per_round}


def startup(reps: int) -> dict[str, Any]:
    summary = measure_startup(reps)
    bare, emu = summary["bare grpc.aio"], summary["emulator (defaults)"]
    figures = {}
    for phase in ("cold", "warm"):
        values = [
            e / b
            for e, b in zip(
                emu[f"{phase}_first_rpc_ms_all"], bare[f"{phase}_first_rpc_ms_all"], strict=True
            )
        ]
        of, base = emu[f"{phase}_first_rpc_ms"], bare[f"{phase}_first_rpc_ms"]
        figures[f"start_{phase}"] = figure(values, of, base, "first_rpc_ms")
    return {"figures": figures, "summary": summary}


def inprocess(reps: int, cache: Path) -> dict[str, Any]:
    os.environ["GRPC_EMULATOR_CACHE_DIR"] = str(cache / "inprocess")
    from inprocess import measure_start  # imports the emulator: only when this part runs

    start = measure_start(reps)
    low, high = statistics.quantiles(start["warm_all_ms"], n=4)[0::2]
    figure = {"value": start["warm_median_ms"], "iqr": [round(low, 2), round(high, 2)]}
    return {"figures": {"inprocess": figure}, "start": start}


def report(figures: dict[str, Any]) -> list[str]:
    print()
    checks = []
    for key, (what, unit, target, at_least) in TARGETS.items():
        if key not in figures:
            continue
        f = figures[key]
        low, high = f["iqr"]
        extra = f" ({f['of']:.1f} vs {f['base']:.1f} {f['measure']})" if "of" in f else ""
        shown = f"{f['value']:.2f}{unit} (IQR {low:.2f}-{high:.2f}){extra}"
        met = f["value"] >= target if at_least else f["value"] <= target
        checks.append((f"{what} {'>=' if at_least else '<='} {target:g}{unit}", met, shown))
    return verdicts(checks)


def main() -> int:
    parser = load_parser(__doc__, rounds=6, duration=2.0, output=HERE / "results" / "issue17.json")
    parser.add_argument("--startup-reps", type=int, default=5)
    parser.add_argument("--inprocess-reps", type=int, default=30)
    parser.add_argument("--only", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if parts - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}; got {args.only}")
    everywhere = os.sched_getaffinity(0)
    cache = Path(tempfile.mkdtemp(prefix="bench-issue17-"))
    document: dict[str, Any] = {"figures": {}}
    try:
        if parts & {"unary", "streams"}:
            checks = Checks(cache / "checks")
            args.pin = pinned(args.no_pin)
            print(f"throughput, {args.rounds} rotating rounds", flush=True)
            document["throughput"] = throughput(args, parts, cache, checks)
            document["figures"].update(document["throughput"].pop("figures"))
            os.sched_setaffinity(0, everywhere)  # start-up is measured unpinned, as bench/run.py
        if "startup" in parts:
            print("process start to first RPC", flush=True)
            document["startup"] = startup(args.startup_reps)
            document["figures"].update(document["startup"].pop("figures"))
        if "inprocess" in parts:
            print("in-process start to first RPC", flush=True)
            document["inprocess"] = inprocess(args.inprocess_reps, cache)
            document["figures"].update(document["inprocess"].pop("figures"))
    except (BenchError, LoadError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in list(Child.running):
            child.stop()
    document["checks"] = report(document["figures"])
    write_results(args.output, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

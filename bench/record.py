"""What `emulate record` adds to a call's latency, and what replaying its recordings serves.

    python bench/record.py [--rounds 8] [--duration 2] [--low-concurrency 1] [--no-pin]
    make bench-record

The upstream is the bare grpc.aio server of bench/run.py (bench/bare_server.py), started once
and kept up for the whole run, pinned with the servers. First a recording: `emulate record` in
front of it takes 1,000 GetProduct calls, product_id p0..p999, one at a time, is stopped with
SIGTERM, and its file must hold 1,000 stubs, each answering the upstream's bytes. Then rotating
rounds (bench/rounds.py: every server started afresh) of unary GetProduct {product_id: "p500"}
from h2load (else bench/load_client.py) against

- `bare c1` / `record c1`: the bare server called directly, and through `emulate record --upstream
  it --out DIR`, at one call in flight (h2load -c 1 -m 1): the recording proxy's added latency
  at p50 and p99, in ms and as a ratio (information, no target);
- `proxy c1`: `emulate --upstream it`, forwarding without recording: what of that is the
  forwarding and what the recording;
- `bare c32` / `proxy c32` / `record c32`: the same at the load's concurrency (32);
- `defaults`: `emulate --proto protos`, the default response (the baseline);
- `replay`: `emulate --proto protos --stubs <the recording>`; target >= 0.8x defaults;
- `replay no waits`: the same with `--replay-timings none` (a recording keeps the upstream's
  time to answer as a delay, and replays it by default): information.

Before any load, each variant's answer to p500 is checked: the upstream's bytes, through the
proxy and from the replayed recording (a default answer from `defaults`). After each `record`
round its file must hold the p500 stub. Every load sends the same request, so the recording
of a round is one stub whose `sequence` grows by a response a call; its length and the file's
size are reported. Per-round differences and ratios, then medians and interquartile ranges.
Prints a table and PASS/FAIL, writes bench/results/record-latest.json, exits 0 unless the
benchmark itself breaks.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from loadgen import Load, LoadError, make_loadgen  # noqa: E402 - bench/ is sys.path[0]
from rounds import (  # noqa: E402
    Variant,
    load_parser,
    medians,
    pinned,
    ratios,
    run_meta,
    run_rounds,
    spread,
    write_results,
)

# grpc through run.py: importing it re-executes this script under the venv when grpc is missing.
from run import (  # noqa: E402 - bench/ helpers
    METHOD,
    BenchError,
    Child,
    bare_cmd,
    call_until_served,
    emulator_cmd,
    grpc,
    start,
    terminated,
    verdicts,
)

REQUEST = b"\x0a\x04p500"  # GetProductRequest{product_id: "p500"}, field 1 length-delimited
RECORDED = 1000  # distinct requests recorded, p0..p999
FILE = "acme.shop.v1.Catalog.GetProduct.yaml"  # the recording of GetProduct under --out
TARGET_REPLAY = 0.80  # x defaults
START_TIMEOUT = 120.0  # replay loads 1,000 stubs: seconds on a busy machine

BARE, PROXY, RECORD = "bare", "proxy", "record"  # + " c<concurrency>"
DEFAULTS, REPLAY, NO_WAITS = "defaults", "replay", "replay no waits"
MEDIANS = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "first_rpc_ms", "VmRSS")


def product(n: int) -> bytes:
    ident = f"p{n}".encode()
    return b"\x0a" + bytes([len(ident)]) + ident


def record_cmd(prefix: list[str], upstream: int, out: Path) -> list[str]:
    return [
        *prefix,
        sys.executable,
        *("-m", "emulator", "record", "--proto", "protos", "--port", "0"),
        *("--upstream", f"127.0.0.1:{upstream}", "--out", str(out)),
    ]


def recorded_stubs(out: Path) -> dict[str, dict[str, Any]]:
    """The GetProduct recording under `out`, by the product_id each stub matches."""
    import yaml  # here: run.py has made sure of the venv

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a round's recording is megabytes
    stubs = yaml.load((out / FILE).read_text(), Loader=loader) or []
    return {s["match"]["request"]["product_id"]: s for s in stubs if "match" in s}


def responses(stub: dict[str, Any]) -> list[dict[str, Any]]:
    return stub.get("sequence") or [stub["respond"]]


# -- the recording replayed ----------------------------------------------------------------------


def make_recording(
    prefix: list[str], upstream: int, out: Path, expected: bytes, env: dict[str, str]
) -> dict[str, Any]:
    """RECORDED distinct calls through `emulate record`, one at a time, then SIGTERM: what it
    wrote, checked, and how long that took."""
    child = start("record", record_cmd(prefix, upstream, out), env, timeout=START_TIMEOUT)
    try:
        started = time.perf_counter()
        if call_until_served(child.port, product(0))[1] != expected:
            raise BenchError("record: p0 was not answered with the upstream's bytes")
        with grpc.insecure_channel(f"127.0.0.1:{child.port}") as channel:
            call = channel.unary_unary(METHOD)
            for n in range(1, RECORDED):
                if call(product(n), timeout=10) != expected:
                    raise BenchError(f"record: p{n} was not answered with the upstream's bytes")
        calls_s = time.perf_counter() - started
        child.proc.terminate()  # SIGTERM: the recorder writes what it has and says so
        code = child.proc.wait(30)
        said = child.errors()
    finally:
        child.stop()
    if code != 0 or f"recorded {RECORDED} calls in 1 file" not in said:
        raise BenchError(f"record: exit status {code}, said: {said[-500:]}")
    stubs = recorded_stubs(out)
    if sorted(stubs) != sorted(f"p{n}" for n in range(RECORDED)):
        raise BenchError(f"record: {len(stubs)} stubs in {out / FILE}, not p0..p{RECORDED - 1}")
    p500 = responses(stubs["p500"])
    if len(p500) != 1 or not p500[0].get("replace"):
        raise BenchError(f"record: the p500 stub is not one recorded answer: {p500}")
    delays = sorted(float(responses(s)[0].get("delay", "0ms")[:-2]) for s in stubs.values())
    return {
        "calls": RECORDED,
        "calls_s": round(calls_s, 3),
        "file_bytes": (out / FILE).stat().st_size,
        "p500_delay": p500[0].get("delay", "none"),
        "delay_ms_median": statistics.median(delays),
        "delay_ms_p90": delays[len(delays) * 9 // 10],
        "delay_ms_max": delays[-1],
        "said": said.strip().splitlines()[-1],
    }


# -- the variants --------------------------------------------------------------------------------


def served(name: str, expected: bytes, *, equal: bool = True) -> Any:
    """A `ready` (or `after`): p500 answered, with the upstream's bytes (or, `equal=False`,
    with others: a default answer)."""

    def check(child: Child) -> float:
        moment, reply = call_until_served(child.port, REQUEST)
        if (reply == expected) != equal:
            raise BenchError(f"{name}: GetProduct p500 answered {reply[:80]!r}")
        return moment

    return check


def settled(out: Path, name: str, quiet: float = 1.0, timeout: float = 60.0) -> dict[str, Any]:
    """The recording once its writer has stopped rewriting it: no temporary file beside it and
    the file unchanged for `quiet` seconds (the writer waits 0.2 s between rewrites, and
    one rewrite of a big file takes seconds)."""
    path = out / FILE
    deadline = time.perf_counter() + timeout
    last, since = None, time.perf_counter()
    while True:
        state = path.stat().st_mtime_ns if path.exists() else None
        if state != last or any(out.glob(f".{FILE}.*.tmp")):
            last, since = state, time.perf_counter()
        elif state is not None and time.perf_counter() - since >= quiet:
            return recorded_stubs(out)
        if time.perf_counter() > deadline:
            raise BenchError(f"{name}: {path} still being rewritten after {timeout:g} s")
        time.sleep(0.05)


def latency_variants(
    prefix: list[str],
    *,
    upstream: int,
    gen: Path,
    root: Path,
    expected: bytes,
    loadgens: dict[int, Any],
    env: dict[str, str],
    kept: dict[str, list[dict[str, Any]]],
) -> list[Variant]:
    """Per concurrency: the bare server alone, the emulator proxying to the upstream without
    recording, and `emulate record` in front of it; `kept` gets what each record round left in
    its file."""
    variants = []
    for concurrency, loadgen in loadgens.items():
        bare, plain, proxy = (f"{k} c{concurrency}" for k in (BARE, PROXY, RECORD))
        out = root / proxy.replace(" ", "-")
        check = served(proxy, expected)

        def fresh(child: Child, out: Path = out, check: Any = check) -> float:
            # The command is the same every round: the last round's file goes before the first
            # call reads it (it would add this round's calls to that stub's sequence).
            shutil.rmtree(out, ignore_errors=True)
            return float(check(child))

        def recorded(child: Child, out: Path = out, name: str = proxy, check: Any = check) -> None:
            check(child)
            stub = settled(out, name).get("p500")
            if stub is None:
                raise BenchError(f"{name}: no p500 stub in {out / FILE} after the load")
            count = len(responses(stub))
            kept[name].append({"responses": count, "file_bytes": (out / FILE).stat().st_size})

        kept[proxy] = []
        direct, forwarded = served(bare, expected), served(plain, expected)
        to = ["--upstream", f"127.0.0.1:{upstream}"]
        variants += [
            Variant(bare, [*prefix, *bare_cmd(gen)], direct, direct, {}, loadgen),
            Variant(plain, [*prefix, *emulator_cmd(), *to], forwarded, forwarded, env, loadgen),
            Variant(proxy, record_cmd(prefix, upstream, out), fresh, recorded, env, loadgen),
        ]
    return variants


def replay_variants(
    prefix: list[str], recording: Path, expected: bytes, env: dict[str, str]
) -> list[Variant]:
    default = served(DEFAULTS, expected, equal=False)
    replayed = served(REPLAY, expected)
    stubs = [*prefix, *emulator_cmd(), "--stubs", str(recording)]
    return [
        Variant(DEFAULTS, [*prefix, *emulator_cmd()], default, default, env),
        Variant(REPLAY, stubs, replayed, replayed, env),
        Variant(NO_WAITS, [*stubs, "--replay-timings", "none"], replayed, replayed, env),
    ]


# -- summary and report --------------------------------------------------------------------------


def summarise(
    per_round: dict[str, list[dict[str, Any]]], concurrencies: list[int]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, results in per_round.items():
        summary[name] = medians(results, MEDIANS)
        for key in ("rps", "p50_ms", "p99_ms"):
            summary[name][f"{key}_per_round"] = [round(r[key], 3) for r in results]
    for c, kind in itertools.product(concurrencies, (PROXY, RECORD)):
        bare, through = per_round[f"{BARE} c{c}"], per_round[f"{kind} c{c}"]
        added: dict[str, Any] = {}
        for key in ("p50_ms", "p99_ms"):
            added[f"{key} added"] = spread(
                [r[key] - b[key] for r, b in zip(through, bare, strict=True)]
            )
            added[f"{key} ratio"] = spread(ratios(through, bare, key))
        added["rps ratio"] = spread(ratios(through, bare, "rps"))
        summary[f"{kind} c{c} / bare c{c}"] = added
    for name in (REPLAY, NO_WAITS):
        summary[f"{name} / defaults"] = spread(ratios(per_round[name], per_round[DEFAULTS], "rps"))
    return summary


def report(summary: dict[str, Any], meta: dict[str, Any], concurrencies: list[int]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}; CPU pinning: {meta['pinning']}")
    print(
        f"GetProduct p500, {meta['rounds']} rotating rounds of {meta['duration']:g}s "
        f"(+{meta['warmup']:g}s warm-up); medians over rounds"
    )
    print(f"{'variant':<16} {'RPS':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7}  RPS/round")
    for name in meta["variants"]:
        r = summary[name]
        print(
            f"{name:<16} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{r['server_cpu_us_per_req']:>7.0f}  {r['rps_per_round']}"
        )
    for c, kind in itertools.product(concurrencies, (PROXY, RECORD)):
        added = summary[f"{kind} c{c} / bare c{c}"]
        for key in ("p50_ms", "p99_ms"):
            ms, ratio = added[f"{key} added"], added[f"{key} ratio"]
            print(
                f"info  {kind} c{c} {key[:3]}: +{ms['median']:.2f} ms over bare "
                f"(IQR {ms['iqr'][0]:.2f}-{ms['iqr'][1]:.2f}; per round {ms['per_round']}), "
                f"{ratio['median']:.2f}x (IQR {ratio['iqr'][0]:.2f}-{ratio['iqr'][1]:.2f})"
            )
        rps = added["rps ratio"]
        print(f"info  {kind} c{c} RPS: {rps['median']:.3f}x bare (per round {rps['per_round']})")
    for c in concurrencies:
        rounds = summary["recorded per round"][f"record c{c}"]
        print(
            f"info  record c{c}: the p500 stub's sequence after each round "
            f"{[r['responses'] for r in rounds]} responses, file "
            f"{[round(r['file_bytes'] / 1e6, 1) for r in rounds]} MB"
        )
    made = summary["recording"]
    print(
        f"info  recording of {made['calls']} calls: {made['calls_s']:.2f} s one at a time, "
        f"{made['file_bytes'] / 1e3:.0f} kB, recorded delay of p500 {made['p500_delay']} "
        f"(all stubs: median {made['delay_ms_median']:g} ms, p90 {made['delay_ms_p90']:g}, "
        f"max {made['delay_ms_max']:g}); {made['said']!r}"
    )
    waits = summary[f"{NO_WAITS} / defaults"]
    print(
        f"info  replay with --replay-timings none: {waits['median']:.3f}x defaults "
        f"(IQR {waits['iqr'][0]:.3f}-{waits['iqr'][1]:.3f})"
    )
    replay = summary[f"{REPLAY} / defaults"]
    print(f"replay / defaults per round: {replay['per_round']}")
    print(f"  median {replay['median']:.3f}, IQR {replay['iqr'][0]:.3f}-{replay['iqr'][1]:.3f}")
    checks = [
        (
            f"replaying {RECORDED:,} recorded stubs >= {TARGET_REPLAY:.2f}x defaults",
            replay["median"] >= TARGET_REPLAY,
            f"{replay['median']:.3f}x",
        )
    ]
    return verdicts(checks)


def main() -> int:
    parser = load_parser(__doc__, 8, 2.0, HERE / "results" / "record-latest.json")
    parser.add_argument("--low-concurrency", type=int, default=1, help="calls in flight, latency")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server

    prefix, others = pinned(args.no_pin)
    shape = Load(METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup)
    low = dataclasses.replace(shape, concurrency=args.low_concurrency, connections=1)
    loadgen = make_loadgen(shape, args.python_load)
    loadgens = {
        args.low_concurrency: make_loadgen(low, args.python_load),
        args.concurrency: loadgen,
    }
    concurrencies = list(loadgens)
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    env = {"GRPC_EMULATOR_CACHE_DIR": str(tmp / "cache")}
    kept: dict[str, list[dict[str, Any]]] = {}
    try:
        upstream = start("upstream", [*prefix, *bare_cmd(tmp / "gen")])
        expected = call_until_served(upstream.port, REQUEST)[1]
        print("recording", flush=True)
        recording = make_recording(prefix, upstream.port, tmp / "recording", expected, env)
        variants = [
            *latency_variants(
                prefix,
                upstream=upstream.port,
                gen=tmp / "gen",
                root=tmp,
                expected=expected,
                loadgens=loadgens,
                env=env,
                kept=kept,
            ),
            *replay_variants(prefix, tmp / "recording", expected, env),
        ]
        print(f"rounds ({loadgen.describe()}; c{args.low_concurrency}: -c 1 -m 1)", flush=True)
        per_round = run_rounds(variants, args.rounds, loadgen, timeout=START_TIMEOUT, width=16)
    except (BenchError, LoadError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in list(Child.running):
            child.stop()
        for each in loadgens.values():
            each.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(per_round, concurrencies)
    summary["recording"] = recording
    summary["recorded per round"] = kept
    meta = {**run_meta(args, loadgen, prefix, others), "variants": [v.name for v in variants]}
    meta["low_concurrency"] = args.low_concurrency
    checks = report(summary, meta, concurrencies)
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

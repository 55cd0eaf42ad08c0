"""What sessions cost the data path, and how fast an admin ListCalls of 10,000 calls answers.

    python bench/sessions.py [--rounds 8] [--duration 2] [--list-rounds 3] [--no-pin]
    make bench-sessions

Throughput (bench/rounds.py: rotating rounds, every server started afresh): unary GetProduct
{product_id: "p5"} at concurrency 32 from h2load (else bench/load_client.py) against

- `no sessions`: 10 shared stubs on GetProduct (`product_id: pN`, N = 0..9) added through the
  admin API, untagged load (the baseline);
- `100 sessions`: 100 sessions s0..s99 of 10 such stubs each, added through the admin API
  (AddStubs with `session`), the load tagged `x-emulator-session: s42`; target >= 0.8x.

Each variant's first answer is checked: the session's stub (or the shared one) answered. Then
in this process, the stub responder's own µs a call for both (the best of 5 rounds).

ListCalls: one emulator, its journal filled with 10,000 GetProduct calls of distinct requests
(journal.limit's default), then ListCalls with page_size 10000 over gRPC (a grpcio client with
emulator.admin.descriptor.pb messages): the first query of calls never listed (the default, JSON
and raw: every record built and every message converted), the same again; then, after filling
the journal afresh, the same two with raw_only. `--list-rounds` does that many times; medians.
Target: each under 1 s. Prints a table and PASS/FAIL,
writes bench/results/sessions-latest.json, exits 0 unless the benchmark itself breaks.
"""

from __future__ import annotations

import dataclasses
import signal
import statistics
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
    BenchError,
    Child,
    emulator_cmd,
    grpc,
    start,
    terminated,
    verdicts,
)

sys.path.insert(0, str(REPO))
from emulator.admin.descriptor import pb  # noqa: E402 - after the venv check

REQUEST = b"\x0a\x02p5"  # GetProductRequest{product_id: "p5"}
GET_PRODUCT = METHOD.lstrip("/")
HEADER, SESSION = "x-emulator-session", "s42"
SESSIONS, PER_SESSION = 100, 10
TARGET_RATIO, TARGET_LIST_S = 0.80, 1.0
LULL = 2.0  # seconds between the last call and the query, for "json after a lull"
JOURNAL = 10_000
ADMIN = "/emulator.admin.v1.Admin/"
# A 10,000-call page is 5 MB raw, 12 MB with JSON: over grpc's default 4 MiB receive limit.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]

SHARED = "no sessions"
TAGGED = "100 sessions"
MEDIANS = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "response_bytes")


def stubs_of(session: str | None) -> list[dict[str, Any]]:
    answer = f"stub {{n}} of {session}" if session else "shared stub {n}"
    return [
        {
            "name": f"get-product-{n}",
            "method": GET_PRODUCT,
            "match": {"request": {"product_id": f"p{n}"}},
            "respond": {"message": {"name": answer.format(n=n)}},
        }
        for n in range(PER_SESSION)
    ]


def admin(channel: grpc.Channel, name: str, request: Any, reply: Any) -> Any:
    call = channel.unary_unary(
        ADMIN + name,
        request_serializer=type(request).SerializeToString,
        response_deserializer=reply.FromString,
    )
    return call(request, timeout=120)


def add_stubs(port: int, sessions: list[str | None]) -> None:
    from emulator.admin.convert import struct

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for session in sessions:
            request = pb.AddStubsRequest(
                session=session or "", stubs=[struct(s) for s in stubs_of(session)]
            )
            added = admin(channel, "AddStubs", request, pb.StubList)
            if len(added.stubs) != PER_SESSION:
                raise BenchError(f"AddStubs({session}) added {len(added.stubs)} stubs")


def get_product(port: int, metadata: tuple[tuple[str, str], ...] = (), wait: float = 0) -> bytes:
    """GetProduct p5; with `wait`, retried until the server answers."""
    deadline = time.perf_counter() + wait
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while True:
            try:
                reply: bytes = channel.unary_unary(METHOD)(REQUEST, metadata=metadata, timeout=5)
                return reply
            except grpc.RpcError as exc:
                if time.perf_counter() > deadline:
                    raise BenchError(f"GetProduct on port {port} keeps failing: {exc}") from exc
                time.sleep(0.005)


def ready(name: str) -> Any:
    def check(child: Child) -> None:
        get_product(child.port, wait=60)
        if name == SHARED:
            add_stubs(child.port, [None])
            expect, tagged = b"shared stub 5", ()
        else:
            add_stubs(child.port, [f"s{n}" for n in range(SESSIONS)])
            expect, tagged = f"stub 5 of {SESSION}".encode(), ((HEADER, SESSION),)
            if b"stub 5" in get_product(child.port):
                raise BenchError("an untagged call was answered by a session's stub")
        reply = get_product(child.port, tagged)
        if expect not in reply:
            raise BenchError(f"{name}: GetProduct p5 answered {reply[:80]!r}, not {expect!r}")

    return check


def measure(
    plain: Any, tagged: Any, rounds: int, cache: Path, prefix: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """`tagged` sends the session header; `plain` does not."""
    env = {"GRPC_EMULATOR_CACHE_DIR": str(cache)}
    cmd = [*prefix, *emulator_cmd()]
    variants = [
        Variant(SHARED, cmd, ready(SHARED), lambda c: get_product(c.port), env),
        Variant(
            TAGGED,
            cmd,
            ready(TAGGED),
            lambda c: get_product(c.port, ((HEADER, SESSION),)),
            env,
            loadgen=tagged,
        ),
    ]
    return run_rounds(variants, rounds, plain, width=14)


# -- in-process: the stub responder alone --------------------------------------------------------


def responder_cost(calls: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """µs a GetProduct p5 call spends in the stub responder (choosing a stub and building its
    answer) of an in-process Emulator, with 10 shared stubs and untagged calls against 100
    sessions of 10 and calls of s42: the best of `rounds` alternating runs."""
    import datetime

    from emulator import Emulator
    from emulator.call import Call
    from emulator.respond import Exchange
    from emulator.respond.defaults import DefaultResponder
    from emulator.respond.stubs import StubResponder

    anchor = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    base = (("user-agent", "h2load"), ("content-type", "application/grpc"), ("te", "trailers"))
    setups = {SHARED: ([None], base), TAGGED: ([f"s{n}" for n in range(SESSIONS)], base)}
    setups[TAGGED] = (setups[TAGGED][0], (*base, (HEADER, SESSION)))
    emulators = {name: Emulator(protos=str(REPO / "protos")) for name in setups}
    try:
        chains = {}
        for name, (sessions, metadata) in setups.items():
            emu = emulators[name].__enter__()
            for session in sessions:
                emu.stubs.add(*stubs_of(session), source="bench", session=session)
            snapshot = emu.server.snapshot
            default = DefaultResponder(snapshot.defaults)
            stubs = StubResponder(
                snapshot.stubs, snapshot.defaults, [default], seed=0, clock=lambda: anchor
            )
            chains[name] = (snapshot.contracts.methods[METHOD], metadata, stubs)

        def per_call(name: str, count: int) -> float:
            spec, metadata, stubs = chains[name]
            started = time.perf_counter()
            for _ in range(count):
                call = Call(spec, metadata, "ipv4:127.0.0.1:1", None)
                call.requests.append(REQUEST)
                answer = stubs.pick(call)
                assert answer is not None, name  # a stub matched
                data = answer(Exchange(call, None, None, request=REQUEST))  # type: ignore[arg-type]
                assert isinstance(data, bytes) and b"stub 5" in data
            return (time.perf_counter() - started) / count

        out = {name: float("inf") for name in chains}
        for name in chains:
            per_call(name, 1000)  # warm
        for _ in range(rounds):
            for name in chains:
                out[name] = min(out[name], per_call(name, calls) * 1e6)
        return out
    finally:
        for emu in emulators.values():
            emu.__exit__(None, None, None)


# -- ListCalls of a full journal -----------------------------------------------------------------


def fill(port: int, tag: str, count: int = JOURNAL, batch: int = 200) -> None:
    """`count` GetProduct calls, each with a request of its own (nothing to share between
    records: the worst case for converting them)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)
        for first in range(0, count, batch):
            ids = [f"{tag}-{n}".encode() for n in range(first, min(count, first + batch))]
            futures = [call.future(b"\x0a" + bytes([len(i)]) + i, timeout=30) for i in ids]
            for future in futures:
                future.result()


def list_calls(rounds: int, prefix: list[str], cache: Path) -> dict[str, list[float]]:
    env = {"GRPC_EMULATOR_CACHE_DIR": str(cache)}
    child = start("list-calls", [*prefix, *emulator_cmd()], env)
    timings: dict[str, list[float]] = {
        "json": [],
        "json again": [],
        "json after a lull": [],
        "raw": [],
        "raw again": [],
    }
    try:
        get_product(child.port, wait=60)
        with grpc.insecure_channel(f"127.0.0.1:{child.port}", options=CHANNEL_OPTIONS) as ch:

            def timed(key: str, raw_only: bool) -> None:
                request = pb.ListCallsRequest(page_size=JOURNAL, raw_only=raw_only)
                started = time.perf_counter()
                page = admin(ch, "ListCalls", request, pb.CallList)
                timings[key].append(time.perf_counter() - started)
                if len(page.calls) != JOURNAL or bool(page.calls[0].requests) == raw_only:
                    raise BenchError(f"ListCalls gave {len(page.calls)} calls ({raw_only=})")

            for number in range(rounds):
                # Each form first on calls never listed (a fill replaces the whole journal),
                # as a test listing its calls once meets it; then again, as a test polling.
                fill(child.port, f"r{number}j")
                timed("json", False)
                timed("json again", False)
                # A test does its own work between its calls and its query: in such lulls the
                # emulator makes the forms ahead (once a client has read the journal).
                fill(child.port, f"r{number}l")
                time.sleep(LULL)
                timed("json after a lull", False)
                fill(child.port, f"r{number}r")
                timed("raw", True)
                timed("raw again", True)
                print(
                    f"  round {number + 1}/{rounds} ListCalls of {JOURNAL}: "
                    + "  ".join(f"{k} {v[-1]:.3f} s" for k, v in timings.items()),
                    flush=True,
                )
    finally:
        child.stop()
    return timings


# -- summary and report --------------------------------------------------------------------------


def summarise(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return two_way(per_round, SHARED, TAGGED, MEDIANS)


def report(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}; CPU pinning: {meta['pinning']}")
    print(
        f"GetProduct p5, concurrency {meta['concurrency']}, {meta['rounds']} rotating rounds of "
        f"{meta['duration']:g}s (+{meta['warmup']:g}s warm-up); medians over rounds"
    )
    print(f"{'variant':<14} {'RPS':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7}  RPS/round")
    for name in (SHARED, TAGGED):
        r = summary[name]
        print(
            f"{name:<14} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{r['server_cpu_us_per_req']:>7.0f}  {r['rps_per_round']}"
        )
    print_ratio("100 sessions / none", summary)
    cost = summary["in-process us"]
    print(
        f"stub responder in-process: {cost[SHARED]:.2f} us a call with 10 shared stubs, "
        f"{cost[TAGGED]:.2f} us with 100 sessions of 10 (a call of {SESSION})"
    )
    listed = summary["list calls s"]
    print(
        f"ListCalls of {JOURNAL:,} calls, page_size {JOURNAL}, median s over {meta['list_rounds']}:"
    )
    labels = {
        "json": "first query of the calls (JSON and raw)",
        "json again": "the same again (converted forms kept)",
        "json after a lull": f"first query, {LULL:g} s after the last call",
        "raw": "first query of other calls, raw_only",
        "raw again": "raw_only again",
    }
    for key, label in labels.items():
        print(f"  {label:<58} {listed[key]:.3f}")
    checks = [
        (
            f"100 sessions of 10 stubs >= {TARGET_RATIO:.2f}x no sessions",
            summary["ratio"] >= TARGET_RATIO,
            f"{summary['ratio']:.3f}x (server CPU per call: {summary['cpu_ratio']:.3f}x)",
        ),
        *(
            (
                f"ListCalls of {JOURNAL:,}, {labels[key]} < {TARGET_LIST_S:g} s",
                listed[key] < TARGET_LIST_S,
                f"{listed[key]:.3f} s",
            )
            for key in labels
        ),
    ]
    return verdicts(checks)


def main() -> int:
    parser = load_parser(__doc__, 8, 2.0, HERE / "results" / "sessions-latest.json")
    parser.add_argument("--list-rounds", type=int, default=3, help="journal fills for ListCalls")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server

    prefix, others = pinned(args.no_pin)
    shape = Load(METHOD, REQUEST, args.concurrency, args.connections, args.duration, args.warmup)
    tagged = dataclasses.replace(shape, headers=((HEADER, SESSION),))
    loadgens = [make_loadgen(shape, args.python_load), make_loadgen(tagged, args.python_load)]
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        try:
            per_round = measure(*loadgens, args.rounds, Path(tmp) / "cache", prefix)
            summary = summarise(per_round)
            summary["in-process us"] = responder_cost()
            timings = list_calls(args.list_rounds, prefix, Path(tmp) / "cache")
        except (BenchError, LoadError) as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            for loadgen in loadgens:
                loadgen.close()
            for child in list(Child.running):
                child.stop()
    summary["list calls s"] = {key: statistics.median(v) for key, v in timings.items()}
    summary["list calls s, all"] = {key: [round(x, 3) for x in v] for key, v in timings.items()}
    meta = {**run_meta(args, loadgens[0], prefix, others), "list_rounds": args.list_rounds}
    checks = report(summary, meta)
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What request validation costs a call: `validation.requests: enforce` against `off`, in one run.

    python bench/validation.py [--rounds 8] [--duration 2] [--python-load] [--no-pin]
    make bench-validation

Throughput (bench/rounds.py: rotating rounds, every server started afresh, servers pinned to
the last CPU): unary bench.v1.Accounts/CreateAccount (bench/protos/bench/v1/validated.proto)
at concurrency 32 from h2load (else bench/load_client.py), with a valid request whose message
has ten rules: a REQUIRED field (google.api.field_behavior), string min_len/max_len, email,
uuid, a pattern, two integer ranges, a repeated min_items, an enum's defined_only and a
message-level CEL rule. Two variants of the emulator serving that contract with default
responses:

- `validation off`: `validation: {requests: off}` (the baseline);
- `enforce`: `validation: {requests: enforce}` (the default); target >= 0.85x.

Each variant's first answers are checked: both answer the valid request; `enforce` refuses an
invalid one with INVALID_ARGUMENT, `off` answers it. Then in this process, the validation
hook's own µs a call (decoding the request and checking it, as the interceptor does) and
Rules.check's alone on a decoded message: the best of 5 rounds.
Prints a table and PASS/FAIL, writes bench/results/validation-latest.json, exits 0 unless the
benchmark itself breaks.
"""

from __future__ import annotations

import functools
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
from run import BenchError, Child, grpc, terminated, verdicts  # noqa: E402 - bench/ helpers

sys.path.insert(0, str(REPO))

PROTOS = HERE / "protos"
METHOD = "/bench.v1.Accounts/CreateAccount"
TARGET_RATIO = 0.85
OFF = "validation off"
ENFORCE = "enforce"
MEDIANS = ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "response_bytes")
VALID = {
    "name": "Ann Example",
    "email": "ann@example.com",
    "request_id": "0b9e2f4c-8d1a-4c3e-9f5b-2a7d6e1c3b40",
    "sku": "ABC-1234",
    "age": 41,
    "seats": 12,
    "tags": ["new", "trial"],
    "plan": "PLAN_PRO",
    "nickname": "ann",
}
INVALID = {**VALID, "email": "not an address", "tags": []}


@functools.cache  # requests() and check_cost() both need them: compiled once
def contracts() -> Any:
    from emulator.contracts import load_contracts

    return load_contracts([str(PROTOS)], [])


def requests() -> tuple[bytes, bytes]:
    """The valid and the invalid request, as bytes; the valid one checked to keep its rules."""
    from google.protobuf import json_format

    from emulator.validation.rules import Rules

    loaded = contracts()
    spec = loaded.methods[METHOD]
    rules = Rules(loaded, [spec.descriptor.input_type])
    out = []
    for fields, broken in ((VALID, False), (INVALID, True)):
        message = json_format.ParseDict(fields, spec.input_class())
        if bool(rules.check(message)) != broken:
            raise BenchError(f"the {'in' if broken else ''}valid request: {rules.check(message)}")
        out.append(message.SerializeToString())
    return out[0], out[1]


def emulator_cmd(config: Path) -> list[str]:
    cmd = [sys.executable, "-m", "emulator", "--proto", str(PROTOS), "--port", "0"]
    return [*cmd, "--config", str(config)]


def create(port: int, request: bytes, wait: float = 0) -> bytes:
    """CreateAccount with `request`; with `wait`, retried until the server answers (any status
    but UNAVAILABLE ends the wait)."""
    deadline = time.perf_counter() + wait
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while True:
            try:
                reply: bytes = channel.unary_unary(METHOD)(request, timeout=5)
                return reply
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.perf_counter() > deadline:
                    raise
                time.sleep(0.005)


def ready(name: str, valid: bytes, invalid: bytes) -> Any:
    def check(child: Child) -> None:
        try:
            create(child.port, valid, wait=60)
        except grpc.RpcError as exc:
            raise BenchError(f"{name}: the valid request answered {exc.code().name}") from exc
        try:
            create(child.port, invalid)
        except grpc.RpcError as exc:
            if name == ENFORCE and exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return
            raise BenchError(f"{name}: the invalid request answered {exc.code().name}") from exc
        if name == ENFORCE:
            raise BenchError("enforce answered the invalid request: validation not applied")

    return check


def measure(
    loadgen: Any, rounds: int, tmp: Path, prefix: list[str], bodies: tuple[bytes, bytes]
) -> dict[str, list[dict[str, Any]]]:
    """Both variants started afresh each round, one at a time (see bench/rounds.py); `bodies`
    the valid and the invalid request."""
    valid, invalid = bodies
    env = {"GRPC_EMULATOR_CACHE_DIR": str(tmp / "cache")}
    variants = []
    for name, mode in ((OFF, "off"), (ENFORCE, "enforce")):
        config = tmp / f"{mode}.yaml"
        config.write_text(f"validation:\n  requests: {mode}\n")
        variants.append(
            Variant(
                name,
                [*prefix, *emulator_cmd(config)],
                ready(name, valid, invalid),
                lambda c: create(c.port, valid),
                env,
            )
        )
    return run_rounds(variants, rounds, loadgen, width=14)


# -- in-process: the validation hook alone -------------------------------------------------------


def check_cost(valid: bytes, calls: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """µs a valid CreateAccount request spends in the validation interceptor's hook (decoding
    it and checking it) and in Rules.check alone on the decoded message, beyond a loop that
    makes the same Call objects: the best of `rounds` runs of `calls`."""
    import asyncio

    from emulator.call import Call
    from emulator.validation.config import ValidationConfig
    from emulator.validation.interceptor import ValidationInterceptor

    loaded = contracts()
    spec = loaded.methods[METHOD]
    interceptor = ValidationInterceptor(ValidationConfig(requests="enforce"), loaded)
    rules = interceptor.plan.rules
    assert rules is not None and METHOD in interceptor.plan.requests
    metadata = (("user-agent", "h2load"), ("content-type", "application/grpc"), ("te", "trailers"))
    message = spec.input_class.FromString(valid)

    async def hook(count: int, bound: bool) -> float:
        started = time.perf_counter()
        for _ in range(count):
            call = Call(spec, metadata, "ipv4:127.0.0.1:1", None)
            call.requests.append(valid)
            if bound:
                await interceptor.on_request(call, 0)
        if bound and call.violations:
            raise BenchError(f"the hook found violations: {call.violations}")
        return (time.perf_counter() - started) / count

    def check(count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            rules.check(message)
        return (time.perf_counter() - started) / count

    async def all_rounds() -> dict[str, float]:
        best = {"hook": float("inf"), "call only": float("inf"), "check": float("inf")}
        await hook(1000, True)  # warm: protovalidate compiles on first use
        for _ in range(rounds):
            best["hook"] = min(best["hook"], await hook(calls, True) * 1e6)
            best["call only"] = min(best["call only"], await hook(calls, False) * 1e6)
            best["check"] = min(best["check"], check(calls) * 1e6)
        return best

    best = asyncio.run(all_rounds())
    return {
        "hook_us": best["hook"] - best["call only"],
        "check_us": best["check"],
        "call_only_us": best["call only"],
    }


# -- summary and report --------------------------------------------------------------------------


def summarise(per_round: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary = two_way(per_round, OFF, ENFORCE, MEDIANS)
    key = "server_cpu_us_per_req"
    summary["cpu_added_us"] = statistics.median(
        e[key] - o[key] for e, o in zip(per_round[ENFORCE], per_round[OFF], strict=True)
    )
    return summary


def report(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    print()
    print(f"load generator: {meta['loadgen']}; CPU pinning: {meta['pinning']}")
    print(
        f"CreateAccount (10 rules, a valid request), concurrency {meta['concurrency']}, "
        f"{meta['rounds']} rotating rounds of {meta['duration']:g}s (+{meta['warmup']:g}s "
        "warm-up); medians over rounds"
    )
    print(f"{'variant':<14} {'RPS':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7}  RPS/round")
    for name in (OFF, ENFORCE):
        r = summary[name]
        print(
            f"{name:<14} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{r['server_cpu_us_per_req']:>7.0f}  {r['rps_per_round']}"
        )
    print_ratio("enforce / off", summary)
    added = summary["cpu_added_us"]
    print(f"server CPU a call added by enforce (median of the rounds' differences): {added:.0f} us")
    cost = summary["in-process us"]
    share = cost["hook_us"] / summary[OFF]["server_cpu_us_per_req"]
    print(
        f"validation in-process: the hook {cost['hook_us']:.1f} us a call (decode and check; "
        f"{share:.1%} of the server CPU a call without), Rules.check alone "
        f"{cost['check_us']:.1f} us"
    )
    low, high = summary["ratio_iqr"]
    checks = [
        (
            f"enforce >= {TARGET_RATIO:.2f}x the throughput of validation off",
            summary["ratio"] >= TARGET_RATIO,
            f"{summary['ratio']:.3f}x (IQR {low:.3f}-{high:.3f}; server CPU per call: "
            f"{summary['cpu_ratio']:.3f}x)",
        )
    ]
    return verdicts(checks)


def main() -> int:
    parser = load_parser(__doc__, 8, 2.0, HERE / "results" / "validation-latest.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops every server

    prefix, others = pinned(args.no_pin)
    try:
        valid, invalid = requests()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    shape = Load(METHOD, valid, args.concurrency, args.connections, args.duration, args.warmup)
    loadgen = make_loadgen(shape, args.python_load)
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        try:
            per_round = measure(loadgen, args.rounds, Path(tmp), prefix, (valid, invalid))
            summary = summarise(per_round)
            summary["in-process us"] = check_cost(valid)
        except (BenchError, LoadError) as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            loadgen.close()
            for child in list(Child.running):
                child.stop()
    meta = {**run_meta(args, loadgen, prefix, others), "request_bytes": len(valid)}
    checks = report(summary, meta)
    write_results(
        args.output, {"meta": meta, "summary": summary, "rounds": per_round, "checks": checks}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

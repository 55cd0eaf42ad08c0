"""The fallback load generator: unary gRPC calls from grpc.aio, in a process of its own.

    python bench/load_client.py --target 127.0.0.1:PORT --method /pkg.Svc/M --body-hex HEX
        [--concurrency 32] [--channels 4] [--duration 5] [--warmup 1]
        [--ca CA.pem [--cert C.pem --key K.pem]] [--token TOKEN] [--header KEY:VALUE ...]
        [--kind unary|server-stream|bidi] [--messages 1]

`--concurrency` coroutines spread over `--channels` channels call the method back to back
with the same request bytes (no (de)serialisation on the client) for a warm-up, then for
`--duration` seconds while every call's latency is recorded. A server-streaming call reads
the whole stream; a bidi call sends `--messages` requests and reads every answer. Prints one
JSON object (`messages`: the response messages read after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import grpc
from loadgen import percentile  # bench/ is sys.path[0] when this runs as a script


async def worker(
    call: Any,
    body: bytes,
    *,
    until_warm: float,
    until_end: float,
    latencies: list[float],
    metadata: tuple[tuple[str, str], ...] | None,
    kind: str = "unary",
    messages: int = 1,
) -> tuple[int, int, int]:
    done = errors = received = 0
    while True:
        start = time.perf_counter()
        if start >= until_end:
            return done, errors, received
        try:
            got = await _one_call(call, body, metadata, kind, messages)
        except grpc.aio.AioRpcError:
            if start >= until_warm:
                errors += 1
            continue
        if start >= until_warm:
            latencies.append(time.perf_counter() - start)
            done += 1
            received += got


async def _one_call(call: Any, body: bytes, metadata: Any, kind: str, messages: int) -> int:
    """One call of `kind`; the response messages it read."""
    if kind == "unary":
        await call(body, timeout=10, metadata=metadata)
        return 1
    if kind == "server-stream":
        stream = call(body, timeout=10, metadata=metadata)
    else:
        stream = call(iter([body] * messages), timeout=10, metadata=metadata)
    count = 0
    async for _ in stream:
        count += 1
    return count


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = bytes.fromhex(args.body_hex)
    pairs = [tuple(h.split(":", 1)) for h in args.header]
    if args.token:
        pairs.append(("authorization", f"Bearer {args.token}"))
    metadata = tuple((k.strip(), v.strip()) for k, v in pairs) or None
    channels = [_channel(args) for _ in range(args.channels)]
    try:
        make = {"unary": "unary_unary", "server-stream": "unary_stream", "bidi": "stream_stream"}
        # bytes in, bytes out
        calls = [getattr(ch, make[args.kind])(args.method) for ch in channels]
        # Connect every channel (and fail loudly if the credentials are refused).
        await asyncio.gather(
            *(_one_call(c, body, metadata, args.kind, args.messages) for c in calls)
        )
        latencies: list[float] = []
        now = time.perf_counter()
        until_warm, until_end = now + args.warmup, now + args.warmup + args.duration
        results = await asyncio.gather(
            *(
                worker(
                    calls[i % len(calls)],
                    body,
                    until_warm=until_warm,
                    until_end=until_end,
                    latencies=latencies,
                    metadata=metadata,
                    kind=args.kind,
                    messages=args.messages,
                )
                for i in range(args.concurrency)
            )
        )
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    latencies.sort()
    done = sum(r[0] for r in results)
    return {
        "requests": done,
        "errors": sum(r[1] for r in results),
        "messages": sum(r[2] for r in results),
        "rps": done / args.duration,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else float("nan"),
    }


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    if not args.ca:
        return grpc.aio.insecure_channel(args.target)
    read = lambda path: open(path, "rb").read() if path else None  # noqa: E731, SIM115
    credentials = grpc.ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))
    return grpc.aio.secure_channel(args.target, credentials)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--body-hex", required=True, help="the serialized request, hex")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--ca", help="TLS: the CA that issued the server certificate")
    parser.add_argument("--cert", help="mTLS: client certificate")
    parser.add_argument("--key", help="mTLS: client key")
    parser.add_argument("--token", help="bearer token sent with every call")
    parser.add_argument("--header", action="append", default=[], help="KEY:VALUE on every call")
    parser.add_argument("--kind", choices=("unary", "server-stream", "bidi"), default="unary")
    parser.add_argument("--messages", type=int, default=1, help="requests a bidi call sends")
    args = parser.parse_args()
    if not args.target.startswith("127.0.0.1:"):
        parser.error("load goes to 127.0.0.1 only")
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

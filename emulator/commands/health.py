"""`emulate health --target HOST:PORT [--service NAME] [TLS flags]`: exit 0 when SERVING.

Usable as a Docker HEALTHCHECK and a Kubernetes exec probe: one line on failure, exit 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emulator._schema import parse_duration

__all__ = ["run"]


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="emulate health", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT (127.0.0.1:50051)")
    parser.add_argument("--service", default="", help="a service name; default: the server")
    parser.add_argument("--timeout", default="2s", help="how long to wait (2s)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA of the server certificate (TLS)")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="client key (mTLS)")
    parser.add_argument("--tls-server-name", metavar="NAME", help="expected server name")
    parser.add_argument("--token", metavar="TOKEN", help="bearer token, if health needs one")
    args = parser.parse_args(list(argv))
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        parser.error(f"--timeout: {exc}")
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        channel = _channel(args)
    except OSError as exc:
        print(f"unhealthy: cannot read {exc.filename}: {exc.strerror}")
        return 1
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service),
                timeout=timeout,
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                print(f"unhealthy: {args.target} does not know the service {args.service!r}")
            else:
                print(f"unhealthy: {args.target}: {exc.code().name}: {exc.details()}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    what = f"{args.service} at {args.target}" if args.service else args.target
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {what} is {status}")
        return 1
    print(f"healthy: {what} is SERVING")
    return 0


def _channel(args: argparse.Namespace) -> Any:
    import grpc as grpc_module

    if not args.tls_ca:
        return grpc_module.insecure_channel(args.target)

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    credentials = grpc_module.ssl_channel_credentials(
        read(args.tls_ca), read(args.tls_key), read(args.tls_cert)
    )
    options = (
        [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    )
    return grpc_module.secure_channel(args.target, credentials, options=options)

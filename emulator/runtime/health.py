"""`grpc.health.v1.Health`, served by grpcio's own `HealthServicer` behind handlers that parse
the request themselves: grpcio's generated ones answer bytes that do not parse with UNKNOWN
("Unexpected DecodeError"), where a client deserves INVALID_ARGUMENT."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from emulator.contracts.builtin import HEALTH_SERVICE
from emulator.runtime.reflection import parse_or_abort

__all__ = ["health_handler"]


def health_handler(servicer: health_aio.HealthServicer) -> grpc.GenericRpcHandler:
    serialize = health_pb2.HealthCheckResponse.SerializeToString

    async def check(data: bytes, context: grpc.aio.ServicerContext) -> Any:
        request = await parse_or_abort(
            health_pb2.HealthCheckRequest, data, "grpc.health.v1.HealthCheckRequest", context
        )
        return await servicer.Check(request, context)

    async def watch(data: bytes, context: grpc.aio.ServicerContext) -> None:
        request = await parse_or_abort(
            health_pb2.HealthCheckRequest, data, "grpc.health.v1.HealthCheckRequest", context
        )
        await servicer.Watch(request, context)  # writes its responses with context.write

    return grpc.method_handlers_generic_handler(
        HEALTH_SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(check, response_serializer=serialize),
            "Watch": grpc.unary_stream_rpc_method_handler(watch, response_serializer=serialize),
        },
    )

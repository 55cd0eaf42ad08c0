"""`emulator.admin.v1.Admin` over gRPC: the operation table, served as a generic handler.

Beside the emulated services, never through their chain: admin calls are not journalled, and the
emulated services' tokens and policies neither admit nor refuse them (`AdminGuard` does).
Requests arrive as bytes, parsed here, so bytes that do not parse get INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from emulator.admin.descriptor import pb
from emulator.admin.guard import AdminGuard
from emulator.admin.operations import OPERATIONS, AdminError, Operation, Operations
from emulator.call import first_value
from emulator.contracts.builtin import ADMIN_SERVICE
from emulator.runtime.reflection import parse_or_abort

__all__ = ["AdminHandler", "abort"]


async def abort(context: grpc.aio.ServicerContext, error: AdminError) -> None:
    """End the call with the error's status; a bad field goes as google.rpc.BadRequest."""
    trailers: tuple[tuple[str, bytes], ...] = ()
    if error.field:
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=error.field, description=error.message)
        packed = any_pb2.Any()
        packed.Pack(bad)
        status = status_pb2.Status(
            code=error.code.value[0], message=error.message, details=[packed]
        )
        trailers = (("grpc-status-details-bin", status.SerializeToString()),)
    await context.abort(error.code, error.message, trailers)


class AdminHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, operations: Operations, guard: AdminGuard) -> None:
        self._operations = operations
        self._guard = guard
        self._header = operations.control.session_header
        self._methods = {f"/{ADMIN_SERVICE}/{op.name}": self._handler(op) for op in OPERATIONS}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._methods.get(details.method)

    async def _admitted(self, request: bytes, context: Any, op: Operation) -> tuple[Any, str]:
        """The parsed request and the call's session header, once the guard admits it."""
        metadata = tuple(context.invocation_metadata() or ())
        if not self._guard.open:
            from emulator.security.identity import names_in_certificate

            pem = context.auth_context().get("x509_pem_cert")
            try:
                self._guard.admit(metadata, names_in_certificate(pem[0]) if pem else ())
            except AdminError as refused:
                await abort(context, refused)
        cls = getattr(pb, op.request)
        parsed = await parse_or_abort(cls, request, cls.DESCRIPTOR.full_name, context)
        session = first_value(metadata, self._header)
        return parsed, session if isinstance(session, str) else ""

    def _handler(self, op: Operation) -> grpc.RpcMethodHandler:
        serialize: Callable[[Any], bytes] = lambda message: message.SerializeToString()  # noqa: E731
        operations = self._operations
        if op.streaming:

            async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                parsed, session = await self._admitted(request, context, op)
                try:
                    async for message in operations.watch(parsed, session or None):
                        yield serialize(message)
                except AdminError as error:
                    await abort(context, error)

            return grpc.unary_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: Any) -> bytes:
            parsed, session = await self._admitted(request, context, op)
            try:
                answer = await operations.run(op.name, parsed, session or None)
            except AdminError as error:
                await abort(context, error)
            return serialize(answer)

        return grpc.unary_unary_rpc_method_handler(unary)

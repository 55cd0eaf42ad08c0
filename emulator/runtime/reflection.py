"""Server reflection, under both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

grpcio-reflection only speaks v1alpha and cannot resolve a method symbol (`pkg.Svc.Method`), which
`grpcurl describe` asks for. Both protocol versions share their messages' wire format, so one
implementation over the v1alpha message classes answers both paths from the contracts' pool.
Each request is answered from the snapshot served at that moment: after a swap, the next
request of an open stream already lists the new services.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_reflection.v1alpha import reflection_pb2 as pb

from emulator.contracts.builtin import REFLECTION_SERVICES
from emulator.contracts.model import Contracts

if TYPE_CHECKING:
    from emulator.runtime.snapshot import Served

__all__ = ["ReflectionHandler", "parse_or_abort"]

M = TypeVar("M", bound=Message)


class ReflectionHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, served: Served) -> None:
        self._served = served
        # Requests arrive as bytes and are parsed here: grpcio would answer bytes that do not
        # parse with UNKNOWN "Unexpected DecodeError" instead of INVALID_ARGUMENT.
        self._paths = {
            f"/{name}/ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                self._info_for(name.rpartition(".")[0] + ".ServerReflectionRequest"),
                response_serializer=pb.ServerReflectionResponse.SerializeToString,
            )
            for name in REFLECTION_SERVICES
        }

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._paths.get(details.method)

    def _info_for(self, type_name: str) -> Any:
        # A closure, not functools.partial: grpc.aio must see an async generator function.
        async def info(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[pb.ServerReflectionResponse]:
            async for data in requests:
                request = await parse_or_abort(pb.ServerReflectionRequest, data, type_name, context)
                response = self._answer(request)
                response.valid_host = request.host
                response.original_request.CopyFrom(request)
                yield response

        return info

    def _answer(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        kind = request.WhichOneof("message_request")
        snapshot = self._served.snapshot
        contracts = snapshot.contracts
        pool = contracts.pool
        try:
            if kind == "list_services":
                return pb.ServerReflectionResponse(
                    list_services_response=pb.ListServiceResponse(
                        service=[pb.ServiceResponse(name=n) for n in sorted(snapshot.services)]
                    )
                )
            if kind == "file_by_filename":
                return _files(contracts, request.file_by_filename)
            if kind == "file_containing_symbol":
                symbol = request.file_containing_symbol
                return _files(contracts, _file_of_symbol(contracts, symbol))
            if kind == "file_containing_extension":
                ext = request.file_containing_extension
                message = pool.FindMessageTypeByName(ext.containing_type)
                field = pool.FindExtensionByNumber(message, ext.extension_number)
                return _files(contracts, typing.cast(Any, field).file.name)
            if kind == "all_extension_numbers_of_type":
                message = pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(f.number for f in pool.FindAllExtensions(message))
                return pb.ServerReflectionResponse(
                    all_extension_numbers_response=pb.ExtensionNumberResponse(
                        base_type_name=message.full_name, extension_number=numbers
                    )
                )
        except KeyError as exc:
            return _error(
                grpc.StatusCode.NOT_FOUND, f"not found: {exc.args[0] if exc.args else exc}"
            )
        return _error(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported reflection request {kind!r}")


def _file_of_symbol(contracts: Contracts, symbol: str) -> str:
    pool = contracts.pool
    try:
        return str(pool.FindFileContainingSymbol(symbol).name)
    except KeyError:
        # `pkg.Svc.Method`: the file of the service that declares the method.
        parent, _, member = symbol.rpartition(".")
        try:
            service = pool.FindServiceByName(parent) if parent else None
        except KeyError:
            service = None  # name the symbol asked for, not its parent
        if service is not None and member in service.methods_by_name:
            return str(service.file.name)
        raise KeyError(f"symbol {symbol}") from None


def _files(contracts: Contracts, name: str) -> pb.ServerReflectionResponse:
    protos = contracts.file_protos
    if name not in protos:
        raise KeyError(f"file {name}")
    ordered: list[str] = []
    pending = [name]
    while pending:
        current = pending.pop()
        if current in ordered:
            continue
        ordered.append(current)
        pending.extend(protos[current].dependency)
    return pb.ServerReflectionResponse(
        file_descriptor_response=pb.FileDescriptorResponse(
            file_descriptor_proto=[protos[n].SerializeToString() for n in ordered]
        )
    )


async def parse_or_abort(
    cls: type[M], data: bytes, type_name: str, context: grpc.aio.ServicerContext
) -> M:
    """`data` parsed as `cls`; a call whose bytes do not parse ends with INVALID_ARGUMENT."""
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError) as exc:  # RuntimeError: some protobuf builds
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid {type_name}: {exc}"
        )
        raise AssertionError("abort() raises") from None


def _error(code: grpc.StatusCode, message: str) -> pb.ServerReflectionResponse:
    return pb.ServerReflectionResponse(
        error_response=pb.ErrorResponse(error_code=code.value[0], error_message=message)
    )

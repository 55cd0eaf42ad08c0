"""Server reflection, under both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

grpcio-reflection only speaks v1alpha and cannot resolve a method symbol (`pkg.Svc.Method`), which
`grpcurl describe` asks for. Both protocol versions share their messages' wire format, so one
implementation over the v1alpha message classes answers both paths from the contracts' pool.
Each request is answered from the snapshot served at that moment: after a swap, the next
request of an open stream already lists the new services.

Hidden methods (`unimplemented_hidden`) are cut out of the file descriptors it serves, and a
service left without methods goes with them, as if the contract never had them; their messages
stay, since other services may use them. What a snapshot shows (`Catalogue`) is worked out once,
when the snapshot is built.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError, Message
from grpc_reflection.v1alpha import reflection_pb2 as pb

from emulator.contracts.builtin import REFLECTION_SERVICES
from emulator.contracts.model import Contracts

__all__ = ["Catalogue", "ReflectionHandler", "parse_or_abort"]

M = TypeVar("M", bound=Message)

# Field numbers in a FileDescriptorProto's source code info paths.
_SERVICE = descriptor_pb2.FileDescriptorProto.SERVICE_FIELD_NUMBER
_METHOD = descriptor_pb2.ServiceDescriptorProto.METHOD_FIELD_NUMBER


class _Shown(Protocol):
    @property
    def catalogue(self) -> Catalogue: ...


class _Served(Protocol):
    """What holds the snapshot being served (the server; see emulator.runtime.snapshot)."""

    @property
    def snapshot(self) -> _Shown: ...


class ReflectionHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, served: _Served) -> None:
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
        catalogue = self._served.snapshot.catalogue
        pool = catalogue.contracts.pool
        try:
            if kind == "list_services":
                return pb.ServerReflectionResponse(
                    list_services_response=pb.ListServiceResponse(
                        service=[pb.ServiceResponse(name=n) for n in catalogue.services]
                    )
                )
            if kind == "file_by_filename":
                return catalogue.files(request.file_by_filename)
            if kind == "file_containing_symbol":
                symbol = request.file_containing_symbol
                return catalogue.files(catalogue.file_of_symbol(symbol))
            if kind == "file_containing_extension":
                ext = request.file_containing_extension
                message = pool.FindMessageTypeByName(ext.containing_type)
                field = pool.FindExtensionByNumber(message, ext.extension_number)
                return catalogue.files(typing.cast(Any, field).file.name)
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


class Catalogue:
    """What reflection shows of one snapshot: `services` are the names listed; `hidden` the
    method paths (`/pkg.Svc/Method`) left out of the file descriptors."""

    def __init__(
        self, contracts: Contracts, services: Iterable[str], hidden: Collection[str] = ()
    ) -> None:
        self.contracts = contracts
        self.protos = dict(contracts.file_protos)
        self.hidden_symbols: set[str] = set()
        for name, proto in contracts.file_protos.items():
            stripped = _without(proto, hidden, self.hidden_symbols)
            if stripped is not None:
                self.protos[name] = stripped
        self.services = sorted(s for s in services if s not in self.hidden_symbols)

    def file_of_symbol(self, symbol: str) -> str:
        if symbol in self.hidden_symbols:
            raise KeyError(f"symbol {symbol}")
        pool = self.contracts.pool
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

    def files(self, name: str) -> pb.ServerReflectionResponse:
        protos = self.protos
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


def _without(
    proto: descriptor_pb2.FileDescriptorProto, hidden: Collection[str], symbols: set[str]
) -> descriptor_pb2.FileDescriptorProto | None:
    """A copy of `proto` without the `hidden` methods, and without the services that leaves
    empty (their names, and the hidden methods' `pkg.Svc.Method`, are added to `symbols`);
    None when it declares none of them."""
    prefix = f"{proto.package}." if proto.package else ""
    # Old index → new index, of each service kept and of each method it keeps.
    kept: dict[int, tuple[int, dict[int, int]]] = {}
    for s, service in enumerate(proto.service):
        name = prefix + service.name
        shown = []
        for m, method in enumerate(service.method):
            if f"/{name}/{method.name}" in hidden:
                symbols.add(f"{name}.{method.name}")
            else:
                shown.append(m)
        if service.method and not shown:
            symbols.add(name)
        else:
            kept[s] = (len(kept), {old: new for new, old in enumerate(shown)})
    if len(kept) == len(proto.service) and all(
        len(kept[s][1]) == len(service.method) for s, service in enumerate(proto.service)
    ):
        return None
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(proto)
    del out.service[:]
    for s, (_, renumbered) in kept.items():
        service = out.service.add()
        service.CopyFrom(proto.service[s])
        del service.method[:]
        service.method.extend(proto.service[s].method[m] for m in renumbered)
    # Comments are located by index path (service 2, method 1): renumber them, or grpcurl
    # would show a hidden method's comment on the method that took its place.
    locations = []
    for location in proto.source_code_info.location:
        path = list(location.path)
        if len(path) >= 2 and path[0] == _SERVICE:
            if path[1] not in kept:
                continue
            path[1], methods = kept[path[1]]
            if len(path) >= 4 and path[2] == _METHOD:
                if path[3] not in methods:
                    continue
                path[3] = methods[path[3]]
        moved = type(location)()
        moved.CopyFrom(location)
        moved.path[:] = path
        locations.append(moved)
    del out.source_code_info.location[:]
    out.source_code_info.location.extend(locations)
    if not locations:
        out.ClearField("source_code_info")
    return out


def _error(code: grpc.StatusCode, message: str) -> pb.ServerReflectionResponse:
    return pb.ServerReflectionResponse(
        error_response=pb.ErrorResponse(error_code=code.value[0], error_message=message)
    )

"""What the emulator knows about the contracts: services, methods and their message classes.

All descriptors live in a private `DescriptorPool`, never the process-wide default one, so that
contracts that also exist as generated modules (googleapis, grpc health, ...) do not clash and two
emulators in one process stay apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message, message_factory

from emulator.contracts.builtin import BUILTIN_SERVICES
from emulator.contracts.fingerprint import Fingerprints, fingerprints
from emulator.errors import ContractError

__all__ = ["Contracts", "MethodSpec", "RpcKind", "ServiceSpec"]


class RpcKind(enum.Enum):
    """The four shapes of an RPC, from the method's client_streaming and server_streaming."""

    UNARY_UNARY = "unary"
    UNARY_STREAM = "server streaming"
    STREAM_UNARY = "client streaming"
    STREAM_STREAM = "bidi streaming"

    @classmethod
    def of(
        cls, method: descriptor.MethodDescriptor | descriptor_pb2.MethodDescriptorProto
    ) -> RpcKind:
        client, server = method.client_streaming, method.server_streaming
        if client:
            return cls.STREAM_STREAM if server else cls.STREAM_UNARY
        return cls.UNARY_STREAM if server else cls.UNARY_UNARY

    @property
    def client_streaming(self) -> bool:
        return self in (RpcKind.STREAM_UNARY, RpcKind.STREAM_STREAM)

    @property
    def server_streaming(self) -> bool:
        return self in (RpcKind.UNARY_STREAM, RpcKind.STREAM_STREAM)


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodSpec:
    """One RPC: `name` is `pkg.Service/Method`, `path` the HTTP/2 path `/pkg.Service/Method`."""

    service: str
    method: str
    kind: RpcKind
    descriptor: descriptor.MethodDescriptor = field(repr=False)
    input_class: type[message.Message] = field(repr=False)
    output_class: type[message.Message] = field(repr=False)
    # Read several times per call: computed once.
    name: str = field(init=False)
    path: str = field(init=False)
    # A client stream with one response: its default answer is keyed by a digest of all its
    # requests (read by every call's record; an enum property costs a Python call).
    digests_requests: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"{self.service}/{self.method}")
        object.__setattr__(self, "path", f"/{self.service}/{self.method}")
        object.__setattr__(self, "digests_requests", self.kind is RpcKind.STREAM_UNARY)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    name: str
    file: str
    methods: Mapping[str, MethodSpec]
    descriptor: descriptor.ServiceDescriptor = field(repr=False)


class Contracts:
    """The loaded contracts: a private descriptor pool and the services the user's files declare."""

    def __init__(
        self,
        files: descriptor_pb2.FileDescriptorSet,
        extra_files: Iterable[descriptor_pb2.FileDescriptorProto] = (),
    ) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        self.file_protos: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        user_files = [f.name for f in files.file]
        # The contracts' own files (and their imports), not the ones the emulator adds (health,
        # reflection): only these are fingerprinted.
        self.user_files: tuple[str, ...] = tuple(dict.fromkeys(user_files))
        self._fingerprints: Fingerprints | None = None
        for proto in _dependency_order([*files.file, *extra_files]):
            try:
                self.pool.Add(proto)
            except Exception as exc:  # the pool raises TypeError or KeyError by implementation
                raise ContractError(f"{proto.name}: cannot be loaded: {exc}") from None
            self.file_protos[proto.name] = proto
        services: dict[str, ServiceSpec] = {}
        for name in user_files:
            file_desc = self.pool.FindFileByName(name)
            for svc in file_desc.services_by_name.values():
                # A vendored copy of health or reflection is served by the real thing.
                if svc.full_name not in BUILTIN_SERVICES:
                    services[svc.full_name] = self._service(svc)
        self.services: Mapping[str, ServiceSpec] = MappingProxyType(services)
        self.methods: Mapping[str, MethodSpec] = MappingProxyType(
            {m.path: m for s in services.values() for m in s.methods.values()}
        )

    def _service(self, svc: descriptor.ServiceDescriptor) -> ServiceSpec:
        methods = {
            m.name: MethodSpec(
                service=svc.full_name,
                method=m.name,
                kind=RpcKind.of(m),
                descriptor=m,
                input_class=self.message_class(m.input_type),
                output_class=self.message_class(m.output_type),
            )
            for m in svc.methods
        }
        return ServiceSpec(
            name=svc.full_name,
            file=svc.file.name,
            methods=MappingProxyType(methods),
            descriptor=svc,
        )

    def message_class(self, desc: descriptor.Descriptor) -> type[message.Message]:
        cls: type[message.Message] = message_factory.GetMessageClass(desc)
        return cls

    def message_class_by_name(self, full_name: str) -> type[message.Message]:
        return self.message_class(self.pool.FindMessageTypeByName(full_name))

    def method(self, name: str) -> MethodSpec | None:
        """Look a method up by `pkg.Svc/Method`, `/pkg.Svc/Method` or `pkg.Svc.Method`."""
        key = name if name.startswith("/") else "/" + name
        if key in self.methods:
            return self.methods[key]
        service, _, method_name = name.lstrip("/").rpartition(".")
        spec = self.services.get(service)
        return spec.methods.get(method_name) if spec else None

    @property
    def fingerprints(self) -> Fingerprints:
        """Digests of the contracts, of each file, service, method and type (computed once:
        loaded contracts never change)."""
        if self._fingerprints is None:
            files = [self.file_protos[name] for name in self.user_files]
            self._fingerprints = fingerprints(files, self.services)
        return self._fingerprints

    @property
    def fingerprint(self) -> str:
        """The contracts' fingerprint: what the start-up log, GetInfo and journals show."""
        return self.fingerprints.fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            name: {m.method: m.kind.value for m in svc.methods.values()}
            for name, svc in self.services.items()
        }


def _dependency_order(
    protos: Iterable[descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Each file after its imports, whatever order the descriptor sets listed them in.

    The first copy of a name wins: the user's own copy of a file the emulator also serves (health).
    """
    by_name: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for proto in protos:
        by_name.setdefault(proto.name, proto)
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    done: set[str] = set()
    for name, proto in by_name.items():
        if name in done:
            continue
        visiting = {name}
        stack = [(name, iter(proto.dependency))]
        while stack:
            current, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                visiting.discard(current)
                done.add(current)
                ordered.append(by_name[current])
            elif dep in done or dep in visiting:
                continue  # a cycle is left for the pool to report
            elif dep not in by_name:
                raise ContractError(
                    f"{current} imports {dep}, which none of the contracts holds: write descriptor "
                    "sets with `protoc --include_imports` (buf build includes imports) or pass the "
                    "file that defines it with --proto"
                )
            else:
                visiting.add(dep)
                stack.append((dep, iter(by_name[dep].dependency)))
    return ordered

"""Descriptors of the services every emulator serves beside the user's: health and reflection.

They join the contracts' pool so that reflection can describe them like any other service.
grpcio-reflection ships only the v1alpha protocol; v1 is the same messages in another package,
so its file is derived from the v1alpha one rather than vendored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pb2

__all__ = [
    "ADMIN_SERVICE",
    "BUILTIN_SERVICES",
    "HEALTH_SERVICE",
    "REFLECTION_SERVICES",
    "builtin_files",
]

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
BUILTIN_SERVICES = frozenset({HEALTH_SERVICE, *REFLECTION_SERVICES})
# The admin API is served beside them (emulator.admin), outside the emulated services' security
# and journal, so it is not among them.
ADMIN_SERVICE = "emulator.admin.v1.Admin"
# Its compiled descriptor, read as data: the contracts layer imports nothing of emulator.admin.
_ADMIN_BINPB = Path(__file__).resolve().parent.parent / "admin" / "admin.binpb"


# grpcio-health-checking and grpcio-reflection register their files as `grpc_health/...` and
# `grpc_reflection/...`; reflection clients and users' vendored copies use the upstream names
# (grpc/grpc-proto), so a user's own copy of one of these files replaces ours instead of clashing.
HEALTH_FILE = "grpc/health/v1/health.proto"
REFLECTION_V1ALPHA_FILE = "grpc/reflection/v1alpha/reflection.proto"
REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


@functools.cache
def builtin_files() -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    health = descriptor_pb2.FileDescriptorProto.FromString(health_pb2.DESCRIPTOR.serialized_pb)
    health.name = HEALTH_FILE
    v1alpha = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    v1alpha.name = REFLECTION_V1ALPHA_FILE
    v1 = descriptor_pb2.FileDescriptorProto()
    v1.CopyFrom(v1alpha)
    v1.name = REFLECTION_V1_FILE
    v1.package = "grpc.reflection.v1"
    v1.options.Clear()
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."

    def rename(type_name: str) -> str:
        return new + type_name[len(old) :] if type_name.startswith(old) else type_name

    def retarget(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for msg in messages:
            for fld in msg.field:
                if fld.HasField("type_name"):  # assigning even "" would set the field
                    fld.type_name = rename(fld.type_name)
            retarget(msg.nested_type)

    retarget(v1.message_type)
    for svc in v1.service:
        for method in svc.method:
            method.input_type = rename(method.input_type)
            method.output_type = rename(method.output_type)
    from google.protobuf import struct_pb2, timestamp_pb2

    # The admin API's messages need these two; a contract's own copy, if any, comes first.
    imports = tuple(
        descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        for module in (struct_pb2, timestamp_pb2)
    )
    admin = descriptor_pb2.FileDescriptorProto.FromString(_ADMIN_BINPB.read_bytes())
    return (health, v1alpha, v1, *imports, admin)

"""Descriptors of the services every emulator serves beside the user's: health and reflection.

They join the contracts' pool so that reflection can describe them like any other service.
grpcio-reflection ships only the v1alpha protocol; v1 is the same messages in another package,
so its file is derived from the v1alpha one rather than vendored.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2

__all__ = ["HEALTH_SERVICE", "REFLECTION_SERVICES", "builtin_files"]

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


@functools.cache
def builtin_files() -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    health = descriptor_pb2.FileDescriptorProto.FromString(health_pb2.DESCRIPTOR.serialized_pb)
    v1alpha = descriptor_pb2.FileDescriptorProto.FromString(reflection_pb2.DESCRIPTOR.serialized_pb)
    v1 = descriptor_pb2.FileDescriptorProto()
    v1.CopyFrom(v1alpha)
    v1.name = "grpc/reflection/v1/reflection.proto"
    v1.package = "grpc.reflection.v1"
    v1.options.Clear()
    prefix = ".grpc.reflection.v1alpha."
    for msg in v1.message_type:
        for fld in msg.field:
            if fld.type_name.startswith(prefix):
                fld.type_name = ".grpc.reflection.v1." + fld.type_name[len(prefix) :]
    for svc in v1.service:
        for method in svc.method:
            method.input_type = method.input_type.replace(prefix, ".grpc.reflection.v1.")
            method.output_type = method.output_type.replace(prefix, ".grpc.reflection.v1.")
    return (health, v1alpha, v1)

"""The admin API's descriptor: `admin.proto`, shipped compiled as `admin.binpb`.

The compiled form (a FileDescriptorProto, not generated Python) is independent of the protobuf
runtime's version and costs no protoc run at start-up; `tests/test_admin_descriptor.py` fails
when it no longer matches the `.proto` (`python -m emulator.admin.descriptor` rewrites it).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

__all__ = ["ADMIN_FILE", "ADMIN_SERVICE", "admin_file", "compile_admin", "pb", "service"]

from emulator.contracts.builtin import ADMIN_SERVICE

ADMIN_FILE = "emulator/admin/v1/admin.proto"  # as reflection names it: never a user's admin.proto
HERE = Path(__file__).resolve().parent


@functools.cache
def admin_file() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString((HERE / "admin.binpb").read_bytes())


@functools.cache
def _file() -> Any:
    # The process-wide pool, where struct.proto and timestamp.proto already are: the admin
    # messages' Struct and Timestamp fields are then the protobuf runtime's own classes.
    from google.protobuf import struct_pb2, timestamp_pb2  # noqa: F401 - into the pool

    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(ADMIN_FILE)
    except KeyError:
        pool.AddSerializedFile(admin_file().SerializeToString())
        return pool.FindFileByName(ADMIN_FILE)


class _Messages:
    """`pb.GetInfoRequest`, `pb.CallRecord`, ...: the admin API's message classes."""

    def __getattr__(self, name: str) -> Any:
        found = _file().message_types_by_name.get(name)
        if found is None:
            raise AttributeError(f"no message {name} in {ADMIN_FILE}")
        cls = message_factory.GetMessageClass(found)
        setattr(self, name, cls)
        return cls


pb: Any = _Messages()


def service() -> ServiceDescriptor:
    found: ServiceDescriptor = _file().services_by_name["Admin"]
    return found


def compile_admin() -> descriptor_pb2.FileDescriptorProto:
    """admin.proto compiled now (for the check, and to rewrite admin.binpb)."""
    from emulator.contracts.compiler import compile_contracts

    files = compile_contracts([HERE / "admin.proto"])
    [compiled] = [f for f in files.file if f.name == "admin.proto"]
    compiled.name = ADMIN_FILE
    compiled.ClearField("source_code_info")
    return compiled


if __name__ == "__main__":
    (HERE / "admin.binpb").write_bytes(compile_admin().SerializeToString(deterministic=True))
    print(f"wrote {HERE / 'admin.binpb'}")

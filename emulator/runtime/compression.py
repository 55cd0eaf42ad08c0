"""Response compression: the names config and behaviours use, and grpc's algorithm for each.

grpcio decompresses requests before the emulator sees a byte, and keeps `grpc-encoding` out of
the invocation metadata: whether a request came compressed cannot be known here (docs say so).
"""

from __future__ import annotations

import grpc

__all__ = ["NAMES", "algorithm", "compression_name"]

_ALGORITHMS = {
    "identity": grpc.Compression.NoCompression,
    "none": grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
}
NAMES = tuple(_ALGORITHMS)
_NAMES = {value: name for name, value in reversed(_ALGORITHMS.items())}  # NoCompression: identity


def compression_name(value: object, where: str) -> str:
    """`value` (a name, any case, or a `grpc.Compression`) as its wire name: identity, gzip or
    deflate. ValueError names `where` and the choices."""
    if isinstance(value, grpc.Compression):
        return _NAMES[value]
    name = value.lower() if isinstance(value, str) else None
    if name not in _ALGORITHMS:
        raise ValueError(
            f"{where}: unknown compression {value!r}; use one of {', '.join(map(repr, NAMES))} "
            "or a grpc.Compression"
        )
    return "identity" if name == "none" else name


def algorithm(name: str) -> grpc.Compression:
    """grpc's algorithm for a name `compression_name` accepts."""
    return _ALGORITHMS[name]

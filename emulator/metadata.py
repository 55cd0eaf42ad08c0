"""gRPC metadata checked before it is sent: what grpc would refuse is refused here, by name.

grpc reports bad metadata only once the status is on its way (the client sees `INTERNAL
"Invalid metadata"` while the server believes it sent something else, and a `str` value for a
`-bin` key leaves the call hanging), so every header, trailer and abort a behaviour sets is
checked when it is set, where the mistake can still be named. A leaf module: it imports nothing
of ours, so `errors.RpcAbort` can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_DETAILS",
    "MAX_STATUS_BYTES",
    "MetadataError",
    "checked",
    "encoded_size",
    "size",
    "truncated",
]

Pairs = tuple[tuple[str, str | bytes], ...]

# gRPC's default limit for all the metadata of a response (headers or trailers) is 8 KiB at the
# client (grpc.max_metadata_size); above it calls fail with RESOURCE_EXHAUSTED at random.
MAX_STATUS_BYTES = 8 * 1024
# A status message is sent percent-encoded in the trailers: keep it well inside that limit.
MAX_DETAILS = 2048

_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALUE = re.compile(r"[\x20-\x7e]*")


class MetadataError(ValueError):
    """Metadata that grpc cannot send; the message names the key and what to do."""


def checked(
    metadata: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]], what: str
) -> Pairs:
    """`metadata` as lower-cased pairs, or MetadataError naming the first pair grpc would refuse.

    Keys: letters, digits, `-`, `_`, `.`. Values: printable ASCII text, or bytes for keys ending
    in `-bin` (binary headers, sent base64-encoded).
    """
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    pairs = []
    for raw_key, value in items:
        if not isinstance(raw_key, str):
            raise MetadataError(f"{what}: key {raw_key!r} is not a string")
        key = raw_key.lower()
        if not _KEY.fullmatch(key):
            raise MetadataError(
                f"{what}: key {raw_key!r} is not a valid gRPC metadata key; use letters, digits, "
                "'-', '_' and '.' only"
            )
        if key.endswith("-bin"):
            if not isinstance(value, bytes):
                raise MetadataError(
                    f"{what}: {key!r} is a binary header (it ends in -bin): its value must be "
                    f"bytes, not {type(value).__name__}"
                )
        elif isinstance(value, str | bytes):
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if not _VALUE.fullmatch(text):
                raise MetadataError(
                    f"{what}: the value of {key!r} must be printable ASCII (no line breaks or "
                    "non-ASCII characters); encode it, or send bytes under a key ending in -bin"
                )
        else:
            raise MetadataError(
                f"{what}: the value of {key!r} must be str (or bytes for a -bin key), not "
                f"{type(value).__name__}"
            )
        pairs.append((key, value))
    total = size(tuple(pairs))
    if total > MAX_STATUS_BYTES:
        raise MetadataError(
            f"{what}: {total} bytes of metadata, over gRPC's {MAX_STATUS_BYTES} byte limit "
            "(clients refuse more): send less"
        )
    return tuple(pairs)


def encoded_size(message: str) -> int:
    """Bytes a status message takes as `grpc-message`: UTF-8, percent-encoded outside
    printable ASCII (so one emoji is 12 bytes)."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in message.encode())


def truncated(message: str, limit: int = MAX_DETAILS) -> str:
    """A status message short enough to travel, by its encoded size: grpc clients refuse
    trailers over their limit."""
    if encoded_size(message) <= limit:
        return message
    budget, kept = limit - 60, 0
    for index, char in enumerate(message):
        kept += encoded_size(char)
        if kept > budget:
            return f"{message[:index]}... ({len(message) - index} more characters cut)"
    return message  # pragma: no cover - the loop always cuts


def size(pairs: Pairs) -> int:
    """Bytes the pairs take in HTTP/2 headers (as HPACK counts them: +32 per entry)."""
    # A -bin value travels base64-encoded: 4 bytes for every 3.
    return sum(
        len(k) + 32 + ((len(v) * 4 + 2) // 3 if k.endswith("-bin") else len(v)) for k, v in pairs
    )

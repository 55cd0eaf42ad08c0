"""Protobuf wire bytes written by hand, for the admin API's big answers.

A ListCalls page of 10,000 calls is megabytes: its JSON forms (Structs) and the page around its
records are written as bytes, never built as messages field by field in Python, and protobuf's
C parser (the client's, or ours for the HTTP door) reads them. Tests hold the writers to bytes
protobuf parses back into the messages it would have built.
"""

from __future__ import annotations

__all__ = ["delimited", "small", "varint"]

small = [bytes([n]) for n in range(128)]  # varints below 128: one byte, made once


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return small[n]
    if n < 0:  # int32 and int64 negatives: ten bytes of two's complement, as protobuf writes
        n += 1 << 64
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field (string, bytes, message) from its tag and its bytes."""
    size = len(data)
    return tag + (small[size] if size < 128 else varint(size)) + data

"""OTLP trace export requests written straight to protobuf's wire format, as bytes.

opentelemetry's `encode_spans` builds a protobuf message per span, attribute and value in
Python and costs tens of µs a span, in the exporter's thread but holding the GIL, so the
server's event loop waits. This writes the same `ExportTraceServiceRequest` as bytes: the
message `ExportTraceServiceRequest.FromString` reads from them equals the standard encoder's,
field for field, presence included (an empty `status` or `scope` is there as it is there).

The emulator's spans repeat themselves: the same keys, and mostly the same values (rpc.system,
rpc.service, rpc.method, server.address, status codes). So the encoded field of a (key, value)
of type str, bool or int is kept in a bounded dict per place (span, event, link), and the
encoded resource and scope of a provider are kept with the object they came from. Anything
unusual — None, bytes, mappings, subclasses, values that do not fit — goes through
opentelemetry's own `_encode_key_value`, so it is encoded (or refused and logged) exactly as
the standard encoder does; and a span holding what the SDK never puts there (a name in bytes,
a negative count) sends the whole batch through the standard encoder.

Fields are written in field-number order, as protobuf's own serializer writes them, so the bytes
are the standard encoder's `SerializeToString()` too (the tests check both).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from emulator._bounded import IdentityCache

__all__ = ["encode_spans"]

_logger = logging.getLogger(__name__)

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_BYTE = [bytes((i,)) for i in range(0x80)]
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64 = (1 << 64) - 1

# Span.kind: opentelemetry.proto.trace.v1.Span.SpanKind (the SDK's value + 1), field 6.
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# Span.flags (fixed32, field 16) as the standard encoder sets them: only the "has is-remote" bit,
# and "is remote" when the parent is (the W3C trace flags are not copied in).
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_SPAN_FLAGS = {
    False: b"\x85\x01" + _HAS_IS_REMOTE.to_bytes(4, "little"),
    True: b"\x85\x01" + (_HAS_IS_REMOTE | _IS_REMOTE).to_bytes(4, "little"),
}
_LINK_FLAGS = {remote: b"\x35" + flags[2:] for remote, flags in _SPAN_FLAGS.items()}  # field 6
_EMPTY_STATUS = b"\x7a\x00"  # Status(UNSET): an empty Status, present all the same
_NO_SCOPE = b"\x0a\x00"  # a span without a scope: an empty InstrumentationScope, still present

# Encoded attribute fields by (key, value) for a str value, (key, value, type) for an int or a
# bool: one dict per place, as each place has its own field number. Cleared, not evicted, when
# full: unique values (request ids) would otherwise grow it, and refilling the few common ones
# costs a handful of encodings.
_CACHE_MAX = 4096
_SPAN_ATTRIBUTES: dict[tuple[Any, ...], bytes] = {}
_EVENT_ATTRIBUTES: dict[tuple[Any, ...], bytes] = {}
_LINK_ATTRIBUTES: dict[tuple[Any, ...], bytes] = {}
# Span and event names repeat as much (a method's name), bounded alike.
_SPAN_NAMES: dict[str, bytes] = {}
_EVENT_NAMES: dict[str, bytes] = {}

# Encoded resources and scopes, by identity. Providers are few; bounded all the same.
_Scope = InstrumentationScope | None
_RESOURCES: IdentityCache[Resource, tuple[bytes, bytes]] = IdentityCache(256)
_SCOPES: IdentityCache[InstrumentationScope, tuple[bytes, bytes]] = IdentityCache(256)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized `ExportTraceServiceRequest` of `spans`, grouped as the standard encoder
    groups them: by resource, then by instrumentation scope (both by value, in the order first
    seen), spans in their order."""
    try:
        return _encode(spans)
    except Exception:
        # A span with something the SDK does not make (a name in bytes, no context): what the
        # standard encoder makes of it, or the error it raises.
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as standard

        return standard(spans).SerializeToString()


def _encode(spans: Sequence[ReadableSpan]) -> bytes:
    # The standard encoder keys its groups by value, and Resource hashes a JSON dump of its
    # attributes: here a (resource, scope) pair of objects is looked up by value once a batch,
    # then by ids (the objects kept beside, so an id stands for the same object).
    groups: dict[Resource, dict[_Scope, list[bytes]]] = {}
    by_ids: dict[tuple[int, int], tuple[Resource, _Scope, list[bytes]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        seen = by_ids.get((id(resource), id(scope)))
        if seen is None or seen[0] is not resource or seen[1] is not scope:
            scopes = groups.get(resource)
            if scopes is None:
                scopes = groups[resource] = {}
            framed = scopes.get(scope)
            if framed is None:
                framed = scopes[scope] = []
            by_ids[id(resource), id(scope)] = seen = (resource, scope, framed)
        encoded = _span(span)
        size = len(encoded)
        seen[2].append(b"\x12" + (_BYTE[size] if size < 0x80 else _varint(size)) + encoded)
    out = []
    for resource, scopes in groups.items():  # the first of equal resources, as dicts keep it
        prefix, suffix = _resource_block(resource)
        parts = [prefix]
        for scope, framed in scopes.items():
            scope_prefix, scope_suffix = _scope_block(scope)
            parts.append(_message(b"\x12", b"".join((scope_prefix, *framed, scope_suffix))))
        parts.append(suffix)
        out.append(_message(b"\x0a", b"".join(parts)))  # resource_spans (1)
    return b"".join(out)


def _span(span: ReadableSpan) -> bytes:
    """One Span message's fields, in field-number order."""
    context = span.get_span_context()
    if context is None:
        raise ValueError("a span without a context")  # the standard encoder's to report
    parts = [
        b"\x0a\x10"  # trace_id (1), span_id (2)
        + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + context.span_id.to_bytes(8, "big")
    ]
    trace_state = context.trace_state
    if trace_state:  # the standard encoder's "" for an empty one is proto3's default: left out
        parts.append(_string(b"\x1a", ",".join([f"{k}={v}" for k, v in trace_state.items()])))
    parent = span.parent
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))  # parent_span_id (4)
        flags = _SPAN_FLAGS[bool(parent.is_remote)]
    else:
        flags = _SPAN_FLAGS[False]
    name = span.name
    if name:
        parts.append(_cached_string(b"\x2a", name, _SPAN_NAMES))  # name (5)
    parts.append(_KIND[span.kind])  # kind (6)
    start, end = span.start_time, span.end_time
    if start:
        parts.append(b"\x39" + _pack_fixed64(start))  # start_time_unix_nano (7)
    if end:
        parts.append(b"\x41" + _pack_fixed64(end))  # end_time_unix_nano (8)
    _attributes(parts, b"\x4a", span.attributes, _SPAN_ATTRIBUTES)  # attributes (9)
    dropped = span.dropped_attributes
    if dropped:
        parts.append(b"\x50" + _varint(dropped))  # dropped_attributes_count (10)
    for event in span.events:
        parts.append(_message(b"\x5a", _event(event)))  # events (11)
    dropped = span.dropped_events
    if dropped:
        parts.append(b"\x60" + _varint(dropped))  # dropped_events_count (12)
    for link in span.links:
        parts.append(_message(b"\x6a", _link(link)))  # links (13)
    dropped = span.dropped_links
    if dropped:
        parts.append(b"\x70" + _varint(dropped))  # dropped_links_count (14)
    status = span.status
    if status is not None:
        parts.append(_status(status))  # status (15)
    parts.append(flags)  # flags (16)
    return b"".join(parts)


def _event(event: Event) -> bytes:
    parts: list[bytes] = []
    timestamp = event.timestamp
    if timestamp:
        parts.append(b"\x09" + _pack_fixed64(timestamp))  # time_unix_nano (1)
    name = event.name
    if name:
        parts.append(_cached_string(b"\x12", name, _EVENT_NAMES))  # name (2)
    _attributes(parts, b"\x1a", event.attributes, _EVENT_ATTRIBUTES)  # attributes (3)
    dropped = event.dropped_attributes
    if dropped:
        parts.append(b"\x20" + _varint(dropped))  # dropped_attributes_count (4)
    return b"".join(parts)


def _link(link: Link) -> bytes:
    # The standard encoder leaves the link's trace_state (3) out; so does this.
    context = link.context
    parts = [
        b"\x0a\x10"  # trace_id (1), span_id (2)
        + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + context.span_id.to_bytes(8, "big")
    ]
    _attributes(parts, b"\x22", link.attributes, _LINK_ATTRIBUTES)  # attributes (4)
    dropped = link.dropped_attributes
    if dropped:
        parts.append(b"\x28" + _varint(dropped))  # dropped_attributes_count (5)
    parts.append(_LINK_FLAGS[bool(context and context.is_remote)])  # flags (6)
    return b"".join(parts)


def _status(status: Status) -> bytes:
    """Span.status: always present (the SDK's Status is never None), message before code."""
    code, description = status.status_code, status.description
    # By identity: an Enum's hash is a Python-level call.
    if code is StatusCode.UNSET and not description:
        return _EMPTY_STATUS
    if code is StatusCode.UNSET:
        encoded = b""
    elif code is StatusCode.ERROR:
        encoded = b"\x18\x02"
    elif code is StatusCode.OK:
        encoded = b"\x18\x01"
    else:  # not a StatusCode: the standard encoder's to judge (encode_spans falls back)
        raise ValueError(f"status code {code!r}")
    if description:
        encoded = _string(b"\x12", description) + encoded
    return _message(b"\x7a", encoded)


def _resource_block(resource: Resource) -> tuple[bytes, bytes]:
    """ResourceSpans' resource (1) and schema_url (3): what goes before and after its scopes."""
    cached = _RESOURCES.get(resource)
    if cached is not None:
        return cached
    parts: list[bytes] = []
    _attributes(parts, b"\x0a", resource.attributes, {})  # Resource.attributes (1)
    prefix = _message(b"\x0a", b"".join(parts))
    suffix = _string(b"\x1a", resource.schema_url) if resource.schema_url else b""
    return _RESOURCES.put(resource, (prefix, suffix))


def _scope_block(scope: _Scope) -> tuple[bytes, bytes]:
    """ScopeSpans' scope (1) and schema_url (3): what goes before and after its spans."""
    if scope is None:
        return _NO_SCOPE, b""
    cached = _SCOPES.get(scope)
    if cached is not None:
        return cached
    parts: list[bytes] = []
    if scope.name:
        parts.append(_string(b"\x0a", scope.name))  # name (1)
    if scope.version:
        parts.append(_string(b"\x12", scope.version))  # version (2)
    _attributes(parts, b"\x1a", scope.attributes, {})  # attributes (3)
    prefix = _message(b"\x0a", b"".join(parts))
    suffix = _string(b"\x1a", scope.schema_url) if scope.schema_url else b""
    return _SCOPES.put(scope, (prefix, suffix))


def _attributes(
    parts: list[bytes],
    tag: bytes,
    attributes: Mapping[str, Any] | None,
    cache: dict[tuple[Any, ...], bytes],
) -> None:
    """Append a KeyValue field per attribute; one that cannot be encoded is logged and left
    out, as the standard encoder does."""
    if attributes is None:
        return
    # A span's attributes are a mappingproxy over the SDK's BoundedAttributes, whose items()
    # is Python-level, per key; its copy() is its dict's.
    copy = getattr(attributes, "copy", None)
    items = copy() if copy is not None else None
    if type(items) is not dict:
        items = dict(attributes.items())
    if not items:
        return
    append = parts.append
    for key, value in items.items():
        kind = type(value)
        if kind is str:
            cache_key: tuple[Any, ...] = (key, value)
        elif kind is int or kind is bool:
            cache_key = (key, value, kind)  # the type too: True == 1, 1 == 1.0, alike hashed
        else:
            field = _key_value(tag, key, value)
            if field is not None:
                append(field)
            continue
        found = cache.get(cache_key)
        if found is None:
            found = _key_value(tag, key, value)
            if found is None:
                continue
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[cache_key] = found
        append(found)


def _key_value(tag: bytes, key: Any, value: Any) -> bytes | None:
    """A KeyValue field, or None when the standard encoder would leave it out."""
    if type(key) is str:
        try:
            encoded = _value(value)
            if encoded is not None:
                body = (_string(b"\x0a", key) if key else b"") + _message(b"\x12", encoded)
                return _message(tag, body)
        except UnicodeEncodeError:  # a lone surrogate: protobuf's to refuse, below
            pass
    return _fallback_key_value(tag, key, value)


def _value(value: Any) -> bytes | None:
    """An AnyValue's fields for plain str, bool, int, float and tuples or lists of those (and
    None inside them); None for anything else."""
    kind = type(value)
    if kind is str:
        return _string(b"\x0a", value)  # string_value (1)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"  # bool_value (2): in a oneof, so written
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + _varint(value & _UINT64)  # int_value (3), two's complement
        return None
    if kind is float:
        return b"\x21" + _pack_double(value)  # double_value (4)
    if kind is tuple or kind is list:
        parts = []
        for item in value:
            if item is None:
                parts.append(b"\x0a\x00")  # an empty AnyValue
                continue
            encoded = _value(item)
            if encoded is None:
                return None
            parts.append(_message(b"\x0a", encoded))  # ArrayValue.values (1)
        return _message(b"\x2a", b"".join(parts))  # array_value (5)
    return None


def _fallback_key_value(tag: bytes, key: Any, value: Any) -> bytes | None:
    """The standard encoder's own KeyValue, serialized; None, logged, where it fails."""
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_key_value

    try:
        body = _encode_key_value(key, value).SerializeToString()
    except Exception as error:  # as _encode_attributes: the attribute is dropped, the span kept
        _logger.exception("Failed to encode key %s: %s", key, error)
        return None
    return _message(tag, body)


def _cached_string(tag: bytes, text: str, cache: dict[str, bytes]) -> bytes:
    found = cache.get(text)
    if found is None:
        found = _string(tag, text)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[text] = found
    return found


# The length-delimited fields, with their one-byte lengths inline: calls cost, here.
def _string(tag: bytes, text: str) -> bytes:
    data = text.encode()
    size = len(data)
    return tag + (_BYTE[size] if size < 0x80 else _varint(size)) + data


def _message(tag: bytes, body: bytes) -> bytes:
    size = len(body)
    return tag + (_BYTE[size] if size < 0x80 else _varint(size)) + body


def _varint(number: int) -> bytes:
    """An unsigned varint; a negative number raises (bytearray.append), as a uint32 would."""
    if 0 <= number < 0x80:
        return _BYTE[number]
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)

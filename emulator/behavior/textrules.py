"""Strings and bytes that keep `buf.validate` string and bytes rules.

`string(rules, value, rng)` returns `value` itself when it keeps every rule of the
`buf.validate.StringRules` message (so realistic defaults stay what they were), otherwise the
first candidate that does: the rules' own `example`s, a value of the well-known format
(`email`, `uuid`, `hostname`, `ip`, `uri`, ...), a string generated from a simple `pattern`, or
the value reshaped to the lengths, prefix, suffix and `contains` asked. `bytes_` does the same for
`BytesRules`. The checks are written to be no looser than protovalidate's: a value they let
through, protovalidate does too.
"""

from __future__ import annotations

import importlib
import ipaddress
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

from emulator.behavior import values

__all__ = ["bytes_", "string", "string_ok"]

# Python's own regex parser: its tree is what a pattern means, so generating from it is cheap and
# exact for the simple patterns contracts carry (character classes, counts, groups, branches).
_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_EMAIL = re.compile(rf"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]+@{_LABEL}(?:\.{_LABEL})*$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TUUID = re.compile(r"^[0-9a-fA-F]{32}$")
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
_URI = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]*)*$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]*)+$")
_FQN = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*$")
_HEADER_NAME = re.compile(r"^[0-9a-zA-Z!#$%&'*+.^_|~`-]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _hostname_ok(text: str) -> bool:
    # The last label may not be all digits: that would read as an IPv4 address.
    return (
        len(text) <= 253 and bool(_HOSTNAME.match(text)) and not text.rsplit(".", 1)[-1].isdigit()
    )


def _ip_ok(text: str, version: int | None, network: bool, prefix_only: bool) -> bool:
    try:
        if network:
            if "/" not in text:
                return False
            net = ipaddress.ip_network(text, strict=prefix_only)
            return version is None or net.version == version
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def _host_port_ok(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or port != str(int(port)):
        return False
    if host.startswith("[") and host.endswith("]"):
        return _ip_ok(host[1:-1], 6, False, False)
    return _hostname_ok(host) or _ip_ok(host, 4, False, False)


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(values.FIRST_NAMES), rng.choice(values.LAST_NAMES).replace(" ", "")


def _uri(rng: random.Random) -> str:
    return f"https://example.com/{rng.choice(values.WORDS)}/{rng.getrandbits(32):08x}"


# Each format: a check no looser than protovalidate's, and a maker of a value it accepts.
_FORMATS: dict[str, tuple[Callable[[str], bool], Callable[[random.Random], str]]] = {
    "email": (
        lambda s: len(s) <= 254 and bool(_EMAIL.match(s)),
        lambda rng: "{}.{}@example.com".format(*map(str.lower, _person(rng))),
    ),
    "hostname": (_hostname_ok, lambda rng: f"{rng.choice(values.WORDS)}.example.com"),
    "ip": (lambda s: _ip_ok(s, None, False, False), lambda rng: f"192.0.2.{rng.randrange(1, 255)}"),
    "ipv4": (lambda s: _ip_ok(s, 4, False, False), lambda rng: f"192.0.2.{rng.randrange(1, 255)}"),
    "ipv6": (
        lambda s: _ip_ok(s, 6, False, False),
        lambda rng: f"2001:db8::{rng.randrange(1, 65535):x}",
    ),
    "uri": (lambda s: bool(_URI.match(s)), _uri),
    "uri_ref": (lambda s: bool(_URI.match(s) or _PATH.match(s)), _uri),
    "address": (
        lambda s: _hostname_ok(s) or _ip_ok(s, None, False, False),
        lambda rng: f"{rng.choice(values.WORDS)}.example.com",
    ),
    "uuid": (lambda s: bool(_UUID.match(s)), values.uuid),
    "tuuid": (lambda s: bool(_TUUID.match(s)), lambda rng: values.uuid(rng).replace("-", "")),
    "ip_with_prefixlen": (
        lambda s: _ip_ok(s, None, True, False),
        lambda rng: f"192.0.2.{rng.randrange(1, 255)}/24",
    ),
    "ipv4_with_prefixlen": (
        lambda s: _ip_ok(s, 4, True, False),
        lambda rng: f"192.0.2.{rng.randrange(1, 255)}/24",
    ),
    "ipv6_with_prefixlen": (
        lambda s: _ip_ok(s, 6, True, False),
        lambda rng: f"2001:db8::{rng.randrange(1, 65535):x}/64",
    ),
    "ip_prefix": (lambda s: _ip_ok(s, None, True, True), lambda rng: "192.0.2.0/24"),
    "ipv4_prefix": (lambda s: _ip_ok(s, 4, True, True), lambda rng: "192.0.2.0/24"),
    "ipv6_prefix": (lambda s: _ip_ok(s, 6, True, True), lambda rng: "2001:db8::/32"),
    "host_and_port": (
        _host_port_ok,
        lambda rng: f"{rng.choice(values.WORDS)}.example.com:{rng.randrange(1024, 65536)}",
    ),
    "ulid": (
        lambda s: bool(_ULID.match(s)),
        lambda rng: "0" + "".join(rng.choice(_CROCKFORD) for _ in range(25)),
    ),
    "protobuf_fqn": (lambda s: bool(_FQN.match(s)), lambda rng: "acme.v1.Thing"),
    "protobuf_dot_fqn": (
        lambda s: s.startswith(".") and bool(_FQN.match(s[1:])),
        lambda rng: ".acme.v1.Thing",
    ),
}


def _format(rules: Any) -> str | None:
    kind: str | None = rules.WhichOneof("well_known")
    if kind == "well_known_regex":
        return "header_value" if rules.well_known_regex == 2 else "header_name"
    return kind if kind is not None and getattr(rules, kind) else None


def string_ok(rules: Any, text: str) -> bool:
    """Whether `text` keeps every rule of the StringRules `rules`."""
    if rules.HasField("const") and text != rules.const:
        return False
    allowed = list(getattr(rules, "in"))
    if (allowed and text not in allowed) or text in rules.not_in:
        return False
    size, octets = len(text), len(text.encode())
    for name, have in (("len", size), ("len_bytes", octets)):
        if rules.HasField(name) and have != getattr(rules, name):
            return False
    if (rules.HasField("min_len") and size < rules.min_len) or (
        rules.HasField("max_len") and size > rules.max_len
    ):
        return False
    if (rules.HasField("min_bytes") and octets < rules.min_bytes) or (
        rules.HasField("max_bytes") and octets > rules.max_bytes
    ):
        return False
    if not (text.startswith(rules.prefix) and text.endswith(rules.suffix)):
        return False
    if rules.contains not in text or (rules.not_contains and rules.not_contains in text):
        return False
    if rules.HasField("pattern") and not _search(rules.pattern, text):
        return False
    kind = _format(rules)
    if kind == "header_name":
        return bool(_HEADER_NAME.match(text))
    if kind == "header_value":
        return bool(_HEADER_VALUE.match(text))
    return kind is None or _FORMATS[kind][0](text)


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:  # an RE2 pattern Python reads otherwise: protovalidate judges it alone
        return False


def string(rules: Any, value: str, rng: random.Random) -> str:
    """`value` if it keeps `rules` (StringRules), else a string that does (best effort)."""
    if string_ok(rules, value):
        return value
    if rules.HasField("const"):
        return str(rules.const)
    allowed = [s for s in getattr(rules, "in") if s not in rules.not_in]
    if allowed:
        return str(rng.choice(allowed))
    last = value
    for candidate in _string_candidates(rules, value, rng):
        if string_ok(rules, candidate):
            return candidate
        last = candidate
    return last  # rules no construction here meets (two formats at once): protovalidate says so


def _string_candidates(rules: Any, value: str, rng: random.Random) -> Iterator[str]:
    yield from rules.example
    kind = _format(rules)
    if kind == "header_name":
        yield "x-emulator"
    elif kind is not None and kind != "header_value":
        make = _FORMATS[kind][1]
        for _ in range(3):
            yield make(rng)
        return  # reshaping a formatted value would break its format
    if rules.HasField("pattern"):
        for stretch in range(6):
            generated = generate(rules.pattern, rng, stretch)
            if generated is None:
                break
            yield generated
            yield _shape(rules, generated, rng)
    yield _shape(rules, value, rng)
    yield _shape(rules, "", rng)


def _bounds(rules: Any) -> tuple[int, int | None]:
    low = max(rules.min_len, rules.min_bytes, rules.len, rules.len_bytes)
    highs = [
        getattr(rules, n) for n in ("max_len", "max_bytes", "len", "len_bytes") if rules.HasField(n)
    ]
    return low, min(highs) if highs else None


def _shape(rules: Any, value: str, rng: random.Random) -> str:
    """`value` with the prefix, `contains` and suffix asked and padded or cut to the lengths."""
    body = value
    if rules.not_contains:
        body = body.replace(rules.not_contains, "")
    if body.startswith(rules.prefix):
        body = body[len(rules.prefix) :]
    if rules.suffix and body.endswith(rules.suffix):
        body = body[: -len(rules.suffix)]
    contains = rules.contains if rules.contains not in body else ""
    fixed = len(rules.prefix) + len(contains) + len(rules.suffix)
    low, high = _bounds(rules)
    if high is not None:
        body = body[: max(0, high - fixed)]
    while fixed + len(body) < low:
        body += rng.choice("abcdefghijkmnpqrstuvwxyz")  # ASCII: one byte a character
    return f"{rules.prefix}{body}{contains}{rules.suffix}"


def generate(pattern: str, rng: random.Random, stretch: int = 0) -> str | None:
    """A string `pattern` matches, drawn from `rng` (repeats `stretch` beyond their minimum);
    None for what this cannot generate (look-arounds, back-references, an RE2-only syntax)."""
    try:
        tree = _parser.parse(pattern)
        return _emit(tree, rng, stretch)
    except (re.error, _Unsupported, RecursionError):
        return None


class _Unsupported(Exception):
    pass


_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def _emit(items: Any, rng: random.Random, stretch: int) -> str:
    c = _constants
    out: list[str] = []
    for op, av in items:
        if op is c.LITERAL:
            out.append(chr(av))
        elif op is c.NOT_LITERAL:
            out.append("a" if chr(av) != "a" else "b")
        elif op is c.ANY:
            out.append("a")
        elif op is c.IN:
            out.append(_pick_in(av, rng))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            top = low + stretch + rng.randint(0, 2)
            count = low if high == low else min(high, top)
            out.extend(_emit(sub, rng, stretch) for _ in range(count))
        elif op is c.SUBPATTERN:
            out.append(_emit(av[-1], rng, stretch))
        elif op is c.ATOMIC_GROUP:
            out.append(_emit(av, rng, stretch))
        elif op is c.BRANCH:
            out.append(_emit(rng.choice(av[1]), rng, stretch))
        elif op is c.AT:
            continue  # anchors match where the generated text starts and ends
        else:
            raise _Unsupported(op)
    return "".join(out)


def _pick_in(items: Any, rng: random.Random) -> str:
    c = _constants
    if items and items[0][0] is c.NEGATE:
        allowed = [ch for ch in _SAFE if not _in_set(items[1:], ch)]
        if not allowed:
            raise _Unsupported("negated class")
        return rng.choice(allowed)
    options: list[str] = []
    for op, av in items:
        if op is c.LITERAL:
            options.append(chr(av))
        elif op is c.RANGE:
            options.append(chr(rng.randint(av[0], av[1])))
        elif op is c.CATEGORY:
            options.append(_category(av, rng))
        else:
            raise _Unsupported(op)
    return rng.choice(options)


def _category(category: Any, rng: random.Random) -> str:
    c = _constants
    if category is c.CATEGORY_DIGIT:
        return rng.choice("0123456789")
    if category is c.CATEGORY_WORD:
        return rng.choice("abcdefghijklmnopqrstuvwxyz")
    if category is c.CATEGORY_SPACE:
        return " "
    if category is c.CATEGORY_NOT_DIGIT or category is c.CATEGORY_NOT_SPACE:
        return rng.choice("abcdefghijklmnopqrstuvwxyz")
    if category is c.CATEGORY_NOT_WORD:
        return "-"
    raise _Unsupported(category)


def _in_set(items: Any, ch: str) -> bool:
    c = _constants
    for op, av in items:
        if op is c.LITERAL and chr(av) == ch:
            return True
        if op is c.RANGE and av[0] <= ord(ch) <= av[1]:
            return True
        if op is c.CATEGORY and re.match(_CATEGORY_RE.get(str(av), "(?!)"), ch):
            return True
    return False


_CATEGORY_RE = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
}


def bytes_(rules: Any, value: bytes, rng: random.Random) -> bytes:
    """`value` if it keeps `rules` (BytesRules), else bytes that do (best effort)."""
    if _bytes_ok(rules, value):
        return value
    if rules.HasField("const"):
        return bytes(rules.const)
    allowed = [b for b in getattr(rules, "in") if b not in rules.not_in]
    if allowed:
        return bytes(rng.choice(allowed))
    kind = rules.WhichOneof("well_known")
    candidates: list[bytes] = list(rules.example)
    if kind in ("ipv4", "ip"):
        candidates.append(bytes((192, 0, 2, rng.randrange(1, 255))))
    elif kind in ("ipv6", "uuid"):
        candidates.append(bytes.fromhex(values.uuid(rng).replace("-", "")))
    if rules.HasField("pattern"):
        generated = generate(rules.pattern, rng)
        if generated is not None:
            candidates.append(generated.encode())
    candidates.append(_shape_bytes(rules, value, rng))
    for candidate in candidates:
        if _bytes_ok(rules, candidate):
            return candidate
    return candidates[-1]


def _bytes_ok(rules: Any, data: bytes) -> bool:
    if rules.HasField("const") and data != rules.const:
        return False
    allowed = list(getattr(rules, "in"))
    if (allowed and data not in allowed) or data in rules.not_in:
        return False
    if rules.HasField("len") and len(data) != rules.len:
        return False
    if len(data) < rules.min_len or (rules.HasField("max_len") and len(data) > rules.max_len):
        return False
    if not (data.startswith(rules.prefix) and data.endswith(rules.suffix)):
        return False
    if rules.contains not in data:
        return False
    if rules.HasField("pattern"):
        try:
            if not _search(rules.pattern, data.decode()):
                return False
        except UnicodeDecodeError:
            return False
    kind = rules.WhichOneof("well_known")
    if kind is None or not getattr(rules, kind):
        return True
    size = {"ip": (4, 16), "ipv4": (4,), "ipv6": (16,), "uuid": (16,)}.get(kind)
    return size is not None and len(data) in size


def _shape_bytes(rules: Any, value: bytes, rng: random.Random) -> bytes:
    body = value
    contains = rules.contains if rules.contains not in body else b""
    fixed = len(rules.prefix) + len(contains) + len(rules.suffix)
    low = max(rules.min_len, rules.len)
    highs = [getattr(rules, n) for n in ("max_len", "len") if rules.HasField(n)]
    if highs:
        body = body[: max(0, min(highs) - fixed)]
    if fixed + len(body) < low:
        body += rng.randbytes(low - fixed - len(body))
    return bytes(rules.prefix) + body + bytes(contains) + bytes(rules.suffix)

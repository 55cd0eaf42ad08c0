"""Realistic scalar values, chosen by what a field's name says it holds.

`scalar(field, rng, hint)` returns a value of the field's type; `hint` is the name that tells what
the value means (the field's own name, or the enclosing field's for a wrapper's `value`). All
randomness comes from the `random.Random` passed in, so the caller decides what is deterministic.
Domains and numbers stay in ranges reserved for examples (example.com, 555-01xx, 192.0.2.0/24).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

__all__ = ["TIMESTAMP_RANGE", "TIMESTAMP_SPAN", "scalar", "text_for", "words"]

# 2024-01-01T00:00:00Z up to 2027-01-01T00:00:00Z: recent enough to look real, never "now", so
# defaults stay the same on every day they are generated. A frozen emulator clock moves it.
TIMESTAMP_RANGE = (1_704_067_200, 1_798_761_600)
TIMESTAMP_SPAN = 3 * 365 * 86_400  # before a frozen instant: within three calendar years

FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Guido",
    "Katherine",
    "Tim",
    "Hedy",
    "Vint",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "van Rossum",
    "Johnson",
    "Lee",
    "Lamarr",
)
ADJECTIVES = (
    "Compact",
    "Classic",
    "Deluxe",
    "Eco",
    "Ultra",
    "Smart",
    "Vintage",
    "Portable",
    "Ergonomic",
    "Wireless",
    "Rugged",
    "Premium",
)
NOUNS = (
    "Kettle",
    "Backpack",
    "Lamp",
    "Headphones",
    "Notebook",
    "Chair",
    "Bottle",
    "Jacket",
    "Keyboard",
    "Camera",
    "Blender",
    "Desk",
)
WORDS = (
    "order",
    "shipment",
    "quality",
    "delivery",
    "customer",
    "package",
    "window",
    "update",
    "request",
    "review",
    "priority",
    "account",
    "invoice",
    "service",
    "network",
    "team",
)
CITIES = ("Berlin", "Lisbon", "Toronto", "Osaka", "Austin", "Utrecht", "Lyon", "Melbourne")
COUNTRIES = ("DE", "PT", "CA", "JP", "US", "NL", "FR", "AU")
CURRENCIES = ("EUR", "USD", "GBP", "JPY", "CHF", "CAD")
STREETS = ("Main Street", "Harbour Road", "Market Square", "Elm Avenue", "Station Lane")
BRANDS = ("visa", "mastercard", "amex")
COLORS = ("red", "green", "blue", "black", "white", "silver")
TIMEZONES = ("Europe/Berlin", "America/Toronto", "Asia/Tokyo", "Australia/Melbourne")
LOCALES = ("en-US", "de-DE", "fr-FR", "ja-JP", "pt-PT")

# Fields whose valid values a well-known API fixes, by (message name, field name).
_CONVENTIONS: dict[tuple[str, str], Callable[[random.Random], Any]] = {
    ("Status", "code"): lambda rng: rng.randrange(1, 17),  # a google.rpc.Code other than OK
    ("Policy", "version"): lambda rng: rng.choice((1, 3)),  # google.iam.v1.Policy
}

_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|_")


def words(name: str) -> tuple[str, ...]:
    """`shippingAddress` and `shipping_address` → ("shipping", "address")."""
    return tuple(w.lower() for w in _SPLIT.split(name) if w)


def scalar(
    field: Any,
    rng: random.Random,
    hint: str,
    owner: str = "",
    time_range: tuple[int, int] = TIMESTAMP_RANGE,
) -> Any:
    """A value for a non-message, non-enum field; `owner` is the enclosing message's name."""
    w = words(hint)
    cpp = field.cpp_type
    known = _CONVENTIONS.get((owner, hint))
    if known is not None:
        return known(rng)
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return rng.getrandbits(128).to_bytes(16, "big")
        return _string(w, rng, owner, time_range)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return _float(w, rng)
    unsigned = cpp in (FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64)
    wide = cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)
    return _integer(w, rng, time_range, wide=wide, unsigned=unsigned)


def _has(w: tuple[str, ...], *names: str) -> bool:
    return any(n in w for n in names)


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    # Version 4, RFC 4122 variant: what a generated id looks like in production.
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _sentence(rng: random.Random, count: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(count))
    return text[0].upper() + text[1:] + "."


def _timestamp_text(rng: random.Random, time_range: tuple[int, int]) -> str:
    seconds = rng.randrange(*time_range)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_PERSON_OWNERS = (
    "customer",
    "user",
    "person",
    "contact",
    "member",
    "author",
    "employee",
    "account",
    "profile",
    "owner",
    "agent",
    "buyer",
    "seller",
    "recipient",
)


def _string(w: tuple[str, ...], rng: random.Random, owner: str, time_range: tuple[int, int]) -> str:
    rules: tuple[tuple[Callable[[], bool], Callable[[], str]], ...] = (
        (
            lambda: _has(w, "email", "mail"),
            lambda: "{}.{}@example.com".format(*_person(rng)).lower().replace(" ", ""),
        ),
        (
            lambda: _has(w, "uuid", "guid") or w[-1:] == ("id",) or w[-1:] == ("ids",),
            lambda: uuid(rng),
        ),
        (
            lambda: _has(w, "url", "uri", "link", "website", "homepage", "href"),
            lambda: (
                f"https://{'images.' if _has(w, 'image', 'avatar', 'photo') else ''}example.com/"
                f"{rng.choice(WORDS)}/{_hex(rng, 8)}"
            ),
        ),
        (
            lambda: _has(w, "phone", "mobile", "fax", "msisdn"),
            lambda: f"+1-202-555-01{rng.randrange(100):02d}",
        ),
        (lambda: _has(w, "first", "given", "forename"), lambda: rng.choice(FIRST_NAMES)),
        (lambda: _has(w, "last", "family", "surname"), lambda: rng.choice(LAST_NAMES)),
        (
            lambda: _has(w, "username", "login", "handle", "nickname"),
            lambda: f"{rng.choice(FIRST_NAMES).lower()}{rng.randrange(10, 99)}",
        ),
        (lambda: _has(w, "currency"), lambda: rng.choice(CURRENCIES)),
        (lambda: _has(w, "country"), lambda: rng.choice(COUNTRIES)),
        (lambda: _has(w, "city", "town"), lambda: rng.choice(CITIES)),
        (lambda: _has(w, "postal", "zip", "postcode"), lambda: f"{rng.randrange(10000, 99999)}"),
        (
            lambda: _has(w, "street", "line", "lines"),
            lambda: f"{rng.randrange(1, 250)} {rng.choice(STREETS)}",
        ),
        (lambda: _has(w, "sku"), lambda: f"SKU-{_hex(rng, 6).upper()}"),
        (
            lambda: _has(w, "iban"),
            lambda: f"DE{rng.randrange(10, 99)}{rng.randrange(10**17, 10**18)}",
        ),
        (lambda: _has(w, "last4"), lambda: f"{rng.randrange(10000):04d}"),
        (lambda: _has(w, "brand", "network") and not _has(w, "name"), lambda: rng.choice(BRANDS)),
        (lambda: _has(w, "color", "colour"), lambda: rng.choice(COLORS)),
        (lambda: _has(w, "timezone") or w[-2:] == ("time", "zone"), lambda: rng.choice(TIMEZONES)),
        (lambda: _has(w, "locale", "language", "lang"), lambda: rng.choice(LOCALES)),
        (lambda: _has(w, "ip"), lambda: f"192.0.2.{rng.randrange(1, 255)}"),
        (lambda: _has(w, "host", "hostname", "domain"), lambda: f"{rng.choice(WORDS)}.example.com"),
        (
            lambda: _has(w, "role", "roles"),
            lambda: f"roles/{rng.choice(('viewer', 'editor', 'owner', 'admin'))}",
        ),
        (
            lambda: _has(w, "member", "members", "principal", "principals"),
            lambda: "user:" + ".".join(_person(rng)).lower().replace(" ", "") + "@example.com",
        ),
        (
            lambda: _has(w, "version"),
            lambda: f"{rng.randrange(1, 5)}.{rng.randrange(10)}.{rng.randrange(10)}",
        ),
        (lambda: _has(w, "token", "cursor"), lambda: _hex(rng, 24)),
        (
            lambda: _has(w, "at", "time", "timestamp", "date", "datetime"),
            lambda: _timestamp_text(rng, time_range),
        ),
        (
            lambda: _has(
                w,
                "description",
                "summary",
                "note",
                "notes",
                "comment",
                "text",
                "message",
                "body",
                "content",
                "reason",
                "bio",
            ),
            lambda: _sentence(rng, rng.randrange(5, 10)),
        ),
        (
            lambda: _has(w, "title", "headline", "subject"),
            lambda: " ".join(
                (rng.choice(ADJECTIVES), rng.choice(WORDS).title(), rng.choice(WORDS).title())
            ),
        ),
        (
            lambda: _has(w, "name") and _has(words(owner), *_PERSON_OWNERS),
            lambda: " ".join(_person(rng)),
        ),
        (lambda: _has(w, "name"), lambda: f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"),
        (lambda: _has(w, "status", "state"), lambda: rng.choice(("active", "pending", "done"))),
    )
    for test, make in rules:
        if test():
            return make()
    return f"{'-'.join(w) or 'value'}-{_hex(rng, 6)}"


def _float(w: tuple[str, ...], rng: random.Random) -> float:
    if _has(w, "latitude", "lat"):
        return round(rng.uniform(-90, 90), 6)
    if _has(w, "longitude", "lng", "lon"):
        return round(rng.uniform(-180, 180), 6)
    if _has(w, "rating", "stars"):
        return round(rng.uniform(1, 5), 1)
    if _has(w, "percent", "percentage", "pct"):
        return round(rng.uniform(0, 100), 2)
    if _has(w, "ratio", "probability", "rate", "score", "confidence"):
        return round(rng.random(), 3)
    if _has(w, "price", "amount", "cost", "total", "balance", "fee"):
        return round(rng.uniform(1, 500), 2)
    if _has(w, "cm", "kg", "width", "height", "depth", "length", "weight", "size"):
        return round(rng.uniform(0.5, 80), 1)
    return round(rng.uniform(0, 1000), 2)


def _integer(
    w: tuple[str, ...],
    rng: random.Random,
    time_range: tuple[int, int],
    *,
    wide: bool,
    unsigned: bool,
) -> int:
    if _has(w, "nanos"):
        return rng.randrange(0, 100) * 10_000_000  # Money-style: whole cents
    if _has(w, "month"):
        return rng.randrange(1, 13)
    if _has(w, "year"):
        return rng.randrange(2026, 2033)
    if _has(w, "day"):
        return rng.randrange(1, 29)
    if _has(w, "hour"):
        return rng.randrange(24)
    if _has(w, "minute", "second") and not _has(w, "seconds"):
        return rng.randrange(60)
    if wide and _has(w, "at", "time", "timestamp", "epoch", "ms", "millis"):
        seconds = rng.randrange(*time_range)
        return seconds * 1000 if _has(w, "ms", "millis") else seconds
    if _has(w, "age"):
        return rng.randrange(18, 90)
    if _has(w, "percent", "percentage", "pct"):
        return rng.randrange(101)
    if _has(w, "port"):
        return rng.randrange(1024, 65536)
    if _has(w, "price", "amount", "cost", "total", "cents", "balance", "fee"):
        return rng.randrange(100, 100_000)
    if _has(w, "quantity", "count", "size", "qty", "number", "num", "units", "limit"):
        return rng.randrange(1, 50)
    return rng.randrange(1, 10_000 if wide or unsigned else 1_000)


def is_map(field: Any) -> bool:  # a FieldDescriptor, of either protobuf implementation
    """Whether `field` is a map (a repeated field of map-entry messages)."""
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def text_for(name: str, rng: random.Random, time_range: tuple[int, int] = TIMESTAMP_RANGE) -> str:
    """The text a string field called `name` gets in defaults (`email` → an address): what
    stub templates' `fake.<name>` renders."""
    return _string(words(name), rng, "", time_range)

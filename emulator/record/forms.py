"""The shapes of pseudonyms: a keyed permutation, and the formats it keeps.

`permute` is a keyed permutation of range(n); each format maps a value to a number in the range
of the values of its shape (same length, same character classes, same separators, same uuid
version), permutes it and writes it back in that shape. As every step is a bijection, two
originals of the same kind never get the same pseudonym. Names are picked from a short list and
may repeat.
"""

from __future__ import annotations

import functools
import hmac
import math
import re
import string
import uuid

__all__ = [
    "email",
    "id_codes",
    "identifier",
    "integer",
    "name",
    "name_role",
    "permute",
    "phone",
    "reshape",
    "uuid_text",
]

_ROUNDS = 8


def permute(key: bytes, tweak: bytes, size: int, index: int) -> int:
    """The image of `index` under a keyed permutation of range(size).

    A balanced Feistel network on the square just above `size` (HMAC-SHA256 as its round
    function) is a permutation of that square; walking it until the value falls back inside
    range(size) ("cycle walking") restricts it to a permutation of range(size).
    """
    if size <= 1:
        return index
    half = math.isqrt(size - 1) + 1
    width = (half.bit_length() + 7) // 8
    value = index
    while True:
        left, right = divmod(value, half)
        for round_ in range(_ROUNDS):
            data = tweak + bytes((round_,)) + right.to_bytes(width, "big")
            mixed = int.from_bytes(hmac.digest(key, data, "sha256"), "big")
            left, right = right, (left + mixed) % half
        value = left * half + right
        if value < size:
            return value


# A code per position: the alphabet its character is replaced from; other characters stay.
_ALPHABETS = {
    "a": string.ascii_lowercase,
    "A": string.ascii_uppercase,
    "0": string.digits,
    "1": string.digits[1:],
    "x": string.hexdigits[:16],
    "X": string.hexdigits[:10] + string.hexdigits[16:],
}
_INDEX = {code: {c: i for i, c in enumerate(alphabet)} for code, alphabet in _ALPHABETS.items()}
_ID_CODES = str.maketrans(
    {
        **dict.fromkeys(string.ascii_lowercase, "a"),
        **dict.fromkeys(string.ascii_uppercase, "A"),
        **dict.fromkeys(string.digits, "0"),
    }
)
_PHONE_CODES = str.maketrans(
    {**dict.fromkeys(string.ascii_letters, "."), **dict.fromkeys(string.digits, "0")}
)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HEX = re.compile(r"[0-9a-f]{8,}|[0-9A-F]{8,}")


def reshape(key: bytes, tweak: bytes, text: str, codes: str) -> str:
    """`text` with every character whose code names an alphabet replaced: its image under the
    permutation of all the strings of that shape."""
    slots = [i for i, code in enumerate(codes) if code in _ALPHABETS]
    if not slots:
        return text
    index, size = 0, 1
    for i in slots:
        alphabet = _INDEX[codes[i]]
        index = index * len(alphabet) + alphabet[text[i]]
        size *= len(alphabet)
    image = permute(key, tweak + codes.encode(), size, index)
    out = list(text)
    for i in reversed(slots):
        alphabet_text = _ALPHABETS[codes[i]]
        image, digit = divmod(image, len(alphabet_text))
        out[i] = alphabet_text[digit]
    return "".join(out)


def identifier(key: bytes, tweak: bytes, text: str) -> str:
    """A uuid stays a uuid (as `uuid_text`), a long hex string hex; otherwise letters stay
    letters of their case, digits digits, and the rest (`-`, `_`, `:`, ...) is kept."""
    made = uuid_text(key, tweak, text)
    return made if made is not None else reshape(key, tweak, text, id_codes(text))


def id_codes(text: str) -> str:
    """Letters stay letters of their case and digits digits; a long hex string stays hex."""
    if _HEX.fullmatch(text) and not text.isdigit():
        return ("x" if text.lower() == text else "X") * len(text)
    return text.translate(_ID_CODES)


def integer(key: bytes, tweak: bytes, value: int, low: int, high: int) -> int:
    """Another integer of the same sign and number of digits, within the field's range."""
    magnitude = abs(value)
    digits = len(str(magnitude))
    first = 10 ** (digits - 1) if digits > 1 else 1
    last = min(10**digits - 1, -low if value < 0 else high)
    tweak += b"-" if value < 0 else b"+"
    image = first + permute(key, tweak + bytes((digits,)), last - first + 1, magnitude - first)
    return -image if value < 0 else image


# A country's second level under its two-letter domain (example.co.uk): kept with it.
_SECOND_LEVEL = {"ac", "co", "com", "edu", "gov", "ne", "net", "or", "org"}


def email(key: bytes, tweak: bytes, text: str) -> str:
    """local@domain → another local part and domain of the same shapes, the top-level domain
    kept. Letters are replaced regardless of case (Ada@X.org and ada@x.org join), then the
    original's capitals are put back."""
    lowered = text.translate(_ASCII_LOWER)
    local, at, domain = lowered.rpartition("@")
    if not (at and local and domain):
        made = reshape(key, tweak + b"text\0", lowered, lowered.translate(_ID_CODES))
    else:
        labels = domain.split(".")
        kept = 1 if len(labels) > 1 else 0
        if len(labels) > 2 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
            kept = 2
        changed = len(labels) - kept
        labels[:changed] = [_domain_label(key, tweak, label) for label in labels[:changed]]
        local_tweak = tweak + b"local\0"
        made = reshape(key, local_tweak, local, local.translate(_ID_CODES))
        made += "@" + ".".join(labels)
    capitals = string.ascii_uppercase
    return "".join(m.upper() if o in capitals else m for o, m in zip(text, made, strict=True))


@functools.lru_cache(maxsize=4096)
def _domain_label(key: bytes, tweak: bytes, label: str) -> str:
    # A recording holds thousands of addresses at a few domains: each label is made once.
    return reshape(key, tweak + b"domain\0", label, label.translate(_ID_CODES))


def phone(key: bytes, tweak: bytes, text: str) -> str:
    """Every digit replaced, the rest kept (+, spaces, dashes, parentheses, an `ext`); a first
    digit that is not 0 stays not 0 (no +0...), a leading 0 (a trunk prefix) stays."""
    codes = text.translate(_PHONE_CODES)
    first = codes.find("0")
    if first >= 0:
        codes = codes[:first] + ("1" if text[first] != "0" else ".") + codes[first + 1 :]
    return reshape(key, tweak, text, codes)


# Bits of a uuid's 128 that say what it is: the version (76-79) and the variant (61-63).
_UUID_KEPT = (0xF << 76) | (0x7 << 61)
_UUID_BODY = (32, 36, 38)  # hex, hyphenated, in braces


def uuid_text(key: bytes, tweak: bytes, text: str) -> str | None:
    """Another uuid of the same version and variant, written as the original was (hyphens,
    braces, a urn: prefix, capitals); None when `text` is not a uuid. The nil and max uuids are
    markers, not data: kept."""
    prefix = text[:9] if text[:9].lower() == "urn:uuid:" else ""
    body = text[len(prefix) :]
    if len(body) not in _UUID_BODY:
        return None
    try:
        number = uuid.UUID(body).int
    except ValueError:
        return None
    if number in (0, 2**128 - 1):
        return text
    free = ((number >> 80) << 73) | (((number >> 64) & 0xFFF) << 61) | (number & (2**61 - 1))
    image = permute(key, tweak + b"uuid\0", 2**121, free)
    number = (
        ((image >> 73) << 80)
        | (((image >> 61) & 0xFFF) << 64)
        | (image & (2**61 - 1))
        | (number & _UUID_KEPT)
    )
    digits = iter(f"{number:032X}" if body.isupper() else f"{number:032x}")
    return prefix + "".join(next(digits) if c in string.hexdigits else c for c in body)


_FIRST_NAMES = (
    "Aiko", "Amara", "Anders", "Ana", "Arjun", "Bea", "Carlos", "Chen", "Dara", "Elif", "Emil",
    "Farah", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Kemal", "Lara", "Leila", "Lucas",
    "Maria", "Mateo", "Mei", "Nadia", "Niko", "Noor", "Olga", "Omar", "Priya", "Rafael", "Rosa",
    "Sami", "Sofia", "Tariq", "Tomas", "Uma", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Abe", "Alvarez", "Andersen", "Bauer", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia",
    "Haddad", "Ito", "Jansen", "Kaur", "Kowalski", "Larsen", "Lindqvist", "Mendes", "Moreau",
    "Nakamura", "Novak", "Okafor", "Olsen", "Petrov", "Quinn", "Rossi", "Santos", "Schmidt",
    "Silva", "Suzuki", "Tanaka", "Torres", "Varga", "Wagner", "Weber", "Xu", "Yilmaz", "Zhang",
    "Ziegler", "Moyo", "Mensah",
)  # fmt: skip
_WORDS = re.compile(r"(\s+)")


def name(key: bytes, text: str, role: str | None) -> str:
    """As many name words, each picked by its own HMAC: "Ada Lovelace" gets the first name of
    "Ada" then the last name of "Lovelace", the same as first_name "Ada" and last_name
    "Lovelace" get. Spaces are kept, and an all-capitals or all-small word's case."""
    out: list[str] = []
    words = 0
    for i, part in enumerate(_WORDS.split(text)):
        if i % 2 or not part:
            out.append(part)
            continue
        last = role == "last" or (role is None and words > 0)
        names = _LAST_NAMES if last else _FIRST_NAMES
        digest = hmac.digest(key, b"name\0" + part.casefold().encode(), "sha256")
        pick = names[int.from_bytes(digest[:8], "big") % len(names)]
        if part.isupper():
            pick = pick.upper()
        elif part.islower():
            pick = pick.lower()
        out.append(pick)
        words += 1
    return "".join(out)


def name_role(field_name: str) -> str | None:
    """Which list a name field's words come from when its name says: first or last."""
    lowered = field_name.lower()
    if any(part in lowered for part in ("last", "family", "surname")):
        return "last"
    if any(part in lowered for part in ("first", "given")):
        return "first"
    return None

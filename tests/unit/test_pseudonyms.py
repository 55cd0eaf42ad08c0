"""Pseudonyms of recorded data: keyed, deterministic, collision-free, in the shape of the original,
joins kept across messages and methods; the rules checked against the contracts; the leak check."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from google.protobuf.message import Message

from emulator.contracts import Contracts, load_contracts
from emulator.errors import ConfigError
from emulator.record import forms
from emulator.record.pseudonyms import (
    MIN_LEAK_LENGTH,
    REDACTED,
    Pseudonymizer,
    PseudonymRule,
    leaks,
)
from tests.conftest import PROTOS, TEST_PROTOS

KEY = b"a-test-key-of-32-bytes-or-more!!"
OTHER_KEY = b"another-test-key-of-32-bytes!!!!"
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
SHOP = [
    PseudonymRule("*.customer_id", "id"),
    PseudonymRule("*.email", "email"),
    PseudonymRule("*.first_name", "name"),
    PseudonymRule("*.last_name", "name"),
    PseudonymRule("*.phone_number", "phone"),
    PseudonymRule("*.order_id", "uuid"),
    PseudonymRule("acme.shop.v1.ChatMessage.text", "redact"),
]


@pytest.fixture(scope="module")
def shop() -> Contracts:
    return load_contracts([PROTOS])


@pytest.fixture(scope="module")
def people() -> Contracts:
    return load_contracts([TEST_PROTOS / "record" / "people.proto"])


def new(contracts: Contracts, name: str, text: str = "") -> Message:
    message = contracts.message_class_by_name(name)()
    text_format.Parse(text, message)
    return message


def rewritten(pseudonymizer: Pseudonymizer, message: Message) -> Message:
    pseudonymizer.message(message)
    return message


# ---- keyed and deterministic; joins hold ----


def test_the_same_original_gets_the_same_pseudonym_in_every_message_method_and_run(
    shop: Contracts,
) -> None:
    first = Pseudonymizer(SHOP, KEY)
    request = rewritten(
        first, new(shop, "acme.shop.v1.CreateOrderRequest", 'customer_id: "cust-00042"')
    )
    order = rewritten(
        first,
        new(
            shop, "acme.shop.v1.Order", 'customer { customer_id: "cust-00042" email: "ada@x.org" }'
        ),
    )
    assert request.customer_id != "cust-00042"
    assert order.customer.customer_id == request.customer_id  # the join holds across methods

    again = Pseudonymizer(SHOP, KEY)  # another run, the same key
    customer = rewritten(again, new(shop, "acme.shop.v1.Customer", 'customer_id: "cust-00042"'))
    assert customer.customer_id == request.customer_id
    assert again.value("id", "cust-00042") == request.customer_id
    assert again.value("email", "ada@x.org") == order.customer.email

    other = Pseudonymizer(SHOP, OTHER_KEY)
    assert other.value("id", "cust-00042") != request.customer_id
    assert other.value("email", "ada@x.org") != order.customer.email
    assert other.value("id", 123456789) != first.value("id", 123456789)


def test_a_value_gets_the_pseudonym_of_its_kind_whatever_the_field() -> None:
    pseudonymizer = Pseudonymizer([], KEY)
    assert pseudonymizer.value("id", "abc-123") == pseudonymizer.value("id", "abc-123")
    # Kinds are apart: the same text as an id and as a uuid-less "uuid" differs.
    assert pseudonymizer.value("id", "abc-123") != pseudonymizer.value("uuid", "abc-123")


def test_different_originals_never_share_a_pseudonym() -> None:
    pseudonymizer = Pseudonymizer([], KEY)
    emails = [f"user{i}.name@mail{i % 7}.example.com" for i in range(3000)]
    ids = [f"cust-{i:05d}" for i in range(3000)]
    phones = [f"+1 555-{i:04d}" for i in range(3000)]
    uuids = [str(uuid.UUID(int=i * 7919 + 1, version=4)) for i in range(3000)]
    for kind, originals in (("email", emails), ("id", ids), ("phone", phones), ("uuid", uuids)):
        made = {pseudonymizer.value(kind, original) for original in originals}
        assert len(made) == len(originals), kind
        assert not made & set(originals), kind
    # A permutation: every three-digit id maps onto another, all 900 of them used once.
    assert {pseudonymizer.value("id", n) for n in range(100, 1000)} == set(range(100, 1000))
    # Case does not split an email: Ada@X.org and ada@x.org join.
    upper = pseudonymizer.value("email", "Ada.Lovelace@Example.ORG")
    lower = pseudonymizer.value("email", "ada.lovelace@example.org")
    assert isinstance(upper, str) and upper.lower() == lower


@pytest.mark.parametrize("size", [*range(1, 40), 1000, 1001, 2**20 + 3])
def test_the_keyed_permutation_is_one(size: int) -> None:
    indexes = range(size) if size <= 1001 else range(0, size, size // 997)
    images = [forms.permute(KEY, b"t", size, i) for i in indexes]
    assert all(0 <= image < size for image in images)
    assert len(set(images)) == len(images)
    if size >= 10:
        assert images != list(indexes)  # it does move things


# ---- the shapes ----


@pytest.mark.parametrize(
    "original",
    [
        "ada@example.com",
        "Ada.Lovelace+news@Mail.Example.org",
        "a@b.io",
        "j.doe@ox.ac.uk",
        "x_y-z.9@sub.domain.de",
    ],
)
def test_an_email_stays_an_email_with_its_top_level_domain(original: str) -> None:
    made = Pseudonymizer([], KEY).value("email", original)
    assert isinstance(made, str) and EMAIL.match(made), made
    assert made != original
    assert made.rsplit(".", 1)[1] == original.rsplit(".", 1)[1]
    local, domain = made.split("@")
    assert len(local) == len(original.split("@", maxsplit=1)[0])
    assert [c.isupper() for c in made] == [c.isupper() for c in original]
    if original.endswith(".ac.uk"):
        assert domain.endswith(".ac.uk")


@pytest.mark.parametrize(
    "original", ["+44 20 7946 0958", "(555) 123-4567", "+1-800-555-0199 ext. 12", "020 7946 0000"]
)
def test_a_phone_number_keeps_its_layout(original: str) -> None:
    made = Pseudonymizer([], KEY).value("phone", original)
    assert isinstance(made, str) and made != original
    assert len(made) == len(original)
    for was, now in zip(original, made, strict=True):
        assert was.isdigit() == now.isdigit()
        if not was.isdigit():
            assert was == now  # +, spaces, dashes, parentheses, "ext."
    digits = [c for c in made if c.isdigit()]
    assert (digits[0] == "0") == (original.lstrip("+( ")[0] == "0")  # no +0, a trunk 0 kept


@pytest.mark.parametrize(
    "original",
    [
        "3f2a1b9c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # version 1
        "018f3a2e-7c4b-7d1e-9f00-1234567890ab",  # version 7
        "90D81AC1-96C7-4ED2-B4D3-A00AECD87C7A",
        "{0b6e8f47-5c1d-4a8e-b2f3-7d9c4e1a6b05}",
        "0b6e8f475c1d4a8eb2f37d9c4e1a6b05",
        "urn:uuid:0b6e8f47-5c1d-4a8e-b2f3-7d9c4e1a6b05",
    ],
)
def test_a_uuid_stays_a_uuid_of_its_version_and_variant_written_the_same_way(original: str) -> None:
    pseudonymizer = Pseudonymizer([], KEY)
    for kind in ("uuid", "id"):
        made = pseudonymizer.value(kind, original)
        assert isinstance(made, str) and made != original
        was, now = uuid.UUID(original), uuid.UUID(made)
        assert (now.version, now.variant) == (was.version, was.variant)
        assert re.sub("[0-9a-fA-F]", "h", made) == re.sub("[0-9a-fA-F]", "h", original)
        assert made.isupper() == original.isupper()


def test_the_nil_uuid_is_kept() -> None:
    assert Pseudonymizer([], KEY).value("uuid", str(uuid.UUID(int=0))) == str(uuid.UUID(int=0))


@pytest.mark.parametrize("original", ["cust-00042", "ORD_2024:AbC9", "x", "user.name-9", "a1b2c3"])
def test_an_id_keeps_its_character_classes_and_separators(original: str) -> None:
    made = Pseudonymizer([], KEY).value("id", original)
    assert isinstance(made, str) and made != original
    assert len(made) == len(original)
    for was, now in zip(original, made, strict=True):
        assert was.isdigit() == now.isdigit()
        assert was.islower() == now.islower()
        assert was.isupper() == now.isupper()
        if not was.isalnum():
            assert was == now


def test_a_long_hex_id_stays_hex() -> None:
    made = Pseudonymizer([], KEY).value("id", "5f2b9c0e4a1d8e7f6b3c2a10")  # an ObjectId
    assert isinstance(made, str) and re.fullmatch("[0-9a-f]{24}", made), made


@pytest.mark.parametrize(
    ("name", "value", "low", "high"),
    [
        ("badge", 2147483647, 10**9, 2**31 - 1),  # int32: ten digits, still an int32
        ("badge", -2147483648, -(2**31), -(10**9)),
        ("badge", 7, 1, 9),
        ("badge", -42, -99, -10),
        ("member_id", 9223372036854775807, 10**18, 2**63 - 1),
        ("locker", 4294967295, 10**9, 2**32 - 1),
    ],
)
def test_an_integer_id_keeps_its_sign_and_digits_within_its_field(
    people: Contracts, name: str, value: int, low: int, high: int
) -> None:
    pseudonymizer = Pseudonymizer(
        [
            PseudonymRule("*.badge", "id"),
            PseudonymRule("*.member_id", "id"),
            PseudonymRule("*.locker", "id"),
        ],
        KEY,
    )
    person = rewritten(pseudonymizer, new(people, "record.v1.Person", f"{name}: {value}"))
    made = getattr(person, name)
    assert made != value
    assert low <= made <= high


def test_a_name_is_a_realistic_name_of_as_many_words(people: Contracts) -> None:
    rules = [PseudonymRule("*_name", "name")]
    pseudonymizer = Pseudonymizer(rules, KEY)
    person = rewritten(
        pseudonymizer,
        new(
            people,
            "record.v1.Person",
            'full_name: "Ada Lovelace" first_name: "Ada" last_name: "Lovelace"',
        ),
    )
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", person.full_name), person.full_name
    assert "Ada" not in person.full_name and "Lovelace" not in person.full_name
    # Word by word: the full name is the first name and the last name put together.
    assert person.full_name == f"{person.first_name} {person.last_name}"
    assert len(str(pseudonymizer.value("name", "Mary  Ann van Berg")).split()) == 4
    assert str(pseudonymizer.value("name", "ADA")).isupper()


def test_redact_blanks_strings_and_empties_bytes(people: Contracts) -> None:
    pseudonymizer = Pseudonymizer(
        [PseudonymRule("*.motto", "redact"), PseudonymRule("*.photo", "redact")], KEY
    )
    person = rewritten(
        pseudonymizer, new(people, "record.v1.Person", 'motto: "carpe diem" photo: "\\x89PNG"')
    )
    assert person.motto == REDACTED
    assert person.photo == b""
    assert pseudonymizer.value("redact", "anything") == REDACTED


def test_empty_strings_and_zeros_stay_and_presence_with_them(people: Contracts) -> None:
    text = 'motto: "" contact_email: "" emails: ["", "ada@x.org"] notes { key: "k" value: "" }'
    text += ' nickname { value: "" } badge: 0 account_number { value: 0 }'
    for kind in ("redact", "id"):  # redact would write "[redacted]" over an empty string
        pseudonymizer = Pseudonymizer([PseudonymRule("*", kind)], KEY)
        person = rewritten(pseudonymizer, new(people, "record.v1.Person", text))
        assert person.HasField("motto") and person.motto == ""
        assert person.WhichOneof("contact") == "contact_email" and person.contact_email == ""
        assert person.emails[0] == "" and person.emails[1] not in ("", "ada@x.org")
        assert person.notes["k"] == "" and person.nickname.value == ""
        assert person.badge == 0 and person.account_number.value == 0
        assert person.full_name == "" and not person.HasField("referrer")
        assert pseudonymizer.originals == {"ada@x.org"}
    assert pseudonymizer.value("id", 0) == 0 and pseudonymizer.value("email", "") == ""


# ---- where values are ----


def test_every_place_a_message_holds_a_value_is_rewritten(people: Contracts) -> None:
    rules = [
        PseudonymRule("record.v1.Person.contact_email", "email"),
        PseudonymRule("*.emails", "email"),
        PseudonymRule("*.nickname", "name"),
        PseudonymRule("*.aliases", "name"),
        PseudonymRule("*.account_number", "id"),
        PseudonymRule("*.notes", "redact"),
        PseudonymRule("*.full_name", "name"),
    ]
    pseudonymizer = Pseudonymizer(rules, KEY)
    person = (
        'full_name: "Ada Lovelace" contact_email: "ada@x.org" emails: ["ada@x.org", "al@y.net"]'
    )
    person += ' nickname { value: "Countess" } account_number { value: 123456 }'
    person += ' aliases { value: "Augusta" } notes { key: "k" value: "secret note" }'
    directory = new(
        people,
        "record.v1.Directory",
        f'title: "Ada Lovelace" by_id {{ key: "p1" value {{ {person} }} }} people {{ {person} }}'
        f" people {{ referrer {{ referrer {{ {person} }} }} }}",
    )
    rewritten(pseudonymizer, directory)
    deep = directory.people[1].referrer.referrer
    for each in (directory.by_id["p1"], directory.people[0], deep):  # map value, list, recursion
        assert each.full_name != "Ada Lovelace" and len(each.full_name.split()) == 2
        assert each.contact_email != "ada@x.org" and EMAIL.match(each.contact_email)  # oneof
        assert each.emails[0] == each.contact_email  # a list, and the join with the oneof
        assert each.emails[1] != "al@y.net"
        assert each.nickname.value != "Countess"  # a wrapper: its value
        assert each.account_number.value != 123456 and each.account_number.value >= 100000
        assert each.aliases[0].value != "Augusta"
        assert dict(each.notes) == {"k": REDACTED}  # map values, keys kept
    assert directory.by_id["p1"] == directory.people[0] == deep
    assert directory.title == "Ada Lovelace"  # no rule names Directory.title


def test_well_known_types_are_left_alone(shop: Contracts) -> None:
    # "*" matches every field of every message: Struct's and Any's strings are still not touched.
    pseudonymizer = Pseudonymizer([PseudonymRule("*", "redact")], KEY)
    order = new(
        shop,
        "acme.shop.v1.Order",
        'order_id: "o-1" metadata { fields { key: "email" value { string_value: "ada@x.org" } } }'
        ' extension { type_url: "type.googleapis.com/acme.shop.v1.Customer" value: "\\n\\x03abc" }'
        " created_at { seconds: 1700000000 }",
    )
    before = order.SerializeToString(deterministic=True)
    rewritten(pseudonymizer, order)
    assert order.order_id == REDACTED
    order.order_id = "o-1"
    assert order.SerializeToString(deterministic=True) == before


def test_a_plan_is_made_once_per_type_and_types_without_matches_are_not_walked(
    shop: Contracts, monkeypatch: pytest.MonkeyPatch
) -> None:
    pseudonymizer = Pseudonymizer([PseudonymRule("acme.shop.v1.Customer.email", "email")], KEY)
    made: list[str] = []
    real = Pseudonymizer._make_plan

    def counting(self: Pseudonymizer, desc: Any) -> Any:
        made.append(desc.full_name)
        return real(self, desc)

    monkeypatch.setattr(Pseudonymizer, "_make_plan", counting)
    for _ in range(3):
        order = new(shop, "acme.shop.v1.Order", 'customer { email: "ada@x.org" } line_items {}')
        rewritten(pseudonymizer, order)
        product = new(shop, "acme.shop.v1.Product", 'name: "ada@x.org"')
        rewritten(pseudonymizer, product)
    assert made == ["acme.shop.v1.Order", "acme.shop.v1.Customer", "acme.shop.v1.Product"]
    plans = pseudonymizer._plans
    order_plan = plans[shop.message_class_by_name("acme.shop.v1.Order").DESCRIPTOR]
    assert order_plan.nested == (("customer", 0),)  # line_items, total, payment: never walked
    assert not plans[product.DESCRIPTOR].rewrites and not plans[product.DESCRIPTOR].nested
    assert product.name == "ada@x.org"


# ---- the rules checked against the contracts ----


def check(shop: Contracts, rules: list[Any], key: bytes | None = KEY) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Pseudonymizer.checked(rules, key, shop)
    return caught.value


def test_checked_rules_become_a_pseudonymizer(shop: Contracts) -> None:
    rules = [{"field": " *.email ", "kind": "email"}, {"field": "*.customer_id", "kind": "id"}]
    pseudonymizer = Pseudonymizer.checked(rules, KEY, shop)
    assert pseudonymizer.rules == (
        PseudonymRule("*.email", "email"),
        PseudonymRule("*.customer_id", "id"),
    )
    assert Pseudonymizer.checked([], None, shop).rules == ()  # no rules: no key needed


def test_an_unknown_kind_is_named_with_what_was_meant(shop: Contracts) -> None:
    error = check(
        shop, [{"field": "*.email", "kind": "email"}, {"field": "*.email", "kind": "emial"}]
    )
    assert error.key == "record.pseudonymize[1].kind"
    assert str(error).startswith("record.pseudonymize[1].kind: unknown kind 'emial'")
    assert "did you mean 'email'?" in str(error) and "one of email, id, name" in str(error)


@pytest.mark.parametrize(
    ("pattern", "meant"),
    [
        ("*.emial", "'*.email'"),
        ("email", "'*.email'"),
        ("acme.shop.v1.Customer.phone", "'acme.shop.v1.Customer.phone_number'"),
        ("acme.shop.v1.Customer", "'acme.shop.v1.Customer.*'"),
    ],
)
def test_a_pattern_that_matches_no_field_is_named_with_what_was_meant(
    shop: Contracts, pattern: str, meant: str
) -> None:
    error = check(shop, [{"field": pattern, "kind": "id"}])
    assert error.key == "record.pseudonymize[0].field"
    assert f"{pattern!r} matches no field of any message in the contracts" in str(error)
    assert f"did you mean {meant}" in str(error)


def test_a_pattern_matches_no_field_of_a_well_known_type(shop: Contracts) -> None:
    error = check(shop, [{"field": "google.protobuf.Timestamp.*", "kind": "id"}])
    assert error.key == "record.pseudonymize[0].field"


@pytest.mark.parametrize(
    ("pattern", "kind", "field", "what"),
    [
        ("*.quantity", "email", "acme.shop.v1.LineItem.quantity", "an int32"),
        (
            "acme.shop.v1.Order.customer",
            "redact",
            "acme.shop.v1.Order.customer",
            "a message acme.shop.v1.Customer",
        ),
        (
            "*.quantities_by_sku",
            "name",
            "acme.shop.v1.Order.quantities_by_sku",
            "a map of int32 values",
        ),
        ("*.status", "id", "acme.shop.v1.Order.status", "an enum acme.shop.v1.OrderStatus"),
        ("*.rating", "id", "acme.shop.v1.Product.rating", "a message google.protobuf.DoubleValue"),
    ],
)
def test_a_kind_that_does_not_fit_the_field_is_named(
    shop: Contracts, pattern: str, kind: str, field: str, what: str
) -> None:
    error = check(shop, [{"field": pattern, "kind": kind}])
    assert error.key == "record.pseudonymize[0].kind"
    assert f"{kind} does not fit {field}, {what}" in str(error)
    assert f"narrow the pattern {pattern!r}" in str(error)


def test_id_fits_integers_and_redact_fits_bytes(people: Contracts) -> None:
    rules = [{"field": "*.badge", "kind": "id"}, {"field": "*.photo", "kind": "redact"}]
    assert len(Pseudonymizer.checked(rules, KEY, people).rules) == 2
    error = check(people, [{"field": "*.photo", "kind": "id"}])
    assert "id does not fit record.v1.Person.photo, a bytes" in str(error)
    assert "id fits string and integer fields" in str(error)


@pytest.mark.parametrize("key", [None, b""])
def test_rules_without_a_key_say_to_set_the_variable(shop: Contracts, key: bytes | None) -> None:
    error = check(shop, [{"field": "*.email", "kind": "email"}], key)
    assert error.key == "record.pseudonymize"
    assert "set GRPC_EMULATOR_RECORD_KEY" in str(error)


def test_a_short_key_is_refused(shop: Contracts) -> None:
    error = check(shop, [{"field": "*.email", "kind": "email"}], b"short")
    assert "has 5 bytes: use at least 16" in str(error)


@pytest.mark.parametrize(
    ("rule", "key", "says"),
    [
        ("*.email", "record.pseudonymize[0]", "expected a mapping of field and kind"),
        (
            {"fild": "*.email", "kind": "email"},
            "record.pseudonymize[0].fild",
            "did you mean 'field'?",
        ),
        ({"kind": "email"}, "record.pseudonymize[0].field", "expected a pattern"),
        ({"field": "*.email"}, "record.pseudonymize[0].kind", "missing: a rule needs a kind"),
    ],
)
def test_a_rule_of_the_wrong_shape_is_named(
    shop: Contracts, rule: Any, key: str, says: str
) -> None:
    error = check(shop, [rule])
    assert error.key == key and says in str(error)


def test_where_names_the_rules_as_the_caller_read_them(shop: Contracts) -> None:
    with pytest.raises(ConfigError, match=r"^--pseudonymize\[0\]\.kind: "):
        Pseudonymizer.checked([{"field": "*.email", "kind": "x"}], KEY, shop, "--pseudonymize")


def test_value_takes_strings_and_ints_for_ids_only() -> None:
    pseudonymizer = Pseudonymizer([], KEY)
    with pytest.raises(TypeError):
        pseudonymizer.value("email", 42)
    with pytest.raises(TypeError):
        pseudonymizer.value("id", True)
    with pytest.raises(ValueError, match="unknown pseudonym kind"):
        pseudonymizer.value("ssn", "123")
    with pytest.raises(ValueError, match="fits no protobuf integer field"):
        pseudonymizer.value("id", 2**64)
    assert 10**19 <= int(pseudonymizer.value("id", 2**64 - 1)) < 2**64  # a uint64
    with pytest.raises(ValueError, match="unknown pseudonym kind"):
        Pseudonymizer([PseudonymRule("*.x", "ssn")], KEY)


# ---- the leak check ----


def test_originals_are_collected_with_their_fields(shop: Contracts) -> None:
    pseudonymizer = Pseudonymizer(SHOP, KEY)
    order = 'order_id: "3f2a1b9c-4d5e-4f60-8a7b-9c0d1e2f3a4b" customer { email: "ada@x.org" }'
    rewritten(pseudonymizer, new(shop, "acme.shop.v1.Order", order))
    pseudonymizer.value("id", 123456)
    assert pseudonymizer.originals == {
        "3f2a1b9c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "ada@x.org",
        "123456",
    }
    assert pseudonymizer.labels["ada@x.org"] == "acme.shop.v1.Customer.email"
    assert pseudonymizer.labels["123456"] == "kind id"


def test_leaks_name_the_file_line_and_field_but_not_the_value(
    shop: Contracts, tmp_path: Path
) -> None:
    pseudonymizer = Pseudonymizer(SHOP, KEY)
    customer = new(
        shop, "acme.shop.v1.Customer", 'customer_id: "cust-00042" email: "ada@lovelace.org"'
    )
    clean = text_format.MessageToString(rewritten(pseudonymizer, customer), as_one_line=True)
    recording = tmp_path / "stubs" / "orders.yaml"
    recording.parent.mkdir()
    recording.write_text(f"# {clean}\nnote: written by ADA@Lovelace.org\nid: cust-00042\n")
    (tmp_path / "other.json").write_text('{"email": "ada@lovelace.org"}\n')
    assert leaks([tmp_path / "other.json", tmp_path / "stubs"], pseudonymizer.labels) == [
        f"{tmp_path / 'other.json'}:1: an original value of a pseudonymized field "
        "(acme.shop.v1.Customer.email)",
        f"{recording}:2: an original value of a pseudonymized field (acme.shop.v1.Customer.email)",
        f"{recording}:3: an original value of a pseudonymized field "
        "(acme.shop.v1.Customer.customer_id)",
    ]
    found = leaks([recording], pseudonymizer.originals)  # without labels: still found
    assert found == [
        f"{recording}:2: an original value that was pseudonymized",
        f"{recording}:3: an original value that was pseudonymized",
    ]
    assert not any("lovelace" in line.lower() or "00042" in line for line in found)
    assert leaks([tmp_path / "other.json"], []) == []


def test_leaks_skip_short_originals_and_numbers_inside_numbers(tmp_path: Path) -> None:
    path = tmp_path / "recording.yaml"
    path.write_text("code: US\nat: 2012345\nid: 12345\nname: Bob\n")
    found = leaks([path], ["US", "Bob", "12345"])
    assert MIN_LEAK_LENGTH == 4
    assert found == [f"{path}:3: an original value that was pseudonymized"]


def test_leaks_find_json_escaped_originals(tmp_path: Path) -> None:
    path = tmp_path / "recording.json"
    path.write_text('{"name": "Zo\\u00eb Dupr\\u00e9"}\n')
    assert leaks([path], ["Zoë Dupré"]) == [f"{path}:1: an original value that was pseudonymized"]

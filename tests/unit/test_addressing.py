import pytest

from gateway.core.addressing import (
    AddressRefused,
    FaxNumber,
    format_number,
    parse_fax_address,
    sender_matches,
)

US = frozenset({"US"})


def parse(address: str, allowed: frozenset[str] = US, country: str = "US") -> FaxNumber:
    return parse_fax_address(
        address, fax_domain="fax.local", default_country=country, allowed_countries=allowed
    )


@pytest.mark.parametrize(
    "local",
    ["13235551212", "+13235551212", "3235551212", "1-323-555-1212", "323.555.1212", "(323) 555-1212"],
)
def test_north_american_spellings_become_one_plus_ten_digits(local: str) -> None:
    number = parse(f"{local}@fax.local")
    assert number.wire == "13235551212"
    assert number.e164 == "+13235551212"


def test_quoted_international_number_keeps_plus() -> None:
    number = parse('"+44 20 7946 0958"@fax.local', allowed=frozenset({"GB"}))
    assert number.wire == "+442079460958"
    assert number.region == "GB"


def test_domain_is_case_insensitive() -> None:
    assert parse("13235551212@FAX.Local").wire == "13235551212"


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("13235551212@example.com", "550 5.7.1"),
        ("alice@fax.local", "553 5.1.3"),
        ("123@fax.local", "553 5.1.3"),
        ("1323555121299999@fax.local", "553 5.1.3"),
        ("19005551234@fax.local", "550 5.7.1"),  # premium rate
        ('"+44 20 7946 0958"@fax.local', "550 5.7.1"),  # country not allowed
    ],
)
def test_refusals_carry_their_smtp_reply(address: str, code: str) -> None:
    with pytest.raises(AddressRefused) as info:
        parse(address)
    assert info.value.reply.startswith(code)
    assert len(info.value.reply) > 20  # a sentence, not just a code


def test_premium_rate_reply_says_why() -> None:
    with pytest.raises(AddressRefused, match="premium-rate"):
        parse("19005551234@fax.local")


def test_sender_patterns() -> None:
    patterns = ["alice@example.com", "*@scan.example.com"]
    assert sender_matches("Alice@Example.com", patterns)
    assert sender_matches("mfp1@scan.example.com", patterns)
    assert not sender_matches("bob@example.com", patterns)
    assert not sender_matches("x@evil.scan.example.com.attacker", patterns)
    assert not sender_matches("alice@example.com", [])


def test_format_number_for_people() -> None:
    assert format_number("13235551212") == "+1 323-555-1212"
    assert format_number("3235551212") == "+1 323-555-1212"
    assert format_number("+442079460958") == "+44 20 7946 0958"
    assert format_number("unavailable") == "unavailable"


@pytest.mark.parametrize(
    "local",
    [
        "3235551212x900",
        '"323-555-1212 ext. 900"',
        "3235551212;ext=900",
        "+13235551212;ext=900",
        "3235551212#900",
        "3235551212,900",
        '"+1 323 555 1212 extension 900"',
    ],
)
def test_a_number_with_an_extension_is_refused_not_dialled_without_it(local: str) -> None:
    with pytest.raises(AddressRefused) as info:
        parse(f"{local}@fax.local")
    assert info.value.reply.startswith("553 5.1.3 ")
    assert (
        "has an extension (900); a fax is dialled to the number alone and would not reach it"
        in info.value.reply
    )

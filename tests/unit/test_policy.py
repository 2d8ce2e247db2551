"""Pure policy: sending limits, eFax's payload limit, header caps, destinations, upstream verification."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core.addressing import AddressRefused, parse_fax_address
from gateway.core.authresults import Requirement, verify
from gateway.core.policy import (
    RateLimits,
    Use,
    check_rates,
    encoded_payload_bytes,
    header_refusal,
    payload_refusal,
    retry_phrase,
)

NOW = datetime(2026, 5, 9, 13, 30, 0, tzinfo=UTC).timestamp()


def uses(*items: tuple[float, int, int]) -> list[Use]:
    """(minutes ago, faxes, pages)"""
    return [Use(NOW - minutes * 60, faxes, pages) for minutes, faxes, pages in items]


# -- sending limits ----------------------------------------------------------------------
def test_within_the_limits_is_fine_and_zero_means_no_limit() -> None:
    limits = RateLimits(faxes_per_hour_per_sender=3)
    assert check_rates(limits=limits, now=NOW, faxes=1, pages=1, sender="a@x", sender_uses=uses((5, 2, 2))).ok
    unlimited = RateLimits()
    assert check_rates(
        limits=unlimited, now=NOW, faxes=500, pages=9999, sender="a@x", sender_uses=uses((1, 999, 9))
    ).ok


def test_over_the_hourly_limit_says_when_to_try_again() -> None:
    limits = RateLimits(faxes_per_hour_per_sender=3)
    history = uses((50, 1, 1), (20, 1, 1), (10, 1, 1))  # the oldest ages out at 14:10
    verdict = check_rates(
        limits=limits, now=NOW, faxes=1, pages=1, sender="alice@example.com", sender_uses=history
    )
    assert verdict.reply == (
        "451 4.7.1 alice@example.com has sent 3 faxes in the last hour, and at most 3 are allowed; "
        "try again in 10 minutes (after 13:40 UTC)."
    )
    assert verdict.retry_at == NOW - 50 * 60 + 3600


def test_older_mails_do_not_count() -> None:
    limits = RateLimits(faxes_per_hour_per_sender=1)
    assert check_rates(
        limits=limits, now=NOW, faxes=1, pages=1, sender="a@x", sender_uses=uses((61, 5, 5))
    ).ok


def test_a_mail_to_several_numbers_needs_room_for_all() -> None:
    limits = RateLimits(faxes_per_hour_per_sender=5)
    history = uses((40, 2, 2), (30, 1, 1))
    verdict = check_rates(limits=limits, now=NOW, faxes=4, pages=4, sender="a@x", sender_uses=history)
    assert verdict.reply is not None and verdict.reply.startswith("451 4.7.1 ")
    assert verdict.retry_at == NOW - 40 * 60 + 3600  # 3 used + 4 > 5 until the 2 faxes of 40 min ago age out


def test_pages_per_day_for_the_mailbox() -> None:
    limits = RateLimits(pages_per_day_per_mailbox=100)
    history = uses((23 * 60, 1, 60), (60, 1, 30))
    verdict = check_rates(
        limits=limits,
        now=NOW,
        faxes=1,
        pages=20,
        sender="a@x",
        mailbox="+1 323-555-0100",
        mailbox_uses=history,
    )
    assert verdict.reply == (
        "451 4.7.1 The fax number +1 323-555-0100 has sent 90 pages in the last 24 hours, and at most 100 "
        "are allowed; try again in 60 minutes (after 14:30 UTC)."
    )
    assert check_rates(
        limits=limits, now=NOW, faxes=1, pages=20, sender="a@x", mailbox=None, mailbox_uses=history
    ).ok


def test_a_mail_that_can_never_fit_is_a_permanent_refusal() -> None:
    limits = RateLimits(pages_per_day_per_sender=50)
    verdict = check_rates(limits=limits, now=NOW, faxes=2, pages=60, sender="a@x")
    assert verdict.retry_at is None
    assert verdict.reply == (
        "550 5.7.1 This mail would be 60 pages, more than the 50 pages a@x may send in 24 hours; "
        "send it in smaller parts."
    )


def test_the_latest_of_several_waits_is_given() -> None:
    limits = RateLimits(faxes_per_hour_per_sender=1, faxes_per_hour_per_mailbox=1)
    verdict = check_rates(
        limits=limits,
        now=NOW,
        faxes=1,
        pages=1,
        sender="a@x",
        sender_uses=uses((50, 1, 1)),
        mailbox="+1 323-555-0100",
        mailbox_uses=uses((10, 1, 1)),
    )
    assert verdict.retry_at == NOW + 50 * 60
    assert "The fax number" in (verdict.reply or "")


def test_retry_phrase_names_the_day_when_it_is_not_today() -> None:
    assert retry_phrase(NOW + 20 * 3600, NOW) == "try again in 20 hours (after 2026-05-10 09:30 UTC)"
    assert retry_phrase(NOW + 1, NOW) == "try again in 1 minute (after 13:31 UTC)"


# -- eFax's payload and header caps -------------------------------------------------------------
def test_payload_counts_base64_and_json_overhead() -> None:
    assert encoded_payload_bytes([3, 4], 1) >= 4 + 8
    assert payload_refusal([70_000_000], 1) is None  # 93.3 MB encoded
    reply = payload_refusal([40_000_000, 40_000_000], 1)  # 106.7 MB encoded
    assert reply is not None
    assert reply.startswith(
        "552 5.3.4 The documents come to 106.7 MB once encoded for eFax, more than the 100 MB"
    )


def test_header_caps() -> None:
    mail = b"From: a@x\r\nTo: b@y\r\nSubject: hi\r\n folded\r\n\r\nbody\r\n"
    assert header_refusal(mail, max_bytes=1000, max_fields=3) is None
    assert (header_refusal(mail, max_bytes=1000, max_fields=2) or "").startswith(
        "552 5.3.4 The mail has 3 header fields, more than the 2"
    )
    assert (header_refusal(mail, max_bytes=20, max_fields=10) or "").startswith(
        "552 5.3.4 The mail's header is 40 bytes, more than the 20 bytes"
    )
    assert (
        header_refusal(b"X: " + b"a" * 5000, max_bytes=1000, max_fields=10) is not None
    )  # no body: all header


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_header_size_is_exact_either_side_of_the_limit_whatever_the_body(eol: bytes) -> None:
    body = (b"A" * 76 + eol) * 2000  # a long body: the header's end is not looked for in it
    head = b"From: a@x" + eol + b"X-Pad: " + b"p" * 200 + eol

    def mail(pad: int) -> bytes:
        return head + b"X: " + b"q" * pad + eol + eol + body

    size = len(mail(0)) - len(body) - 2 * len(eol)  # the header block, without its blank line
    assert header_refusal(mail(0), max_bytes=size, max_fields=10) is None
    assert header_refusal(mail(0), max_bytes=size - 1, max_fields=10) == (
        f"552 5.3.4 The mail's header is {size} bytes, more than the {size - 1} bytes this "
        "gateway takes; send it without the extra header fields."
    )
    far = header_refusal(mail(5000), max_bytes=size, max_fields=10) or ""
    assert far.startswith(f"552 5.3.4 The mail's header is {size + 5000} bytes, more than the {size} bytes")


# -- destinations -------------------------------------------------------------------------------
def parse(address: str, allow: list[str] | None = None, deny: list[str] | None = None) -> str:
    return parse_fax_address(
        address,
        fax_domain="fax.local",
        default_country="US",
        allowed_countries=frozenset({"US"}),
        allow_numbers=allow or [],
        deny_numbers=deny or [],
    ).wire


def test_deny_patterns_refuse_numbers_of_allowed_countries() -> None:
    with pytest.raises(AddressRefused) as info:
        parse("13235551212@fax.local", deny=["+1323555*"])
    assert info.value.reply == (
        "550 5.7.1 Faxes to +13235551212 are not allowed here "
        "(the administrator's rule deny_numbers +1323555*)."
    )
    assert parse("13105551212@fax.local", deny=["+1323555*"]) == "13105551212"


def test_allow_patterns_open_single_numbers_abroad_but_deny_wins() -> None:
    assert parse('"+44 20 7946 0958"@fax.local', allow=["+4420794609??"]) == "+442079460958"
    with pytest.raises(AddressRefused, match="not allowed here"):
        parse('"+44 20 7946 0958"@fax.local', allow=["+44*"], deny=["+4420*"])
    with pytest.raises(AddressRefused, match="GB"):
        parse('"+44 20 7946 0958"@fax.local', allow=["+33*"])


def test_premium_numbers_are_refused_even_when_allowed_by_pattern() -> None:
    with pytest.raises(AddressRefused, match="premium-rate"):
        parse("19005551234@fax.local", allow=["+1*"])


# -- upstream verification (Authentication-Results) ------------------------------------------------
def ar(requirement: Requirement, *headers: str, sender: str = "alice@example.com") -> str | None:
    return verify(
        list(headers),
        requirement=requirement,
        authserv_id="mx.example.com",
        from_domain="alice@example.com",
        mailfrom_domain=sender,
    )


def test_off_by_default() -> None:
    assert ar("") is None


def test_dmarc_pass_from_the_named_mta_for_the_from_domain() -> None:
    assert (
        ar("dmarc", "mx.example.com; spf=fail smtp.mailfrom=x.org; dmarc=pass header.from=example.com")
        is None
    )
    assert ar("dmarc", "MX.Example.COM;\r\n\tdmarc=pass (p=reject) header.from=Example.com") is None


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ((), "no Authentication-Results from mx.example.com says so"),
        (("evil.example.net; dmarc=pass header.from=example.com",), "no Authentication-Results"),
        (("mx.example.com; dmarc=fail header.from=example.com",), "it reported dmarc=fail"),
        (("mx.example.com; dmarc=pass header.from=other.org",), "it reported dmarc=pass"),
        (
            (
                "mx.example.com; dmarc=pass header.from=example.com",
                "mx.example.com; dmarc=fail header.from=example.com",
            ),
            "dmarc=pass, dmarc=fail",
        ),
        (("this is ; not = a header",), "no Authentication-Results"),
    ],
)
def test_dmarc_refusals_say_what_was_found(headers: tuple[str, ...], found: str) -> None:
    reply = ar("dmarc", *headers)
    assert reply is not None
    assert reply.startswith(
        "550 5.7.1 This gateway takes mail from outside only when mx.example.com verified "
        "its sender (dmarc=pass); "
    )
    assert found in reply


def test_spf_and_either() -> None:
    spf = "mx.example.com; spf=pass smtp.mailfrom=alice@example.com"
    assert ar("spf", spf) is None
    assert ar("spf", spf, sender="bob@other.org") is not None  # a pass for someone else's domain
    assert ar("dmarc_or_spf", spf) is None
    reply = ar("dmarc_or_spf", "mx.example.com; spf=softfail smtp.mailfrom=example.com")
    assert reply is not None and "(dmarc=pass or spf=pass)" in reply and "spf=softfail" in reply


def test_an_spf_pass_counts_only_for_a_domain_aligned_with_the_from_domain() -> None:
    other = "mx.example.com; spf=pass smtp.mailfrom=bounces.evil.example"
    assert ar("spf", other, sender="x@bounces.evil.example") is not None  # From: alice@example.com
    sub = "mx.example.com; spf=pass smtp.mailfrom=bounces.example.com"
    assert ar("spf", sub, sender="x@bounces.example.com") is None  # relaxed alignment: a subdomain
    assert ar("dmarc_or_spf", other, sender="x@bounces.evil.example") is not None

"""Honest senders: the one address a From: field names, or a refusal when it could be read otherwise."""

from __future__ import annotations

import pytest

from gateway.core.senders import SenderRefused, dmarc_domain, header_fields, one_sender

AMBIGUOUS = "550 5.7.1 The From: field "


@pytest.mark.parametrize(
    ("value", "address", "name"),
    [
        ("alice@example.com", "alice@example.com", ""),
        ("<alice@example.com>", "alice@example.com", ""),
        ("Alice Example <alice@example.com>", "alice@example.com", "Alice Example"),
        ('"Example, Alice" <alice@example.com>', "alice@example.com", "Example, Alice"),
        ("Dr. Alice Example <alice@example.com>", "alice@example.com", "Dr. Alice Example"),
        ("=?iso-8859-1?q?J=FCrgen_M=FCller?= <jm@example.com>", "jm@example.com", "Jürgen Müller"),
        ("Jürgen Müller <jm@example.com>", "jm@example.com", "Jürgen Müller"),
        ('"alice@example.com" <alice@example.com>', "alice@example.com", "alice@example.com"),
        ("HP Scanner <scan@scan.example.com> (2nd floor)", "scan@scan.example.com", "HP Scanner"),
    ],
)
def test_plain_senders_of_every_mail_client_are_read(value: str, address: str, name: str) -> None:
    found = one_sender([value])
    assert (found.address, found.display_name) == (address, name)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("alice@example.com <mallory@evil.example>", "part of it is not an address"),
        ("alice@example.com)<mallory@evil.example>", "part of it is not an address"),
        ("Alice <alice@example.com>>", "part of it is not an address"),
        ('"alice@example.com" <mallory@evil.example>', "its name looks like another address"),
        ("=?utf-8?q?alice=40example.com?= <mallory@evil.example>", "its name looks like another address"),
        ("=?utf-8?b?QWxpY2UgPGFsaWNlQGV4YW1wbGUuY29tPg==?= <m@evil.example>", "its name looks like another"),
        ("mallory@evil.example (alice@example.com)", "its name looks like another address"),
        ("=?utf-8?q?=E2=80=AEmoc.elpmaxe=40ecila?= <m@evil.example>", "control or invisible characters"),
        ("alice@example.com\x00<m@evil.example>", "control or invisible characters"),
        ('"alice@example.com"@evil.example', "not a plain name@domain"),
        ("Team: alice@example.com;", "it is a group"),
    ],
)
def test_a_from_that_could_name_someone_else_is_refused_as_ambiguous(value: str, why: str) -> None:
    with pytest.raises(SenderRefused) as refused:
        one_sender([value])
    assert refused.value.reply.startswith(AMBIGUOUS)
    assert why in refused.value.reply
    assert refused.value.reply.endswith(
        "; send it with one plain address, such as Alice Example <alice@example.com>."
    )
    assert refused.value.reply.isascii() and refused.value.reply.isprintable()


def test_several_addresses_or_fields_or_none() -> None:
    with pytest.raises(SenderRefused, match=r"^550 5\.7\.1 The From: field names 2 addresses"):
        one_sender(["alice@example.com, mallory@evil.example"])
    with pytest.raises(
        SenderRefused, match=r"^550 5\.7\.1 The mail has 2 From: fields; it needs exactly one"
    ):
        one_sender(["alice@example.com", "mallory@evil.example"])
    with pytest.raises(SenderRefused, match=r"^550 5\.7\.1 The mail has no From: field"):
        one_sender([])
    with pytest.raises(SenderRefused, match="names no address"):
        one_sender([""])


def test_header_fields_are_read_from_the_bytes_unfolded_up_to_the_body() -> None:
    raw = (
        b"Received: x\r\nFROM: Alice\r\n <alice@example.com>\r\nSubject: hi\r\n"
        b"Authentication-Results: mx.example.com;\r\n\tdmarc=pass\r\n\r\nFrom: not@a.header\r\n"
    )
    assert header_fields(raw, "From") == ["Alice <alice@example.com>"]
    assert header_fields(raw, "authentication-results") == ["mx.example.com;\tdmarc=pass"]
    assert header_fields(b"From: a@b.example\n\nbody", "From") == ["a@b.example"]


def test_the_dmarc_domain_is_the_from_domain_as_dmarc_compares_it() -> None:
    assert one_sender(["Alice <alice@Mail.Example.COM>"]).dmarc_domain == "mail.example.com"
    assert dmarc_domain("bücher.example") == "xn--bcher-kva.example"

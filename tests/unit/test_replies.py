"""Replies to reports (gateway.core.replies): the address, its token, the reply's first word."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from gateway.core import replies


def mail(text: str, subtype: str = "plain") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg.set_content(text, subtype=subtype)
    return msg


def test_a_token_is_unguessable_and_survives_a_mail_server_changing_case() -> None:
    token = replies.new_token()
    assert len(token) == 32 and token == token.lower() and token != replies.new_token()
    address = replies.reply_address(token, "fax.local")
    assert replies.is_reply_address(address.upper().replace("FAX.LOCAL", "fax.local"), "fax.local")
    assert replies.token_of(address.upper()) == token
    assert replies.token_hash(token.upper()) == replies.token_hash(token) != token


@pytest.mark.parametrize(
    "address",
    ["13235551212@fax.local", "fax-gateway+abc@example.com", "fax-gateway@fax.local", "x+abc@fax.local"],
)
def test_other_addresses_are_not_replies(address: str) -> None:
    assert not replies.is_reply_address(address, "fax.local")


def test_a_reply_address_of_the_wrong_shape_has_no_token() -> None:
    assert replies.token_of("fax-gateway+short@fax.local") is None
    assert replies.token_of("fax-gateway+" + "1" * 32 + "@fax.local") is None  # not base32


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("retry", "retry"),
        ("  Retry, please\n", "retry"),
        ("\n\nCANCEL!\n> retry", "cancel"),
        ("Thanks!", "other"),
        ("> retry\n", "other"),  # only quoted text
        ("On Thu, Dec 3, the gateway wrote:\n> retry", "other"),
        ("retrying", "other"),
        ("", "other"),
    ],
)
def test_the_first_word_of_the_reply_decides(text: str, word: str) -> None:
    assert replies.first_word(mail(text)) == word


def test_an_html_only_reply_is_read_too() -> None:
    assert (
        replies.first_word(mail("<html><body><p>Cancel</p><blockquote>retry</blockquote>", "html"))
        == "cancel"
    )


@pytest.mark.parametrize(
    ("auto", "precedence", "expected"),
    [("auto-replied", None, True), ("no", None, False), (None, "bulk", True), (None, None, False)],
)
def test_automatic_replies_are_recognised(auto: str | None, precedence: str | None, expected: bool) -> None:
    assert replies.auto_reply(auto, precedence) is expected

"""The pure decisions mail in's handler takes from the core: trusted networks, where reports
go, the replies for documents that cannot be faxed and for split mails over their bounds."""

from __future__ import annotations

from gateway.core.addressing import display_names
from gateway.core.document_errors import DocumentError, NothingToFax, SplitMessage, TooManyDocuments
from gateway.core.networks import Networks
from gateway.core.partial import TOO_MANY_PIECES, split_too_big
from gateway.core.policy import document_refusal
from gateway.core.senders import report_address


def test_trusted_networks_take_ipv4_mapped_addresses_and_never_text() -> None:
    nets = Networks(["127.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert "127.0.0.1" in nets and "::ffff:127.0.0.1" in nets and "2001:db8::1" in nets
    assert "192.0.2.7" in nets and "192.0.2.8" not in nets
    assert "" not in nets and "localhost" not in nets and None not in nets


def test_reports_go_to_reply_to_only_for_a_trusted_session_and_one_of_the_senders() -> None:
    senders = ["*@scan.example.com", "alice@example.com"]
    scanner = "Front desk <frontdesk@scan.example.com>"
    assert report_address(scanner, "scanner@x", trusted_only=True, senders=senders) == (
        "frontdesk@scan.example.com"
    )
    assert report_address(scanner, "scanner@x", trusted_only=False, senders=senders) == "scanner@x"
    assert report_address("mallory@evil.example", "a@x", trusted_only=True, senders=senders) == "a@x"
    assert report_address("", "a@x", trusted_only=True, senders=senders) == "a@x"


def test_documents_that_cannot_be_faxed_are_refused_in_one_line() -> None:
    assert document_refusal(TooManyDocuments("Too many\n documents.")) == "552 5.3.4 Too many documents."
    assert document_refusal(NothingToFax("Only a zip.")) == "554 5.6.0 Only a zip."
    assert document_refusal(SplitMessage("A piece.")).startswith("554 5.6.0 ")
    assert document_refusal(DocumentError("x")) == "554 5.6.0 x"


def test_split_mails_over_their_bounds_say_how_big() -> None:
    assert TOO_MANY_PIECES.startswith("552 5.3.4 This split message has more than 100 pieces")
    assert "come to 2.5 MB, more than the 2.0 MB" in split_too_big(2_500_000, 2_000_000)
    assert "come to 2 KB, more than the 1 KB" in split_too_big(1_001, 999)


def test_display_names_by_lower_case_address() -> None:
    assert display_names(['"Dr. Who" <Who@Fax.Local>, plain@fax.local', "Bob <b@fax.local>"]) == {
        "who@fax.local": "Dr. Who",
        "b@fax.local": "Bob",
    }

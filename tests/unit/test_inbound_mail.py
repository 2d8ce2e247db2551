"""The mail a received fax becomes: subject, body, attachment, Message-ID (pure core)."""

from __future__ import annotations

import email.policy
import io
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from PIL import Image
from pypdf import PdfReader

from gateway.core.inbound_mail import (
    MailContext,
    ReceivedFax,
    admin_notice,
    attachment_name,
    details,
    fax_mail,
    message_id_for,
    pretty_number,
    subject_for,
    tiff_to_pdf,
    too_large_notice,
)
from gateway.efax.models import FaxState, FaxSummary
from gateway.workers.receive import metadata_of

FAX_ID = "ec048b91-3589-489b-8e95-a067e50d92a8"
LA = ZoneInfo("America/Los_Angeles")
CTX = MailContext(from_address="Fax Gateway <faxes@gw.example.com>", zone=LA)
NOW = datetime(2026, 11, 27, 23, 31, tzinfo=UTC)
PDF = b"%PDF-1.4\n% a tiny stand-in\n%%EOF\n"


def fax(**changes: object) -> ReceivedFax:
    values: dict[str, object] = {
        "fax_id": FAX_ID,
        "mailbox_user_id": "11111111-22222222",
        "received_at": datetime(2026, 11, 27, 23, 30, tzinfo=UTC),  # 15:30 in Los Angeles
        "pages": 3,
        "calling_number": "13235551212",
        "station_id": "ACME LEGAL",
        "receiving_number": "+13235550100",
    }
    values.update(changes)
    return ReceivedFax(**values)  # type: ignore[arg-type]


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(msg.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_subject_names_the_caller_and_the_pages() -> None:
    assert subject_for(fax()) == "Fax from +1 323-555-1212 (3 pages)"
    assert subject_for(fax(pages=1)) == "Fax from +1 323-555-1212 (1 page)"
    assert subject_for(fax(calling_number=None)) == "Fax from ACME LEGAL (3 pages)"
    assert subject_for(fax(calling_number=None, station_id=None)) == "Fax from unknown sender (3 pages)"
    assert subject_for(fax(calling_number="+442079460958")) == "Fax from +44 20 7946 0958 (3 pages)"


def test_numbers_in_every_spelling_eFax_uses() -> None:
    for raw in ("13235551212", "+13235551212", "3235551212", "1-323-555-1212"):
        assert pretty_number(raw) == "+1 323-555-1212"
    assert pretty_number("442079460958") == "+44 20 7946 0958"
    assert pretty_number("12") == "12"
    assert pretty_number(None) is None


def test_attachment_name_uses_the_local_time_and_the_callers_digits() -> None:
    assert attachment_name(fax(), LA) == "fax-20261127-153000-from-13235551212.pdf"
    assert (
        attachment_name(fax(calling_number=None), ZoneInfo("UTC")) == "fax-20261127-233000-from-unknown.pdf"
    )


def test_fax_mail_has_text_html_and_the_pdf() -> None:
    msg = reparse(
        fax_mail(
            fax(), PDF, to=["a@example.com", "b@example.com"], mailbox_number="13235550100", ctx=CTX, now=NOW
        )
    )
    assert msg["Subject"] == "Fax from +1 323-555-1212 (3 pages)"
    assert msg["From"] == "Fax Gateway <faxes@gw.example.com>"
    assert msg["To"] == "a@example.com, b@example.com"
    assert msg["Message-ID"] == f"<fax.{FAX_ID}@gw.example.com>"
    assert msg["Auto-Submitted"] == "auto-generated"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    for body in (text.get_content(), html.get_content()):
        assert "2026-11-27 15:30:00 PST" in body
        assert "America/Los_Angeles" in body
        assert "+1 323-555-1212" in body
        assert "ACME LEGAL" in body
        assert "+1 323-555-0100" in body
        assert "11111111-22222222" in body
        assert FAX_ID in body
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "fax-20261127-153000-from-13235551212.pdf"
    assert attachment.get_content() == PDF


def test_html_body_escapes_what_the_caller_controls() -> None:
    msg = reparse(
        fax_mail(
            fax(station_id="<script>x</script>"),
            PDF,
            to=["a@example.com"],
            mailbox_number=None,
            ctx=CTX,
            now=NOW,
        )
    )
    html = msg.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


def test_the_message_id_is_the_same_every_time() -> None:
    first = fax_mail(fax(), PDF, to=["a@example.com"], mailbox_number=None, ctx=CTX, now=NOW)
    again = fax_mail(fax(), PDF, to=["a@example.com"], mailbox_number=None, ctx=CTX, now=NOW)
    assert first["Message-ID"] == again["Message-ID"]
    assert message_id_for(FAX_ID, "") == f"<fax.{FAX_ID}@fax-gateway.invalid>"


def test_too_large_notice_has_the_details_and_where_the_fax_is_kept_but_no_pdf() -> None:
    msg = reparse(
        too_large_notice(
            fax(),
            size_bytes=40_000_000,
            limit_bytes=25_000_000,
            to=["a@example.com"],
            mailbox_number="13235550100",
            kept_at="eFax and the gateway",
            ctx=CTX,
            now=NOW,
        )
    )
    assert list(msg.iter_attachments()) == []
    assert msg["Subject"].startswith("Fax from +1 323-555-1212 (3 pages)")
    assert msg["Message-ID"] != f"<fax.{FAX_ID}@gw.example.com>"
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "too large" in body and "40.0 MB" in body and "25.0 MB" in body
    assert "eFax and the gateway" in body and FAX_ID in body


def test_admin_notice_names_the_refused_addresses() -> None:
    msg = reparse(
        admin_notice(
            fax(),
            problem="the relay refused 1 of 2 addresses",
            refused={"bob@example.com": "550 5.1.1 no such user"},
            mailbox_number=None,
            kept_at="eFax",
            admin="admin@example.com",
            ctx=CTX,
            now=NOW,
        )
    )
    assert msg["To"] == "admin@example.com"
    text = msg.get_content()
    assert "bob@example.com" in text and "550 5.1.1 no such user" in text and FAX_ID in text


def test_stored_metadata_round_trips_into_the_mail_values() -> None:
    summary = FaxSummary(
        fax_id=FAX_ID,
        direction="INBOUND",
        state=FaxState.DELIVERED,
        pages=2,
        duration_s=40,
        completed_at=datetime(2026, 11, 27, 23, 30, tzinfo=UTC),
        originating_fax_number="13235551212",
        originating_fax_tsid=None,
        destination_fax_number="13235550100",
        image_downloaded=False,
        client_reference_id=None,
        error_code=None,
        error_message=None,
    )
    got = ReceivedFax.from_metadata(metadata_of(summary), fax_id=FAX_ID, user_id="u", seen_at=0)
    assert got == ReceivedFax(
        fax_id=FAX_ID,
        mailbox_user_id="u",
        received_at=datetime(2026, 11, 27, 23, 30, tzinfo=UTC),
        pages=2,
        calling_number="13235551212",
        station_id=None,
        receiving_number="13235550100",
    )
    unknown = ReceivedFax.from_metadata(
        {"originating_fax_number": "unavailable"}, fax_id=FAX_ID, user_id="u", seen_at=1_800_000_000
    )
    assert unknown.calling_number is None and unknown.pages is None
    assert unknown.received_at == datetime.fromtimestamp(1_800_000_000, UTC)


def test_a_multipage_fax_tiff_becomes_a_pdf_with_as_many_pages() -> None:
    frames = [Image.new("1", (1728, 2200), 1) for _ in range(3)]
    out = io.BytesIO()
    frames[0].save(
        out, format="TIFF", save_all=True, append_images=frames[1:], compression="group4", dpi=(204, 196)
    )
    pdf = tiff_to_pdf(out.getvalue())
    assert pdf.startswith(b"%PDF")
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 3


def test_received_times_name_the_zone_once() -> None:
    utc = MailContext(from_address="faxes@gw.example.com", zone=ZoneInfo("UTC"))
    [received] = [v for k, v in details(fax(), None, utc) if k == "Received"]
    assert received.endswith(" UTC") and "(UTC)" not in received
    [received] = [v for k, v in details(fax(), None, CTX) if k == "Received"]
    assert received.endswith(" PST (America/Los_Angeles)")


def test_received_fax_mail_is_from_the_gateway_by_name() -> None:
    bare = MailContext(from_address="faxes@gw.example.com", zone=LA)
    msg = reparse(fax_mail(fax(), PDF, to=["a@example.com"], mailbox_number=None, ctx=bare, now=NOW))
    assert msg["From"] == "Fax gateway <faxes@gw.example.com>"
    named = MailContext(from_address="faxes@gw.example.com", zone=LA, from_name="")
    msg = reparse(fax_mail(fax(), PDF, to=["a@example.com"], mailbox_number=None, ctx=named, now=NOW))
    assert msg["From"] == "faxes@gw.example.com"

"""Inbound mail: a received fax as the email its mapped inboxes get (pure core).

Consumes: the fax's metadata as the receiver recorded it (``ReceivedFax``), the PDF
bytes, the mailbox, and a ``MailContext`` (gateway From address, time zone, default
country). Produces: ``email.message.EmailMessage`` values, nothing else; no I/O,
``now`` is a parameter.

- ``fax_mail``: one mail per fax: subject "Fax from +1 323-555-1212 (3 pages)" (the
  station id, or "unknown sender", when eFax gives no number), a text and an HTML
  body (received time in the configured zone, pages, calling number, station id,
  receiving number, mailbox, fax id) and the PDF attached as
  ``fax-20261127-153000-from-13235551212.pdf``.
- ``too_large_notice``: the same details without the PDF, saying the fax was larger
  than the relay takes and where it is kept.
- ``admin_notice``: tells the administrator which addresses could not get a fax.
- ``tiff_to_pdf``: eFax may answer a PDF request with a TIFF; this converts it.

Every mail carries a Message-ID derived from the fax id (``message_id_for``), so a
repeat (the unavoidable crash window between the relay's 250 and the store's commit)
is recognisable and mail clients fold it. ``Auto-Submitted: auto-generated`` keeps
vacation responders quiet.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from gateway.core.images import image_to_pdf
from gateway.core.notices import from_field

FALLBACK_DOMAIN = "fax-gateway.invalid"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class ReceivedFax:
    """What is known of one received fax (from eFax's metadata, as recorded)."""

    fax_id: str
    mailbox_user_id: str
    received_at: datetime  # aware
    pages: int | None = None
    calling_number: str | None = None  # as eFax gave it; None when "unavailable"
    station_id: str | None = None  # the sender's TSID/CSID
    receiving_number: str | None = None

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], *, fax_id: str, user_id: str, seen_at: float
    ) -> ReceivedFax:
        """Read the JSON the receiver stored (see ``workers.receive.metadata_of``)."""
        received = _when(metadata.get("completed_timestamp")) or datetime.fromtimestamp(seen_at, UTC)
        pages = metadata.get("pages")
        return cls(
            fax_id=fax_id,
            mailbox_user_id=user_id,
            received_at=received,
            pages=pages if isinstance(pages, int) and not isinstance(pages, bool) else None,
            calling_number=_clean(metadata.get("originating_fax_number")),
            station_id=_clean(metadata.get("originating_fax_tsid")),
            receiving_number=_clean(metadata.get("destination_fax_number")),
        )


@dataclass(frozen=True)
class MailContext:
    """The gateway-wide values every inbound mail needs."""

    from_address: str
    zone: ZoneInfo
    default_country: str = "US"
    from_name: str = "Fax gateway"  # the display name of From:


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub(" ", value).strip()
    if not text or text.upper() in ("UNAVAILABLE", "UNKNOWN", "N/A"):
        return None
    return text[:64]


def pretty_number(raw: str | None, default_country: str = "US") -> str | None:
    """``13235551212`` -> ``+1 323-555-1212``; unreadable numbers come back as given."""
    if not raw:
        return None
    digits = re.sub(r"[^\d+]", "", raw)
    candidates = [digits] if digits.startswith("+") else [digits, "+" + digits]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_country)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return raw


def _e164_digits(raw: str | None, default_country: str) -> str:
    pretty = pretty_number(raw, default_country)
    digits = re.sub(r"\D", "", pretty or "")
    return digits or "unknown"


def caller(fax: ReceivedFax, default_country: str = "US") -> str:
    """Who sent it, in words: the number, else the station id, else "unknown sender"."""
    return pretty_number(fax.calling_number, default_country) or fax.station_id or "unknown sender"


def pages_text(pages: int | None) -> str:
    if pages is None:
        return "pages unknown"
    return "1 page" if pages == 1 else f"{pages} pages"


def subject_for(fax: ReceivedFax, default_country: str = "US") -> str:
    """``Fax from +1 323-555-1212 (3 pages)``."""
    return f"Fax from {caller(fax, default_country)} ({pages_text(fax.pages)})"


def attachment_name(fax: ReceivedFax, zone: ZoneInfo, default_country: str = "US") -> str:
    """``fax-20261127-153000-from-13235551212.pdf`` (local time of receipt)."""
    local = fax.received_at.astimezone(zone)
    return f"fax-{local:%Y%m%d-%H%M%S}-from-{_e164_digits(fax.calling_number, default_country)}.pdf"


def message_id_for(fax_id: str, from_address: str, variant: str = "") -> str:
    """A Message-ID that is the same every time this fax (or notice) is mailed."""
    domain = from_address.rpartition("@")[2].strip().strip("<>") or FALLBACK_DOMAIN
    tail = f".{variant}" if variant else ""
    return f"<fax.{fax_id}{tail}@{domain}>"


def _local_time(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    abbreviation = f"{local:%Z}"  # CET, EST... or UTC, which needs no "(UTC)" after it
    named = f" ({zone.key})" if zone.key != abbreviation else ""
    return f"{local:%Y-%m-%d %H:%M:%S} {abbreviation}{named}"


def details(fax: ReceivedFax, mailbox_number: str | None, ctx: MailContext) -> list[tuple[str, str]]:
    """The facts shown in every inbound mail, as (label, value) lines."""
    receiving = fax.receiving_number or mailbox_number
    return [
        ("Received", _local_time(fax.received_at, ctx.zone)),
        ("Pages", str(fax.pages) if fax.pages is not None else "unknown"),
        ("Calling number", pretty_number(fax.calling_number, ctx.default_country) or "not sent"),
        ("Station id", fax.station_id or "not sent"),
        ("Receiving number", pretty_number(receiving, ctx.default_country) or "unknown"),
        ("Mailbox", fax.mailbox_user_id),
        ("Fax id", fax.fax_id),
    ]


def _text(intro: str, lines: Sequence[tuple[str, str]], outro: str) -> str:
    width = max(len(label) for label, _ in lines) + 2
    table = "\n".join(f"{label + ':':<{width}}{value}" for label, value in lines)
    return f"{intro}\n\n{table}\n\n{outro}\n"


def _html(intro: str, lines: Sequence[tuple[str, str]], outro: str) -> str:
    rows = "\n".join(
        f'<tr><th align="left" style="padding-right:1em">{html.escape(label)}</th>'
        f"<td>{html.escape(value)}</td></tr>"
        for label, value in lines
    )
    return (
        "<!DOCTYPE html>\n<html><body>\n"
        f"<p>{html.escape(intro)}</p>\n<table>\n{rows}\n</table>\n<p>{html.escape(outro)}</p>\n"
        "</body></html>\n"
    )


def _base(subject: str, to: Sequence[str], ctx: MailContext, now: datetime, message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_field(ctx.from_name, ctx.from_address)
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.astimezone(ctx.zone))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def fax_mail(
    fax: ReceivedFax,
    pdf: bytes,
    *,
    to: Sequence[str],
    mailbox_number: str | None,
    ctx: MailContext,
    now: datetime,
) -> EmailMessage:
    """The mail that carries a received fax to its mapped inboxes."""
    lines = details(fax, mailbox_number, ctx)
    intro = f"You received a fax from {caller(fax, ctx.default_country)} ({pages_text(fax.pages)})."
    outro = "The fax is attached as a PDF."
    msg = _base(
        subject_for(fax, ctx.default_country), to, ctx, now, message_id_for(fax.fax_id, ctx.from_address)
    )
    msg["X-Fax-Id"] = fax.fax_id
    msg.set_content(_text(intro, lines, outro))
    msg.add_alternative(_html(intro, lines, outro), subtype="html")
    msg.add_attachment(
        pdf,
        maintype="application",
        subtype="pdf",
        filename=attachment_name(fax, ctx.zone, ctx.default_country),
    )
    return msg


def too_large_notice(
    fax: ReceivedFax,
    *,
    size_bytes: int,
    limit_bytes: int,
    to: Sequence[str],
    mailbox_number: str | None,
    kept_at: str,
    ctx: MailContext,
    now: datetime,
) -> EmailMessage:
    """Instead of the fax, when the mail would be larger than the relay takes."""
    lines = [
        *details(fax, mailbox_number, ctx),
        ("Mail size", f"{_megabytes(size_bytes)} (the mail relay takes at most {_megabytes(limit_bytes)})"),
        ("Kept at", kept_at),
    ]
    intro = (
        f"You received a fax from {caller(fax, ctx.default_country)} ({pages_text(fax.pages)}), "
        "but it is too large to send by email, so it is not attached."
    )
    outro = "Nothing was lost: ask your administrator for the fax, quoting its fax id."
    subject = subject_for(fax, ctx.default_country) + " - too large to attach"
    msg = _base(subject, to, ctx, now, message_id_for(fax.fax_id, ctx.from_address, "too-large"))
    msg["X-Fax-Id"] = fax.fax_id
    msg.set_content(_text(intro, lines, outro))
    msg.add_alternative(_html(intro, lines, outro), subtype="html")
    return msg


def admin_notice(
    fax: ReceivedFax,
    *,
    problem: str,
    refused: Mapping[str, str],
    mailbox_number: str | None,
    kept_at: str,
    admin: str,
    ctx: MailContext,
    now: datetime,
) -> EmailMessage:
    """Tell the administrator that a received fax did not reach some (or all) addresses."""
    lines = [
        *details(fax, mailbox_number, ctx),
        *((f"Refused {address}", reply) for address, reply in sorted(refused.items())),
        ("Kept at", kept_at),
    ]
    intro = f"A received fax could not be delivered: {problem}"
    outro = "Fix the address (or the mailbox's deliver_to list) and forward the fax by hand."
    subject = f"Undeliverable received fax {fax.fax_id}"
    msg = _base(subject, [admin], ctx, now, message_id_for(fax.fax_id, ctx.from_address, "admin"))
    msg["X-Fax-Id"] = fax.fax_id
    msg.set_content(_text(intro, lines, outro))
    return msg


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def tiff_to_pdf(data: bytes) -> bytes:
    """A (multi-page, G3/G4) fax TIFF as a PDF, one page per frame, Letter-fitted."""
    pdf, _ = image_to_pdf(
        data,
        "tiff",
        "fax.tiff",
        max_pixels=200_000_000,
        max_frames=5_000,
        pages_left=5_000,
        max_pages=5_000,
        timeout_s=300.0,
    )
    return pdf

"""The transmission confirmation: one PDF page per fax, as a fax machine prints one (pure).

``render(confirmations, zone=..., generated_at=...)`` turns values into PDF bytes, one
page per ``Confirmation``: the result in words, destination and recipient name, pages,
duration, start and end (UTC and the mailbox's zone), eFax's fax id, the remote station
id (CSID) when eFax reported one ("not reported" otherwise), a thumbnail of the first
page as it was handed to eFax, and the SHA-256 of every document handed to eFax, so that
the sender can prove which bytes went out.

Only what is known is said. eFax reports an end time (``completed_timestamp``) and a
duration; the start is that end minus the duration, said so, and "not reported" when
either is missing. eFax's page count includes a cover page it added; the thumbnail is
of the first page of the first document (eFax renders the cover page itself, and the
gateway never sees it). After ``database.keep_days`` the bytes are gone: the page then
says so where the thumbnail was, and the hashes, kept with the record, still stand.

Text is drawn in the PDF's standard fonts (Helvetica, Courier), whose alphabet is
Latin-1: any other character is written as its closest Latin-1 letter or "?".
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

NOT_REPORTED = "not reported by eFax"
PAGE_W_MM, PAGE_H_MM, MARGIN_MM = 215.9, 279.4, 15.0  # US Letter
THUMB_W_MM = 55.0


@dataclass(frozen=True)
class SentDocument:
    """One document as it was handed to eFax."""

    filename: str
    kind: str  # what the bytes were read as (pdf, jpeg, text ...)
    document_type: str  # what eFax was told: PDF | TXT
    pages: int
    size: int  # bytes
    sha256: str | None  # None: the mail was handed to eFax before hashes were recorded


@dataclass(frozen=True)
class Confirmation:
    """The facts of one fax, from the store (``gateway.operations.evidence`` gathers them)."""

    job_id: str
    fax_id: str
    result: str  # "Delivered", "Failed" ... as the report says it
    result_detail: str  # e.g. "eFax reported the transmission complete"
    destination: str  # formatted for people
    recipient_name: str | None
    from_number: str  # the mailbox's fax number
    sender: str  # who sent the mail
    subject: str
    accepted_at: float  # unix seconds
    submitted_at: float | None  # handed to eFax
    completed_at: float | None  # eFax's end time
    pages: int | None  # eFax's count (a cover page included)
    duration_s: int | None
    attempts: int | None
    remote_csid: str | None
    cover_page: bool
    documents: tuple[SentDocument, ...]
    thumbnail_png: bytes | None = None  # the first page as sent; None: see thumbnail_note
    thumbnail_note: str = ""


def latin1(text: str) -> str:
    """``text`` in the standard PDF fonts' alphabet: accents kept where Latin-1 has them."""
    out = []
    for ch in text:
        if ch in "\r\n\t":
            out.append(" ")
        elif ord(ch) < 256:
            out.append(ch if ch.isprintable() else "?")
        else:
            base = unicodedata.normalize("NFKD", ch).encode("latin-1", "ignore").decode("latin-1")
            out.append(base if base and base.isprintable() else "?")
    return "".join(out)


def both_times(at: float | None, zone: ZoneInfo) -> str:
    """``2026-12-03 09:30:12 UTC`` and, for another zone, ``/ 10:30:12 CET (Europe/Berlin)``
    (with its date when that differs)."""
    if at is None:
        return NOT_REPORTED
    utc_at, local_at = datetime.fromtimestamp(at, UTC), datetime.fromtimestamp(at, zone)
    utc = utc_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if zone.key in ("UTC", "Etc/UTC"):
        return utc
    shape = "%H:%M:%S %Z" if local_at.date() == utc_at.date() else "%Y-%m-%d %H:%M:%S %Z"
    return f"{utc} / {local_at.strftime(shape)} ({zone.key})"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return NOT_REPORTED
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def start_time(conf: Confirmation) -> float | None:
    """eFax's end minus its duration; None when eFax reported either not."""
    if conf.completed_at is None or conf.duration_s is None:
        return None
    return conf.completed_at - conf.duration_s


def facts(conf: Confirmation, zone: ZoneInfo) -> list[tuple[str, str]]:
    """The label/value rows of the page, in order (also what a test reads back)."""
    pages = "not reported by eFax" if conf.pages is None else str(conf.pages)
    if conf.pages is not None and conf.cover_page:
        pages += " (eFax's count, with the cover page)"
    start = start_time(conf)
    start_text = both_times(start, zone) + (" (end minus duration)" if start is not None else "")
    return [
        ("Result", f"{conf.result}: {conf.result_detail}"),
        ("Destination", conf.destination),
        ("Recipient", conf.recipient_name or "not given"),
        ("Remote station (CSID)", conf.remote_csid or "not reported"),
        ("Pages", pages),
        ("Duration", _duration(conf.duration_s)),
        ("Start", start_text),
        ("End", both_times(conf.completed_at, zone)),
        ("Handed to eFax", both_times(conf.submitted_at, zone)),
        ("Attempts", "not reported by eFax" if conf.attempts is None else str(conf.attempts)),
        ("eFax fax id", conf.fax_id),
        ("Sent from", f"{conf.from_number} by {conf.sender}"),
        ("Subject", conf.subject or "(no subject)"),
        ("Accepted by the gateway", both_times(conf.accepted_at, zone)),
        ("Gateway job id", conf.job_id),
    ]


class _Page(FPDF):
    def footer(self) -> None:  # fpdf2 calls it at the end of each page
        return


def _page(pdf: FPDF, conf: Confirmation, zone: ZoneInfo, generated_at: float) -> None:
    pdf.add_page()
    width = PAGE_W_MM - 2 * MARGIN_MM
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(width, 9, "Fax transmission confirmation", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(
        width,
        5,
        latin1(f"Written by fax-gateway on {both_times(generated_at, zone)} from its records."),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(3)
    top = pdf.get_y()
    label_w, value_w = 42.0, width - 42.0 - THUMB_W_MM - 5
    for label, value in facts(conf, zone):
        pdf.set_font("Helvetica", "B", 9)
        y = pdf.get_y()
        pdf.cell(label_w, 5, latin1(label))
        pdf.set_font("Helvetica", "", 9)
        pdf.set_xy(MARGIN_MM + label_w, y)
        pdf.multi_cell(value_w, 5, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    below_facts = pdf.get_y()
    below_thumb = _thumbnail(pdf, conf, top)
    pdf.set_xy(MARGIN_MM, max(below_facts, below_thumb) + 4)
    _documents(pdf, conf, width)


def _thumbnail(pdf: FPDF, conf: Confirmation, top: float) -> float:
    """The first page as sent, top right; returns the y below it."""
    x = PAGE_W_MM - MARGIN_MM - THUMB_W_MM
    pdf.set_font("Helvetica", "", 7)
    if conf.thumbnail_png:
        info = pdf.image(io.BytesIO(conf.thumbnail_png), x=x, y=top, w=THUMB_W_MM)
        height = float(getattr(info, "rendered_height", THUMB_W_MM * 1.3))
        pdf.rect(x, top, THUMB_W_MM, height)
        pdf.set_xy(x, top + height + 1)
        pdf.multi_cell(THUMB_W_MM, 3, "First page of document 1 as handed to eFax", align="C")
    else:
        height = THUMB_W_MM * 1.29
        pdf.rect(x, top, THUMB_W_MM, height)
        pdf.set_xy(x + 2, top + height / 2 - 6)
        note = conf.thumbnail_note or "no picture of the first page"
        pdf.multi_cell(THUMB_W_MM - 4, 3, latin1(note), align="C")
        pdf.set_y(top + height + 1)
    return pdf.get_y()


def _documents(pdf: FPDF, conf: Confirmation, width: float) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(width, 6, "Documents handed to eFax, with their SHA-256", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    bottom = PAGE_H_MM - MARGIN_MM - 12
    for n, doc in enumerate(conf.documents, 1):
        if pdf.get_y() + 9 > bottom:
            rest = len(conf.documents) - n + 1
            pdf.set_font("Helvetica", "", 8)
            pdf.multi_cell(
                width,
                4,
                f"... and {rest} more: fax-gateway queue show {conf.job_id} prints every hash.",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            break
        plural = "" if doc.pages == 1 else "s"
        pdf.set_font("Helvetica", "", 8)
        line = f"{n}. {doc.filename} ({doc.kind} as {doc.document_type}, {doc.pages} page{plural}, "
        line += f"{doc.size} bytes)"
        pdf.cell(width, 4, latin1(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Courier", "", 8)
        digest = doc.sha256 or "not recorded (handed to eFax before the gateway kept hashes)"
        pdf.cell(width, 4.5, f"   SHA-256 {digest}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(bottom)
    pdf.set_font("Helvetica", "", 7)
    pdf.multi_cell(
        width,
        3.2,
        "The SHA-256 of a file identifies its bytes: anyone can compute it (sha256sum, "
        "certutil -hashfile FILE SHA256, shasum -a 256) and compare. Times come from the gateway's "
        "clock (accepted, handed to eFax) and from eFax's reports (end, duration).",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )


def render(confirmations: Sequence[Confirmation], *, zone: ZoneInfo, generated_at: float) -> bytes:
    """One page per confirmation, as PDF bytes."""
    pdf = _Page(unit="mm", format="letter")
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
    pdf.set_title("Fax transmission confirmation")
    pdf.set_creator("fax-gateway")
    pdf.set_creation_date(datetime.fromtimestamp(generated_at, UTC))
    for conf in confirmations:
        _page(pdf, conf, zone, generated_at)
    return bytes(pdf.output())

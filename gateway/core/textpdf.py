"""Text faxes as PDFs the gateway makes: a header block, any script, long lines wrapped.

Consumes: the text of one document (a mail's body, a text file, an attached mail), an
optional ``Heading`` (who sent it, when, about what) and ``TextFonts`` (the paths of
the TrueType fonts to use; ``serve`` finds DejaVu, Debian's ``fonts-dejavu-core``).
Produces: the PDF bytes and their page count. Touches: the font files (read only).

Why not eFax's TXT renderer: it is not said which characters it can draw, and a text
fax carried no sign of who sent it; here every character DejaVu has (Latin, Greek,
Cyrillic, Hebrew, Arabic, box drawing, many symbols) is embedded, the rest shows as a
missing-glyph box rather than disappearing, and the first page starts with the
heading: From, Date, Subject, then a rule. The body is set in DejaVu Sans Mono at
10 pt (80 columns fit the page, so text laid out in columns stays in columns),
long lines are wrapped at spaces (words longer than a line are broken), tabs are
every 8 columns, a form feed starts a new page, and every page's foot says
"Page N of M" with the subject.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fpdf import FPDF

_MARGIN_MM: Final = 18.0
_BODY_PT: Final = 10.0
_LINE_MM: Final = 4.6  # 10 pt text, a little leading: about 56 lines a Letter page
_HEADING_PT: Final = 11.0


@dataclass(frozen=True)
class TextFonts:
    """TrueType files: the body's monospaced regular, a bold for the heading labels, and
    a proportional regular for the characters the monospaced one lacks."""

    mono: str
    bold: str
    sans: str


@dataclass(frozen=True)
class Heading:
    """What the fax says about itself, at the top of its first page."""

    sender: str  # "Alice Example <alice@example.com>"
    date: str  # as the mail's Date: said, "" when it had none
    subject: str


_UNDATED: Final = datetime(2000, 1, 1, tzinfo=UTC)  # a mail without a usable Date:


def _dated(heading: Heading | None) -> datetime:
    """The PDF's creation date: the mail's own Date:, never the clock."""
    try:
        when = parsedate_to_datetime(heading.date) if heading is not None and heading.date else None
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return _UNDATED
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def text_to_pdf(text: str, fonts: TextFonts, heading: Heading | None = None) -> tuple[bytes, int]:
    """``text`` set as a Letter PDF, with ``heading`` on its first page; (PDF, pages).

    fpdf2 (and fontTools) are imported here, on the first text fax: a process that never
    sets one does not carry them."""
    from fpdf.enums import WrapMode, XPos, YPos

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # subsetting notes, not problems
    pdf = _document(heading.subject if heading is not None else "")
    pdf.set_title(heading.subject if heading is not None else "")
    pdf.set_creator("fax-gateway")
    pdf.set_creation_date(_dated(heading))  # the same mail makes the same bytes
    pdf.add_font("mono", fname=fonts.mono)
    pdf.add_font("bold", fname=fonts.bold)
    pdf.add_font("sans", fname=fonts.sans)
    pdf.set_fallback_fonts(["sans"], exact_match=False)
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_auto_page_break(True, margin=_MARGIN_MM)
    pdf.alias_nb_pages()
    pdf.add_page()
    if heading is not None:
        _heading(pdf, heading)
    pdf.set_font("mono", size=_BODY_PT)
    for index, sheet in enumerate(text.split("\f")):
        if index:
            pdf.add_page()
        for line in sheet.split("\n"):
            line = line.expandtabs(8).rstrip()
            pdf.multi_cell(
                0,
                _LINE_MM,
                line or " ",
                align="L",
                wrapmode=WrapMode.WORD,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
    return bytes(pdf.output()), pdf.pages_count


def _document(subject: str) -> FPDF:
    """A Letter document whose every page's foot says "<subject> - page N of M"."""
    from fpdf import FPDF

    class Document(FPDF):
        def footer(self) -> None:
            self.set_y(-_MARGIN_MM + 4)
            self.set_font("mono", size=8)
            shown = subject if len(subject) <= 60 else subject[:57] + "..."
            page = f"page {self.page_no()} of {{nb}}"
            self.cell(0, 4, f"{shown} - {page}" if shown else page.capitalize(), align="R")

    return Document(orientation="portrait", unit="mm", format="letter")


def _heading(pdf: FPDF, heading: Heading) -> None:
    from fpdf.enums import WrapMode, XPos, YPos

    rows = [("From", heading.sender), ("Date", heading.date), ("Subject", heading.subject)]
    for label, value in rows:
        if not value:
            continue
        pdf.set_font("bold", size=_HEADING_PT)
        pdf.cell(24, 6, f"{label}:")
        pdf.set_font("mono", size=_HEADING_PT)
        pdf.multi_cell(0, 6, value, align="L", wrapmode=WrapMode.CHAR, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    y = pdf.get_y()
    pdf.set_line_width(0.4)
    pdf.line(_MARGIN_MM, y, pdf.w - _MARGIN_MM, y)
    pdf.ln(5)

"""Document bytes for the eFax simulator: page counts and generated images.

Consumes: the decoded ``document_content`` of ``POST /faxes`` documents, and
received-fax PDFs given to ``/_sim/receive``.
Produces: page counts (what eFax would bill and report), blank PDFs of N pages
(letter size, made with pypdf) and blank multi-page TIFFs (1-bit, Group 4,
made with Pillow) for ``GET /faxes/{id}/image``.

Page rules (simulator choices, not eFax facts):

- ``PDF``: the page count pypdf reads; 1 when the file cannot be parsed.
- ``TXT``: ``ceil(lines / 60)``, at least 1 (60 lines per fax page).
- anything else: 1 page.

Touches no outside system and keeps no state.
"""

from __future__ import annotations

import io
import math
import warnings

from PIL import Image
from pypdf import PdfReader, PdfWriter

LINES_PER_TXT_PAGE = 60
LETTER_POINTS = (612, 792)  # width, height of a US-letter page in PDF points
FAX_PIXELS_FINE = (1728, 2200)  # width, height of a fine-mode fax page in pixels


def pdf_page_count(content: bytes) -> int | None:
    """Return the number of pages of a PDF, or None when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(content))
            return len(reader.pages)
    except Exception:  # any parse failure means "not a readable PDF"
        return None


def count_pages(document_type: str, content: bytes) -> int:
    """Return how many fax pages one document makes (see the module manual)."""
    if document_type == "PDF":
        counted = pdf_page_count(content)
        return counted if counted and counted > 0 else 1
    if document_type == "TXT":
        lines = content.decode("utf-8", errors="replace").splitlines()
        return max(1, math.ceil(len(lines) / LINES_PER_TXT_PAGE))
    return 1


def blank_pdf(pages: int) -> bytes:
    """Return a valid PDF made of ``pages`` blank letter-size pages (at least 1)."""
    writer = PdfWriter()
    for _ in range(max(1, pages)):
        writer.add_blank_page(width=LETTER_POINTS[0], height=LETTER_POINTS[1])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_tiff(pages: int) -> bytes:
    """Return a multi-page, 1-bit, Group-4 TIFF of ``pages`` white fax pages."""
    frames = [Image.new("1", FAX_PIXELS_FINE, 1) for _ in range(max(1, pages))]
    out = io.BytesIO()
    frames[0].save(
        out,
        format="TIFF",
        save_all=True,
        append_images=frames[1:],
        compression="group4",
        dpi=(204, 196),
    )
    return out.getvalue()

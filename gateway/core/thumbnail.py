"""A small picture of a document's first page, for the transmission confirmation (pure).

``first_page_png(document_type, content)`` returns PNG bytes, or None with nothing
raised when the page cannot be drawn (a damaged PDF, an empty text). A PDF's first page
is rendered by PDFium (pypdfium2) at about ``width_px`` pixels wide, in grey, as a fax
machine would print it; a text document (a mail body faxed as TXT) is drawn as its first
lines in a fixed-width font on a page-shaped white picture.
"""

from __future__ import annotations

import io
import logging

import pypdfium2
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)
WIDTH_PX = 360
LETTER_RATIO = 11 / 8.5
TEXT_LINES = 40


def first_page_png(document_type: str, content: bytes, *, width_px: int = WIDTH_PX) -> bytes | None:
    try:
        if document_type.upper() == "PDF":
            image = _pdf_page(content, width_px)
        elif document_type.upper() == "TXT":
            image = _text_page(content.decode("utf-8", "replace"), width_px)
        else:
            return None
    except Exception as err:  # any library error: the confirmation goes out without a picture
        log.info("no thumbnail of the first page: %s", type(err).__name__)
        return None
    if image is None:
        return None
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _pdf_page(content: bytes, width_px: int) -> Image.Image | None:
    document = pypdfium2.PdfDocument(content)
    try:
        if len(document) == 0:
            return None
        page = document[0]
        try:
            width_pt = page.get_width() or 612.0
            bitmap = page.render(scale=width_px / width_pt, grayscale=True)
            image: Image.Image = bitmap.to_pil().convert("L")
        finally:
            page.close()
    finally:
        document.close()
    return image


def _text_page(text: str, width_px: int) -> Image.Image | None:
    if not text.strip():
        return None
    height = round(width_px * LETTER_RATIO)
    image = Image.new("L", (width_px, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    margin, step = width_px // 12, max(height // (TEXT_LINES + 6), 8)
    y = margin
    for line in text.splitlines()[:TEXT_LINES]:
        draw.text((margin, y), line[:80], fill=0, font=font)
        y += step
    return image

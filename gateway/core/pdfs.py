"""PDF checks with pypdf: is it readable, is it encrypted, how many pages.

Consumes: the bytes of one PDF and the pages still allowed in this fax.
Produces: the page count, or a ``DocumentRefused`` / ``TooManyPages`` with a sentence.

The page tree's ``/Count`` is read first, so a 10,000-page PDF is refused without
walking its pages; only a PDF within the budget is walked to confirm the count.
Every pypdf failure (it raises many exception types on damaged input) is "damaged".
pypdf never decodes page content here, so compressed-stream bombs are not opened.
The PDF is read in place: pypdf gets a stream it cannot take a buffer of (it would
copy the whole file to learn its size), and the stream is closed when done, so a
reader left in a reference cycle holds nothing big.
"""

from __future__ import annotations

import io
from typing import NoReturn

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, NumberObject

from gateway.core.document_errors import DocumentRefused, TooManyPages


def count_pdf_pages(data: bytes, filename: str, pages_left: int, max_pages: int) -> int:
    """Pages in the PDF ``data``; refuses encrypted, damaged, empty or too-long PDFs."""
    with _InPlace(data) as stream:
        return _count(stream, filename, pages_left, max_pages)


class _InPlace(io.BytesIO):
    """The PDF's bytes as a stream, shared rather than copied (no ``getbuffer``)."""

    @property
    def getbuffer(self) -> NoReturn:
        raise AttributeError("getbuffer")  # pypdf then seeks to learn the size


def _count(stream: _InPlace, filename: str, pages_left: int, max_pages: int) -> int:
    try:
        reader = PdfReader(stream, strict=False)
        encrypted = reader.is_encrypted
    except Exception as err:
        raise _damaged(filename) from err
    if encrypted:
        raise DocumentRefused(
            f'The attachment "{filename}" is an encrypted PDF; '
            "remove the password or protection and send it again."
        )
    try:
        declared = _declared_count(reader)
        if declared is not None and declared > pages_left:
            raise _too_many(filename, declared, pages_left, max_pages)
        pages = len(reader.pages)
    except TooManyPages:
        raise
    except Exception as err:
        raise _damaged(filename) from err
    if pages < 1:
        raise DocumentRefused(f'The attachment "{filename}" is a PDF without pages.')
    if pages > pages_left:
        raise _too_many(filename, pages, pages_left, max_pages)
    return pages


def _declared_count(reader: PdfReader) -> int | None:
    """The root page tree's /Count, without touching any page; None when absent or odd."""
    root = reader.trailer["/Root"].get_object()
    tree = root["/Pages"].get_object() if isinstance(root, DictionaryObject) else None
    if not isinstance(tree, DictionaryObject):
        return None
    count = tree.get("/Count")
    count = count.get_object() if count is not None else None
    return int(count) if isinstance(count, NumberObject) else None


def _damaged(filename: str) -> DocumentRefused:
    return DocumentRefused(
        f'The attachment "{filename}" is a damaged PDF that cannot be read; '
        "save or export it again and resend it."
    )


def _too_many(filename: str, pages: int, pages_left: int, max_pages: int) -> TooManyPages:
    if pages_left >= max_pages:
        return TooManyPages(
            f'The attachment "{filename}" has {pages} pages; one fax may have at most {max_pages} pages.'
        )
    return TooManyPages(
        f'With the attachment "{filename}" ({pages} pages) this fax would have more than '
        f"{max_pages} pages; send it in several mails."
    )

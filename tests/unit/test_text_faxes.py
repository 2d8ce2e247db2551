"""Text faxes the gateway sets itself: headed, any script DejaVu has, wrapped, paged."""

from __future__ import annotations

import io

from pypdf import PdfReader

from gateway.convert.fonts import find_text_fonts
from gateway.core.textpdf import Heading, TextFonts, text_to_pdf
from tests import corpus, pdfcorpus
from tests.unit.extracting import extract, mail, summary


def _fonts() -> TextFonts:
    fonts = find_text_fonts()
    assert fonts is not None, "DejaVu (Debian: fonts-dejavu-core) is needed; .ci/run installs it"
    return fonts


def test_a_text_only_mail_is_a_pdf_headed_by_sender_date_and_subject() -> None:
    result = extract(corpus.text_only(), text_fonts=_fonts())
    assert summary(result) == [("message.pdf", "PDF", 1, "text")]
    [page] = pdfcorpus.pdftotext_pages(result.documents[0].content)
    lines = [" ".join(line.split()) for line in page.splitlines() if line.strip()]
    assert lines[:3] == [
        "From: Alice Example <alice@example.com>",
        "Date: Mon, 03 Jun 2024 09:30:00 +0000",
        "Subject: Order",  # without its [fine]
    ]
    assert "please deliver 12 boxes on Monday." in lines and "How many boxes?" not in page
    assert lines[-1] == "Order - page 1 of 1"


def test_a_form_feed_starts_a_page_and_every_page_counts_them() -> None:
    pdf, pages = text_to_pdf("first\fsecond", _fonts(), Heading("A <a@example.com>", "", "Two"))
    assert pages == 2 == len(PdfReader(io.BytesIO(pdf), strict=True).pages)
    first, second = pdfcorpus.pdftotext_pages(pdf)
    assert "first" in first and "Two - page 1 of 2" in first
    assert "second" in second and "Two - page 2 of 2" in second and "From:" not in second


def test_a_text_attachment_is_set_by_the_gateway_too() -> None:
    raw = mail(("Привет, Grüße\n".encode(), "text/plain", "notes.txt"))
    [document] = extract(raw, text_fonts=_fonts()).documents
    assert (document.filename, document.document_type) == ("notes.txt", "PDF")
    assert "Привет, Grüße" in pdfcorpus.pdftotext_pages(document.content)[0]


def test_without_fonts_text_goes_to_efax_as_txt() -> None:
    assert summary(extract(corpus.text_only())) == [("message.txt", "TXT", 1, "text")]

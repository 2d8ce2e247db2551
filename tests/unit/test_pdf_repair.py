"""PDFs that viewers open are faxed: repaired, decrypted, flattened, within an inflate budget.

Each PDF is made by Ghostscript or qpdf (tests/pdfcorpus.py); what the gateway would send
is checked with the strict readers (pypdf strict, ``qpdf --check``) and with poppler's
text of each page, so "the same pages" means the same words on the same pages.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from pypdf import PdfReader

from gateway.core.documents import DocumentRefused, FaxDocument
from gateway.core.pdfs import check_pdf
from tests import pdfcorpus
from tests.unit.extracting import extract, mail

BUDGET = 32_000_000


def _faxed(document: FaxDocument) -> bytes:
    return document.content


def _assert_clean_with_pages(pdf: bytes, pages: int) -> None:
    assert len(PdfReader(io.BytesIO(pdf), strict=True).pages) == pages
    checked = pdfcorpus.qpdf_check(pdf)
    assert checked.returncode == 0 and b"WARNING" not in checked.stdout + checked.stderr, checked
    assert [text.split() for text in pdfcorpus.pdftotext_pages(pdf)] == [
        ["Page", str(n)] for n in range(1, pages + 1)
    ]


# Every damage on a classic xref table. On xref streams (objects packed in object streams)
# poppler itself gives up once the pointers are wrong, so there only the damage around
# the PDF: junk after it, padding, a header before it.
CASES = [(damage, False) for damage in sorted(pdfcorpus.DAMAGES)] + [
    (damage, True) for damage in ("junk_after_eof", "pjl_header", "startxref_far")
]


def _strict_readers_object(pdf: bytes) -> bool:
    try:
        PdfReader(io.BytesIO(pdf), strict=True).pages[0]
    except Exception:
        return True
    checked = pdfcorpus.qpdf_check(pdf)
    return checked.returncode != 0 or b"WARNING" in checked.stdout + checked.stderr


@pytest.mark.parametrize(("damage", "object_streams"), CASES)
def test_a_damaged_pdf_that_viewers_open_is_repaired_with_the_same_pages(
    damage: str, object_streams: bool
) -> None:
    original = pdfcorpus.ghostscript_pdf(3, object_streams=object_streams)
    damaged = pdfcorpus.DAMAGES[damage](original)
    assert _strict_readers_object(damaged)
    assert len(pdfcorpus.pdftotext_pages(damaged)) == 3  # poppler opens it as it is
    [document] = extract(mail((damaged, "application/pdf", "scan.pdf"))).documents
    assert (document.document_type, document.pages) == ("PDF", 3)
    assert document.span is None  # a new PDF, not the bytes in the mail
    _assert_clean_with_pages(_faxed(document), 3)


def test_a_clean_pdf_is_sent_byte_for_byte_from_where_it_lies_in_the_mail() -> None:
    original = pdfcorpus.ghostscript_pdf(2)
    [document] = extract(mail((original, "application/pdf", "clean.pdf"))).documents
    assert document.content == original
    assert document.span is not None  # stored as its place in the raw mail, not a copy
    checked = check_pdf(original, "clean.pdf", pages_left=500, max_pages=500, inflate_left=BUDGET)
    assert checked.data is None and checked.pages == 2


def test_a_pdf_with_only_an_owner_password_is_decrypted_and_faxed() -> None:
    locked = pdfcorpus.qpdf_encrypted(pdfcorpus.ghostscript_pdf(2), user="", owner="bank-secret")
    assert PdfReader(io.BytesIO(locked)).is_encrypted
    [document] = extract(mail((locked, "application/pdf", "statement.pdf"))).documents
    assert document.pages == 2
    assert not PdfReader(io.BytesIO(document.content)).is_encrypted
    _assert_clean_with_pages(document.content, 2)


def test_a_pdf_that_needs_a_password_to_open_stays_refused() -> None:
    locked = pdfcorpus.qpdf_encrypted(pdfcorpus.ghostscript_pdf(1), user="open-me", owner="owner")
    with pytest.raises(
        DocumentRefused, match=re.escape('"payslip.pdf" is a PDF that needs a password to open')
    ):
        extract(mail((locked, "application/pdf", "payslip.pdf")))


def test_a_filled_in_form_is_flattened_so_its_values_are_on_the_page() -> None:
    form = pdfcorpus.filled_form("Jane Q. Public")
    assert "Jane" not in PdfReader(io.BytesIO(form)).pages[0].extract_text()  # not page content
    [document] = extract(mail((form, "application/pdf", "form.pdf"))).documents
    faxed = document.content
    reader = PdfReader(io.BytesIO(faxed), strict=True)
    assert "Jane Q. Public" in reader.pages[0].extract_text()
    assert "/AcroForm" not in reader.root_object
    assert not reader.pages[0].get("/Annots")


def test_an_inflate_bomb_is_refused_quickly_with_a_sentence() -> None:
    bomb = pdfcorpus.inflate_bomb(71)
    assert len(bomb) < 200_000
    started = time.process_time()
    with pytest.raises(DocumentRefused, match="unpack to too much data"):
        extract(mail((bomb, "application/pdf", "bomb.pdf")))
    assert time.process_time() - started < 1.0


def test_the_inflate_budget_counts_every_pdf_of_the_mail() -> None:
    ten = pdfcorpus.inflate_bomb(10)  # within one PDF's budget of 32 MB
    one = extract(mail((ten, "application/pdf", "a.pdf")))
    assert one.documents[0].pages == 1
    with pytest.raises(DocumentRefused, match=re.escape('"d.pdf" is a PDF whose contents unpack')):
        extract(
            mail(*((ten, "application/pdf", f"{name}.pdf") for name in "abcd")),
            max_mail_inflate_bytes=35_000_000,
        )

"""Broken multipart mails whose text is readable fax what a mail client would show."""

from __future__ import annotations

import base64

import pytest

from gateway.core.documents import NothingToFax
from tests import pdfcorpus
from tests.unit.extracting import extract, summary

HEAD = (
    b"From: Alice Example <alice@example.com>\r\nTo: 13235551212@fax.local\r\n"
    b"Subject: Order\r\nMessage-ID: <broken@example.com>\r\nMIME-Version: 1.0\r\n"
)
TEXT_PART = (
    b"--REAL\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Please deliver 12 boxes, Gr\xc3\xbc\xc3\x9fe.\r\n"
)


def _pdf_part(pdf: bytes) -> bytes:
    encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    return (
        b"--REAL\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="order.pdf"\r\n\r\n' + encoded
    )


@pytest.mark.parametrize(
    "content_type",
    [
        b"multipart/mixed",
        b'multipart/mixed; boundary="SOMETHING-ELSE"',
        b"multipart/alternative; boundary=REA",
    ],
    ids=["boundary missing", "boundary mismatched", "boundary a prefix"],
)
def test_a_multipart_whose_boundary_does_not_match_is_split_as_its_body_is(content_type: bytes) -> None:
    raw = HEAD + b"Content-Type: " + content_type + b"\r\n\r\n" + TEXT_PART + b"--REAL--\r\n"
    result = extract(raw)
    assert summary(result) == [("message.txt", "TXT", 1, "text")]
    assert result.body_text == "Please deliver 12 boxes, Grüße."


def test_the_attachments_of_a_mismatched_multipart_are_faxed() -> None:
    pdf = pdfcorpus.ghostscript_pdf(2)
    raw = (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="WRONG"\r\n\r\n'
        + TEXT_PART
        + _pdf_part(pdf)
        + b"--REAL--\r\n"
    )
    result = extract(raw)
    assert summary(result) == [("order.pdf", "PDF", 2, "pdf")]
    assert result.documents[0].content == pdf
    assert result.body_text == "Please deliver 12 boxes, Gr\u00fc\u00dfe."


def test_a_multipart_without_any_delimiter_is_its_text() -> None:
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="X"\r\n\r\nJust the words, Gr\xc3\xbc\xc3\x9fe.\r\n'
    )
    result = extract(raw)
    assert result.body_is_document and result.body_text == "Just the words, Grüße."


def test_a_broken_multipart_with_nothing_readable_is_still_refused() -> None:
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="X"\r\n\r\n\r\n\r\n'
    with pytest.raises(NothingToFax):
        extract(raw)

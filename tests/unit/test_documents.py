"""The documents core: what real clients' and scanners' mails become, and what is refused."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from email import policy
from email.message import EmailMessage

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from gateway.core.documents import (
    DocumentError,
    DocumentRefused,
    FaxDocument,
    NothingToFax,
    SplitMessage,
    TooManyDocuments,
    TooManyPages,
    parse_message,
    partial_key,
    reassemble_partials,
)
from tests import corpus
from tests.unit.extracting import extract, mail, summary


def title(document: FaxDocument) -> str | None:
    metadata = PdfReader(io.BytesIO(document.content)).metadata
    return None if metadata is None else metadata.title


# ---- the corpus: one test per client or scanner style ----------------------------------


def test_outlook_signature_logo_is_not_faxed_and_the_pdf_is() -> None:
    result = extract(corpus.outlook_html_logo_pdf())
    assert summary(result) == [("Invoice 4711.pdf", "PDF", 2, "pdf")]
    assert title(result.documents[0]) == "invoice"
    assert result.left_out == ()
    assert result.body_text == "Please find invoice 4711 attached.\n\nKind regards\nAlice"
    assert result.subject == "Invoice 4711"
    assert not result.body_is_document
    assert result.pages == 2


def test_winmail_dat_is_unpacked_with_long_names_in_order() -> None:
    result = extract(corpus.winmail_dat())
    assert summary(result) == [
        ("Quarterly report.pdf", "PDF", 3, "pdf"),
        ("photo.jpg", "PDF", 1, "jpeg"),
    ]
    assert title(result.documents[0]) == "report"
    assert result.body_text == "Here is the quarterly report and a photo."


def test_gmail_nested_attachments_keep_their_order_and_the_logo_stays_out() -> None:
    result = extract(corpus.gmail_nested())
    assert summary(result) == [
        ("first.pdf", "PDF", 1, "pdf"),
        ("photo.jpg", "PDF", 1, "jpeg"),
        ("last.pdf", "PDF", 2, "pdf"),
    ]
    assert [title(result.documents[0]), title(result.documents[2])] == ["first", "last"]
    assert result.body_text == "Three documents for Bob."


def test_apple_mail_inline_pdf_is_faxed_and_the_text_comes_from_the_plain_branch() -> None:
    result = extract(corpus.apple_inline_pdf())
    assert summary(result) == [("Contract.pdf", "PDF", 1, "pdf")]
    assert result.body_text == "Hi Bob,\n\nhere is the contract:\n\nThanks,\nAlice"


def test_thunderbird_two_pdfs_in_order_and_signature_trimmed() -> None:
    result = extract(corpus.thunderbird_two_pdfs())
    assert summary(result) == [("first.pdf", "PDF", 1, "pdf"), ("second.pdf", "PDF", 2, "pdf")]
    assert [title(d) for d in result.documents] == ["first", "second"]
    assert result.body_text == "Two documents, in this order."
    assert result.pages == 3


def test_scanner_octet_stream_with_rfc2231_name_is_a_pdf() -> None:
    result = extract(corpus.scanner_octet_stream_pdf())
    assert summary(result) == [("Scan 2024-06-01 (1).pdf", "PDF", 2, "pdf")]
    assert result.body_text == "Scanned by RICOH MP C3004."


def test_multipage_g4_tiff_becomes_one_pdf_with_a_page_per_frame() -> None:
    result = extract(corpus.multipage_tiff())
    assert summary(result) == [("fax.tif", "PDF", 3, "tiff")]
    reader = PdfReader(io.BytesIO(result.documents[0].content))
    assert len(reader.pages) == 3
    width, height = reader.pages[0].mediabox.width, reader.pages[0].mediabox.height
    assert height > width  # TIFF-F's 204x196 dpi stays a portrait page
    assert result.body_text == ""


def test_jpeg_photo_is_converted_and_sent_from_my_iphone_is_trimmed() -> None:
    result = extract(corpus.jpeg_photo())
    assert summary(result) == [("IMG_0001.JPG", "PDF", 1, "jpeg")]
    assert result.documents[0].content.startswith(b"%PDF-")
    assert result.body_text == "Photo of the whiteboard."


def test_non_ascii_names_in_rfc2231_and_rfc2047_are_decoded() -> None:
    result = extract(corpus.rfc2231_non_ascii_name())
    assert [d.filename for d in result.documents] == ["Überweisung März.pdf", "Größe €.pdf"]
    assert result.subject == "Belege für März"


def test_zip_only_is_refused_naming_the_zip_and_what_is_accepted() -> None:
    with pytest.raises(NothingToFax) as caught:
        extract(corpus.zip_only())
    assert str(caught.value) == (
        'Nothing in this mail can be faxed: it holds "documents.zip" (a zip archive); attach '
        "a PDF, an image (TIFF, JPEG, PNG, GIF, BMP, WebP, HEIC) or a text file."
    )


def test_pdf_needing_a_password_is_refused_with_a_sentence() -> None:
    with pytest.raises(DocumentRefused) as caught:
        extract(corpus.encrypted_pdf())
    assert str(caught.value) == (
        'The attachment "secret.pdf" is a PDF that needs a password to open; '
        "save a copy without the password and send it again."
    )


def test_empty_mail_is_refused() -> None:
    with pytest.raises(NothingToFax) as caught:
        extract(corpus.empty_mail())
    assert str(caught.value).startswith("The mail has no text and no attachment to fax;")


def test_text_only_mail_is_the_fax_itself() -> None:
    result = extract(corpus.text_only())
    text = "Dear Bob,\n\nplease deliver 12 boxes on Monday.\n\nAlice"
    assert summary(result) == [("message.txt", "TXT", 1, "text")]
    assert result.documents[0].content == text.encode()
    assert result.body_text == text
    assert result.body_is_document
    assert result.subject == "Order"
    assert result.options.resolution == "FINE"


def test_html_only_mail_is_faxed_as_its_visible_text() -> None:
    result = extract(corpus.html_only())
    assert summary(result) == [("message.txt", "TXT", 1, "html")]
    assert result.documents[0].content.decode() == ("Price list\n\nBoxes: $4 each\n\n- Red\n- Blue")


# ---- message/partial -------------------------------------------------------------------


def test_message_partial_pieces_are_keyed_and_reassembled_in_any_order() -> None:
    pieces = corpus.message_partial()
    keys = [partial_key(parse_message(piece)) for piece in pieces]
    assert [k[1:] for k in keys if k] == [(1, None), (2, None), (3, 3)]
    assert len({k[0] for k in keys if k}) == 1
    whole = reassemble_partials([pieces[2], pieces[0], pieces[1]])
    result = extract(whole)
    assert summary(result) == [("first.pdf", "PDF", 1, "pdf"), ("second.pdf", "PDF", 2, "pdf")]
    assert result.subject == "Two documents"
    assert parse_message(whole)["From"] == corpus.FROM


def test_a_single_piece_is_refused_as_one_piece_of_a_split_message() -> None:
    with pytest.raises(SplitMessage, match="one piece of a message split"):
        extract(corpus.message_partial()[0])
    assert partial_key(parse_message(corpus.text_only())) is None


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        (lambda p: p[:2], "last piece of the split message has not arrived"),
        (lambda p: [p[0], p[2]], "Piece 2 of 3"),
        (lambda p: [*p, corpus.message_partial()[0]], "different split messages"),
        (lambda p: [*p, corpus.text_only()], "not a message/partial piece"),
    ],
)
def test_incomplete_or_mixed_pieces_are_not_reassembled(pick: object, message: str) -> None:
    pieces = corpus.message_partial()
    with pytest.raises(DocumentError, match=message):
        reassemble_partials(pick(pieces))  # type: ignore[operator]


# ---- subject options and text trimming -----------------------------------------------


@pytest.mark.parametrize(
    ("subject", "clean", "cover", "resolution"),
    [
        ("Invoice [nocover]", "Invoice", False, None),
        ("[COVER]  Invoice   [Fine] 4711", "Invoice 4711", True, "FINE"),
        ("[fine] [standard] x [cover] [nocover]", "x", False, "STANDARD"),
        ("Invoice [draft]", "Invoice [draft]", None, None),
    ],
)
def test_subject_options_are_read_and_removed(
    subject: str, clean: str, cover: bool | None, resolution: str | None
) -> None:
    result = extract(mail((corpus.make_pdf(1, "a"), "application/pdf", "a.pdf"), subject=subject))
    assert (result.subject, result.options.cover, result.options.resolution) == (clean, cover, resolution)


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        ("Please fax this.\n\n-- \nAlice\nACME", "Please fax this."),
        ("Hi\n\nOn Mon, 3 Jun 2024 at 09:00, Bob Smith <bob@example.com>\nwrote:\n> old", "Hi"),
        ("Yes.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\n\nold", "Yes."),
        ("Yes.\n\n________________________________\nFrom: Bob\nSent: Monday\nold", "Yes."),
        ("> question one\nanswer one\n> question two\nanswer two", "answer one\nanswer two"),
        ("Am 03.06.2024 um 09:00 schrieb Bob:\n> alt", ""),
        ("From: Alice\nTo: Dr. Bob\n\nResults attached.", "From: Alice\nTo: Dr. Bob\n\nResults attached."),
        (
            "FYI\n\n---------- Forwarded message ---------\nFrom: Bob\nDate: Mon\n\nThe offer",
            "FYI\n\n---------- Forwarded message ---------\nFrom: Bob\nDate: Mon\n\nThe offer",
        ),
    ],
)
def test_signatures_and_quoted_replies_are_trimmed(text: str, trimmed: str) -> None:
    result = extract(mail((corpus.make_pdf(1, "a"), "application/pdf", "a.pdf"), text=text))
    assert result.body_text == trimmed


def test_html_reply_quotes_are_trimmed_from_the_text() -> None:
    message = EmailMessage(policy=policy.default)
    message["Subject"] = "Re: boxes"
    message.set_content("<p>Twelve.</p><blockquote><p>How many?</p></blockquote>", subtype="html")
    result = extract(message.as_bytes())
    assert result.body_text == "Twelve."


def test_long_text_counts_sixty_lines_a_page() -> None:
    text = "\n".join(f"line {n}" for n in range(130))
    result = extract(mail(text=text))
    assert summary(result) == [("message.txt", "TXT", 3, "text")]


# ---- type from the bytes --------------------------------------------------------------


def test_a_pdf_declared_as_jpeg_is_still_a_pdf() -> None:
    result = extract(mail((corpus.make_pdf(2, "x"), "image/jpeg", "x.jpg")))
    assert summary(result) == [("x.jpg", "PDF", 2, "pdf")]
    assert title(result.documents[0]) == "x"


def test_a_jpeg_declared_as_pdf_is_converted_as_a_jpeg() -> None:
    result = extract(mail((corpus.make_image("JPEG"), "application/pdf", "y.pdf")))
    assert summary(result) == [("y.pdf", "PDF", 1, "jpeg")]


@pytest.mark.parametrize(
    ("fmt", "mode", "kind"),
    [
        ("GIF", "P", "gif"),
        ("BMP", "RGB", "bmp"),
        ("WEBP", "RGB", "webp"),
        ("PNG", "RGBA", "png"),
        ("PNG", "LA", "png"),
        ("PNG", "1", "png"),
        ("TIFF", "CMYK", "tiff"),
    ],
)
def test_every_image_format_becomes_a_one_page_pdf(fmt: str, mode: str, kind: str) -> None:
    result = extract(
        mail((corpus.make_image(fmt, (50, 40), mode), "application/octet-stream", f"picture.{fmt.lower()}"))
    )
    assert summary(result) == [(f"picture.{fmt.lower()}", "PDF", 1, kind)]
    assert len(PdfReader(io.BytesIO(result.documents[0].content)).pages) == 1


def test_a_palette_png_with_transparency_is_flattened_first() -> None:
    image = Image.new("P", (30, 30), 0)
    image.info["transparency"] = 0
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)
    result = extract(mail((out.getvalue(), "image/png", "logo.png")))
    assert summary(result) == [("logo.png", "PDF", 1, "png")]


def test_an_unnamed_scan_gets_a_name_from_its_type() -> None:
    raw = (
        b"Subject: scan\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + __import__("base64").encodebytes(corpus.make_pdf(1, "s"))
    )
    assert summary(extract(raw)) == [("attachment 1.pdf", "PDF", 1, "pdf")]


def test_a_windows_path_in_the_name_is_dropped() -> None:
    raw = mail((corpus.make_pdf(1, "p"), "application/pdf", "C:\\Users\\alice\\Desktop\\p.pdf"))
    assert [d.filename for d in extract(raw).documents] == ["p.pdf"]


def test_text_and_html_attachments_are_txt_documents_and_the_body_is_the_cover() -> None:
    result = extract(
        mail(
            (b"Line 1\r\nLine 2\r\n", "text/plain", "notes.txt"),
            (b"<html><body><p>Hello <b>there</b></p></body></html>", "text/html", "page.html"),
            text="Cover words.",
        )
    )
    assert summary(result) == [("notes.txt", "TXT", 1, "text"), ("page.html", "TXT", 1, "html")]
    assert [d.content for d in result.documents] == [b"Line 1\nLine 2", b"Hello there"]
    assert result.body_text == "Cover words."
    assert not result.body_is_document


def test_left_out_files_are_listed_when_something_else_is_faxed() -> None:
    invite = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    result = extract(
        mail(
            (corpus.make_zip(), "application/zip", "a.zip"),
            (b"MZ\x90\x00" + bytes(100), "application/octet-stream", "setup.exe"),
            (invite, "text/calendar", "invite.ics"),
            (corpus.make_pdf(1, "ok"), "application/pdf", "ok.pdf"),
        )
    )
    assert summary(result) == [("ok.pdf", "PDF", 1, "pdf")]
    assert [(o.filename, o.reason) for o in result.left_out] == [
        ("a.zip", "a zip archive, which cannot be faxed"),
        ("setup.exe", "a program, which cannot be faxed"),
        ("invite.ics", "a calendar invitation, which cannot be faxed"),
    ]


def test_a_calendar_invitation_alone_is_nothing_to_fax() -> None:
    invite = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    with pytest.raises(NothingToFax, match=re.escape('"invite.ics" (a calendar invitation)')):
        extract(mail((invite, "text/calendar", "invite.ics"), text="Meeting on Monday."))


def test_a_vcard_does_not_stop_the_text_from_being_the_fax() -> None:
    result = extract(
        mail((b"BEGIN:VCARD\r\nFN:Alice\r\nEND:VCARD\r\n", "text/vcard", "alice.vcf"), text="Short note.")
    )
    assert result.body_is_document
    assert summary(result) == [("message.txt", "TXT", 1, "text")]
    assert [o.filename for o in result.left_out] == ["alice.vcf"]


def test_a_damaged_pdf_is_refused() -> None:
    with pytest.raises(DocumentRefused, match=re.escape('"broken.pdf" is a damaged PDF')):
        extract(mail((b"%PDF-1.7\n1 0 obj <<\ngarbage", "application/pdf", "broken.pdf")))


def test_a_damaged_image_is_refused() -> None:
    png = corpus.make_image("PNG")
    with pytest.raises(DocumentRefused, match=re.escape('"cut.png" is damaged')):
        extract(mail((png[:60], "image/png", "cut.png")))


# ---- office documents ---------------------------------------------------------------


def _docx() -> bytes:
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def _odt() -> bytes:
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", "<office:document-content/>")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "label"),
    [
        (_docx(), "letter.docx", "a Word document"),
        (_odt(), "letter.odt", "an OpenDocument text document"),
        (b"{\\rtf1\\ansi Hello}", "letter.rtf", "an RTF document"),
    ],
)
def test_office_documents_without_a_converter_are_refused(data: bytes, name: str, label: str) -> None:
    with pytest.raises(DocumentRefused) as caught:
        extract(mail((data, "application/octet-stream", name)))
    assert str(caught.value) == (
        f'The attachment "{name}" is {label}, and this gateway has no converter for '
        "it; save it as PDF and send it again."
    )


# ---- bounds -------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"x") + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    started = time.monotonic()
    with pytest.raises(DocumentRefused, match=re.escape('"bomb.png" is too large in pixels')):
        extract(mail((_png_header_only(40_000, 40_000), "image/png", "bomb.png")))
    with pytest.raises(DocumentRefused, match="too large in pixels"):
        extract(mail((_png_header_only(14_000, 14_000), "image/png", "big.png")))
    assert time.monotonic() - started < 1


def test_the_pixel_limit_is_a_setting() -> None:
    raw = mail((corpus.make_image("PNG", (100, 100)), "image/png", "p.png"))
    with pytest.raises(DocumentRefused, match="too large in pixels"):
        extract(raw, max_image_pixels=5_000)
    assert extract(raw, max_image_pixels=10_000).pages == 1


def test_a_tiff_with_too_many_frames_is_refused() -> None:
    raw = mail((corpus.make_tiff(3, size=(64, 64)), "image/tiff", "many.tif"))
    with pytest.raises(DocumentRefused, match="more than 2 pages"):
        extract(raw, max_tiff_frames=2)


@pytest.fixture(scope="module")
def ten_thousand_pages() -> bytes:
    writer = PdfWriter()
    for _ in range(10_000):
        writer.add_blank_page(72, 72)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_ten_thousand_page_pdf_is_refused_from_its_page_count(
    ten_thousand_pages: bytes,
) -> None:
    raw = mail((ten_thousand_pages, "application/pdf", "huge.pdf"))
    started = time.monotonic()
    with pytest.raises(TooManyPages) as caught:
        extract(raw)
    assert time.monotonic() - started < 2
    assert str(caught.value) == (
        'The attachment "huge.pdf" has 10000 pages; one fax may have at most 500 pages.'
    )


def _pdf_claiming(count: int) -> bytes:
    """A tiny PDF whose page tree says ``count`` pages but holds none to walk."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count %d >>" % count,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_the_page_count_is_read_from_the_page_tree_without_walking_it() -> None:
    with pytest.raises(TooManyPages, match="has 10000 pages"):
        extract(mail((_pdf_claiming(10_000), "application/pdf", "claims.pdf")))
    with pytest.raises(DocumentRefused, match="is a PDF without pages"):
        extract(mail((_pdf_claiming(3), "application/pdf", "empty.pdf")))


def test_pages_are_added_up_across_documents() -> None:
    raw = mail(
        (corpus.make_pdf(2, "a"), "application/pdf", "a.pdf"),
        (corpus.make_pdf(2, "b"), "application/pdf", "b.pdf"),
    )
    with pytest.raises(TooManyPages, match=re.escape('With the attachment "b.pdf" (2 pages)')):
        extract(raw, max_pages=3)
    assert extract(raw, max_pages=4).pages == 4


def test_too_many_documents_is_refused_as_too_big() -> None:
    raw = mail(*[(corpus.make_pdf(1, str(n)), "application/pdf", f"{n}.pdf") for n in range(3)])
    with pytest.raises(TooManyDocuments) as caught:
        extract(raw, max_documents=2)
    assert str(caught.value) == (
        'The mail has more than 2 documents to fax ("2.pdf" is one too many); one fax may '
        "carry at most 2, so send them in several mails."
    )
    assert issubclass(TooManyDocuments, TooManyPages)


# ---- names and headers in any charset -------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"Content-Disposition: attachment; filename*=windows-1251''%CF%F0%E8%EC%E5%F0.pdf", "Пример.pdf"),
        (b"Content-Disposition: attachment; filename*=koi8-r''%F0%D2%C9%CD%C5%D2.pdf", "Пример.pdf"),
        (b'Content-Type: application/pdf; name="=?shift_jis?B?jKmQz4+R?=.pdf"', "見積書.pdf"),
        (b'Content-Disposition: attachment; filename="Gr\xc3\xbc\xc3\x9fe.pdf"', "Grüße.pdf"),
        (b'Content-Disposition: attachment; filename="Caf\xe9.pdf"', "Café.pdf"),
        (b"Content-Disposition: attachment; filename*=x-unknown''abc.pdf", "abc.pdf"),
    ],
)
def test_names_in_any_charset_are_decoded(header: bytes, name: str) -> None:
    raw = (
        b"Subject: names\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n"
        + header
        + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + __import__("base64").encodebytes(corpus.make_pdf(1, "n"))
        + b"--b--\r\n"
    )
    assert [d.filename for d in extract(raw).documents] == [name]


def test_raw_eight_bit_subjects_are_read_as_utf8_or_windows_1252() -> None:
    body = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    assert extract(b"Subject: Gr\xc3\xbc\xc3\x9fe [fine]\r\n" + body).subject == "Grüße"
    assert extract(b"Subject: Caf\xe9\r\n" + body).subject == "Café"


def test_a_g3_tiff_f_at_standard_resolution_is_converted() -> None:
    frames = [Image.new("1", (1728, 1100), 1) for _ in range(2)]
    out = io.BytesIO()
    frames[0].save(
        out, format="TIFF", compression="group3", dpi=(204, 98), save_all=True, append_images=frames[1:]
    )
    result = extract(mail((out.getvalue(), "application/octet-stream", "ricoh.tif")))
    assert summary(result) == [("ricoh.tif", "PDF", 2, "tiff")]
    page = PdfReader(io.BytesIO(result.documents[0].content)).pages[0]
    assert page.mediabox.height > page.mediabox.width


def test_a_huge_html_body_is_read_without_the_slow_parser() -> None:
    message = EmailMessage(policy=policy.default)
    message["Subject"] = "big"
    message.set_content("<p>x</p>" * 200_000 + "<" * 500_000, subtype="html")
    started = time.monotonic()
    result = extract(message.as_bytes())
    assert time.monotonic() - started < 2
    assert result.body_is_document and result.body_text.startswith("x x x")


@pytest.mark.parametrize("build", [corpus.multipage_tiff, corpus.jpeg_photo, corpus.text_only])
def test_one_mail_makes_the_same_pdf_bytes_every_time(build) -> None:  # type: ignore[no-untyped-def]
    """No clock and no random /ID in what the gateway makes: a reader and the gateway agree,
    and a document's hash names its bytes."""
    from gateway.convert.fonts import find_text_fonts
    from gateway.core.documents import ExtractionLimits, extract_documents

    limits = ExtractionLimits(text_fonts=find_text_fonts())
    raw = build()
    first, second = (extract_documents(parse_message(raw), limits).documents for _ in range(2))
    assert [d.content for d in first] == [d.content for d in second]
    assert all(d.document_type == "PDF" for d in first)

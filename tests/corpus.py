"""Test mails in the shapes real clients and scanners send, as raw RFC 5322 bytes.

Each builder returns the whole message (CRLF line endings, as over SMTP) from
alice@example.com to 13235551212@fax.local, with a Message-ID and a Subject, so
unit tests and end-to-end tests can feed the same mails. Attached PDFs come from
``make_pdf``: each carries its marker text as its /Title, so tests can check order.

    builder                    what it holds                           expected fax
    outlook_html_logo_pdf      related(alternative, cid logo) + PDF    Invoice 4711.pdf (2 p.)
    winmail_dat                text + winmail.dat(PDF, JPEG)           Quarterly report.pdf, photo.jpg
    gmail_nested               related+cid logo, PDF, mixed(JPEG, PDF) first.pdf, photo.jpg, last.pdf
    apple_inline_pdf           alternative(plain, mixed(html, inline PDF, html))  Contract.pdf
    thunderbird_two_pdfs       flowed text with "-- " signature, 2 PDFs  first.pdf, second.pdf
    scanner_octet_stream_pdf   octet-stream, RFC 2231 name             Scan 2024-06-01 (1).pdf
    multipage_tiff             3-frame G4 TIFF-F (204x196 dpi)          fax.tif (3 p.)
    jpeg_photo                 one JPEG                                IMG_0001.JPG
    rfc2231_non_ascii_name     ISO-8859-1 RFC 2231 + RFC 2047 names     Überweisung März.pdf, Größe €.pdf
    message_partial            list of 3 message/partial pieces         (reassembled) first.pdf, second.pdf
    zip_only                   text + zip                              NothingToFax
    encrypted_pdf              text + password PDF                     DocumentRefused
    empty_mail                 no text, no attachment                  NothingToFax
    text_only                  text with quote and signature           message.txt
    html_only                  HTML body only                          message.txt

The winmail.dat is assembled here by ``make_tnef`` (tnefparse can only read):
the TNEF signature, version, OEM codepage and message class, then per file the
attachment rendering record, title (8.3 name), data and a MAPI property block
holding the long file name (PidTagAttachLongFilename, UTF-16), per [MS-OXTNEF].
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from PIL import Image
from pypdf import PdfWriter

FROM = "Alice Example <alice@example.com>"
TO = "Bob Recipient <13235551212@fax.local>"
_DATE = datetime(2024, 6, 3, 9, 30, tzinfo=UTC)


# ---- file builders -------------------------------------------------------------------


def make_pdf(pages: int, text: str, *, password: str | None = None) -> bytes:
    """A PDF of ``pages`` blank Letter pages whose /Title is ``text`` (the order marker)."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    writer.add_metadata({"/Title": text})
    if password is not None:
        writer.encrypt(user_password=password, owner_password=password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_tiff(frames: int = 3, *, size: tuple[int, int] = (1728, 2200)) -> bytes:
    """A TIFF-F style fax: 1-bit frames, CCITT Group 4, 204x196 dpi."""
    images = [Image.new("1", size, 1) for _ in range(frames)]
    for index, image in enumerate(images):
        image.paste(0, (100, 100 + 50 * index, 400, 140 + 50 * index))
    out = io.BytesIO()
    images[0].save(
        out, format="TIFF", compression="group4", dpi=(204, 196), save_all=True, append_images=images[1:]
    )
    return out.getvalue()


def make_image(fmt: str, size: tuple[int, int] = (200, 150), mode: str = "RGB") -> bytes:
    color: int | tuple[int, ...] = (200, 30, 30) if mode == "RGB" else 128
    if mode == "RGBA":
        color = (200, 30, 30, 100)
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def make_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return out.getvalue()


def _tnef_object(level: int, attr_id: int, attr_type: int, data: bytes) -> bytes:
    header = struct.pack("<BHHI", level, attr_id, attr_type, len(data))
    return header + data + struct.pack("<H", sum(data) & 0xFFFF)


def make_tnef(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A winmail.dat holding ``files`` (long names in MAPI, 8.3 names as titles)."""
    out = [b"\x78\x9f\x3e\x22", struct.pack("<H", 0x4A21)]
    out.append(_tnef_object(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000)))
    out.append(_tnef_object(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0)))
    out.append(_tnef_object(1, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00"))
    for index, (name, data) in enumerate(files):
        stem, _, ext = name.rpartition(".")
        short = f"{stem[:6].upper().replace(' ', '_')}~{index + 1}.{ext[:3].upper()}"
        out.append(_tnef_object(2, 0x9002, 0x0006, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0)))
        out.append(_tnef_object(2, 0x8010, 0x0001, short.encode("cp1252") + b"\x00"))
        out.append(_tnef_object(2, 0x800F, 0x0006, data))
        value = name.encode("utf-16-le") + b"\x00\x00"
        props = struct.pack("<IHHII", 1, 0x001F, 0x3707, 1, len(value))
        props += value + b"\x00" * (-len(value) % 4)
        out.append(_tnef_object(2, 0x9005, 0x0006, props))
    return b"".join(out)


# ---- mail builders -------------------------------------------------------------------


def _new(subject: str) -> EmailMessage:
    message = EmailMessage(policy=policy.default)
    message["From"] = FROM
    message["To"] = TO
    message["Subject"] = subject
    message["Date"] = format_datetime(_DATE)
    message["Message-ID"] = make_msgid(domain="example.com")
    return message


def _bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=policy.SMTP)


def _attach(
    message: EmailMessage,
    data: bytes,
    maintype: str,
    subtype: str,
    filename: str,
    *,
    inline: bool = False,
    cid: str | None = None,
) -> None:
    message.add_attachment(
        data,
        maintype=maintype,
        subtype=subtype,
        filename=filename,
        disposition="inline" if inline else "attachment",
        cid=cid,
    )


def outlook_html_logo_pdf() -> bytes:
    text = _text_part("Please find invoice 4711 attached.\r\n\r\nKind regards\r\nAlice\r\n")
    html = _text_part(
        "<html><body><p>Please find invoice 4711 attached.</p><p>Kind regards<br>Alice</p>"
        '<img src="cid:image001.png@01DA1234.5678ABCD" alt="ACME"></body></html>',
        subtype="html",
    )
    body = _multipart(
        "related",
        [
            _multipart("alternative", [text, html]),
            _related_logo("<image001.png@01DA1234.5678ABCD>", "image001.png"),
        ],
    )
    message = _multipart("mixed", [body], _new("Invoice 4711"))
    _attach(message, make_pdf(2, "invoice"), "application", "pdf", "Invoice 4711.pdf")
    return _bytes(message)


def _text_part(text: str, subtype: str = "plain") -> EmailMessage:
    part = EmailMessage(policy=policy.default)
    part.set_content(text, subtype=subtype)
    return part


def _multipart(subtype: str, parts: Sequence[EmailMessage], into: EmailMessage | None = None) -> EmailMessage:
    message = into if into is not None else EmailMessage(policy=policy.default)
    message.make_mixed()
    for part in parts:
        message.attach(part)
    if subtype != "mixed":
        message.set_type(f"multipart/{subtype}")
    return message


def _related_logo(cid: str, filename: str) -> EmailMessage:
    logo = EmailMessage(policy=policy.default)
    logo.set_content(
        make_image("PNG", (120, 40)),
        maintype="image",
        subtype="png",
        disposition="inline",
        filename=filename,
        cid=cid,
    )
    return logo


def winmail_dat() -> bytes:
    message = _new("Quarterly report")
    message.set_content("Here is the quarterly report and a photo.\r\n")
    tnef = make_tnef([("Quarterly report.pdf", make_pdf(3, "report")), ("photo.jpg", make_image("JPEG"))])
    _attach(message, tnef, "application", "ms-tnef", "winmail.dat")
    return _bytes(message)


def gmail_nested() -> bytes:
    text = _text_part(
        "Three documents for Bob.\r\n\r\nOn Mon, 3 Jun 2024 at 09:00, Bob "
        "<bob@example.com> wrote:\r\n> Can you send them?\r\n"
    )
    html = _text_part(
        '<div dir="ltr">Three documents for Bob.<img src="cid:ii_lx1"></div>'
        '<div class="gmail_quote">On Mon, 3 Jun 2024 at 09:00, Bob wrote:<br>'
        '<blockquote class="gmail_quote">Can you send them?</blockquote></div>',
        subtype="html",
    )
    body = _multipart(
        "related", [_multipart("alternative", [text, html]), _related_logo("<ii_lx1>", "image.png")]
    )
    message = _multipart("mixed", [body], _new("Documents for Bob"))
    _attach(message, make_pdf(1, "first"), "application", "pdf", "first.pdf")
    inner = _multipart("mixed", [])
    _attach(inner, make_image("JPEG"), "image", "jpeg", "photo.jpg")
    _attach(inner, make_pdf(2, "last"), "application", "pdf", "last.pdf")
    message.attach(inner)
    return _bytes(message)


def apple_inline_pdf() -> bytes:
    message = _new("Contract")
    message.set_content("Hi Bob,\r\n\r\nhere is the contract:\r\n\r\n\r\nThanks,\r\nAlice\r\n")
    html = EmailMessage(policy=policy.default)
    html.set_content("<html><body>Hi Bob,<br><br>here is the contract:<br></body></html>", subtype="html")
    html.make_mixed()
    _attach(html, make_pdf(1, "contract"), "application", "pdf", "Contract.pdf", inline=True)
    tail = EmailMessage(policy=policy.default)
    tail.set_content("<html><body><br>Thanks,<br>Alice</body></html>", subtype="html")
    html.attach(tail)
    message.make_alternative()
    message.attach(html)
    return _bytes(message)


def thunderbird_two_pdfs() -> bytes:
    message = _new("Two documents")
    message.set_content("Two documents, in this order.\r\n\r\n-- \r\nAlice Example\r\nACME\r\n")
    message.set_param("format", "flowed")
    _attach(message, make_pdf(1, "first"), "application", "pdf", "first.pdf")
    _attach(message, make_pdf(2, "second"), "application", "pdf", "second.pdf")
    return _bytes(message)


def _raw(subject: str, content_type: str, parts: Sequence[bytes]) -> bytes:
    """A hand-written multipart mail, for header shapes the email package would tidy."""
    head = (
        f"From: {FROM}\r\nTo: {TO}\r\nSubject: {subject}\r\nDate: {format_datetime(_DATE)}"
        f"\r\nMessage-ID: {make_msgid(domain='example.com')}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: {content_type}; boundary="=_scan_boundary"\r\n\r\n'
    ).encode()
    body = b"".join(b"--=_scan_boundary\r\n" + part + b"\r\n" for part in parts)
    return head + body + b"--=_scan_boundary--\r\n"


def _b64(data: bytes) -> bytes:
    import base64

    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def scanner_octet_stream_pdf() -> bytes:
    text = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nScanned by RICOH MP C3004.\r\n"
    pdf = (
        b"Content-Type: application/octet-stream;\r\n"
        b" name*=utf-8''Scan%202024-06-01%20%281%29.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*0*=utf-8''Scan%202024-06-01;\r\n filename*1*=%20%281%29.pdf\r\n\r\n"
        + _b64(make_pdf(2, "scan"))
    )
    return _raw("Scan from MFP", "multipart/mixed", [text, pdf])


def multipage_tiff() -> bytes:
    message = _new("Fax scan")
    message.set_content("")
    _attach(message, make_tiff(3), "image", "tiff", "fax.tif")
    return _bytes(message)


def jpeg_photo() -> bytes:
    message = _new("Whiteboard")
    message.set_content("Photo of the whiteboard.\r\n\r\nSent from my iPhone\r\n")
    _attach(message, make_image("JPEG", (640, 480)), "image", "jpeg", "IMG_0001.JPG")
    return _bytes(message)


def rfc2231_non_ascii_name() -> bytes:
    text = b"Content-Type: text/plain; charset=utf-8\r\n\r\nZwei Belege.\r\n"
    latin = (
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*0*=iso-8859-1''%DCberweisung;\r\n filename*1*=%20M%E4rz.pdf\r\n\r\n"
        + _b64(make_pdf(1, "ueberweisung"))
    )
    encoded_word = (
        b'Content-Type: application/pdf;\r\n name="=?utf-8?B?R3LDtsOfZSDigqwucGRm?="'
        b"\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment;\r\n filename="=?utf-8?B?R3LDtsOfZSDigqwucGRm?="'
        b"\r\n\r\n" + _b64(make_pdf(1, "groesse"))
    )
    return _raw("=?utf-8?q?Belege_f=C3=BCr_M=C3=A4rz?=", "multipart/mixed", [text, latin, encoded_word])


def message_partial(pieces: int = 3) -> list[bytes]:
    """The thunderbird_two_pdfs mail split into ``pieces`` message/partial pieces."""
    inner = thunderbird_two_pdfs()
    lines = inner.splitlines(keepends=True)
    per_piece = -(-len(lines) // pieces)
    chunks = [b"".join(lines[i : i + per_piece]) for i in range(0, len(lines), per_piece)]
    ident = make_msgid(domain="example.com").strip("<>")
    result = []
    for number, chunk in enumerate(chunks, start=1):
        total = f"; total={len(chunks)}" if number == len(chunks) else ""
        head = (
            f"From: {FROM}\r\nTo: {TO}\r\nSubject: Two documents (part {number} of "
            f"{len(chunks)})\r\nDate: {format_datetime(_DATE)}\r\n"
            f"Message-ID: {make_msgid(domain='example.com')}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: message/partial; id="{ident}"; number={number}{total}\r\n\r\n'
        )
        result.append(head.encode() + chunk)
    return result


def zip_only() -> bytes:
    message = _new("Documents")
    message.set_content("All the documents are in the zip.\r\n")
    _attach(message, make_zip(), "application", "zip", "documents.zip")
    return _bytes(message)


def encrypted_pdf() -> bytes:
    message = _new("Secret")
    message.set_content("The password is in another mail.\r\n")
    _attach(message, make_pdf(1, "secret", password="s3cret"), "application", "pdf", "secret.pdf")
    return _bytes(message)


def empty_mail() -> bytes:
    message = _new("")
    message.set_content("\r\n")
    return _bytes(message)


def text_only() -> bytes:
    message = _new("Order [fine]")
    message.set_content(
        "Dear Bob,\r\n\r\nplease deliver 12 boxes on Monday.\r\n\r\nAlice\r\n\r\n"
        "On Fri, 31 May 2024, Bob <bob@example.com> wrote:\r\n> How many boxes?\r\n"
        "\r\n-- \r\nAlice Example, ACME\r\n"
    )
    return _bytes(message)


def html_only() -> bytes:
    message = _new("Price list")
    message.set_content(
        "<html><head><style>p {color: red}</style><title>x</title></head><body>"
        "<h1>Price list</h1><p>Boxes: $4&nbsp;each</p><ul><li>Red</li><li>Blue</li></ul>"
        '<img src="https://tracker.example.com/pixel.gif"></body></html>',
        subtype="html",
    )
    return _bytes(message)


# Every whole mail above, one per client style or refusal (message_partial gives pieces).
WHOLE_MAILS: tuple[Callable[[], bytes], ...] = (
    outlook_html_logo_pdf,
    winmail_dat,
    gmail_nested,
    apple_inline_pdf,
    thunderbird_two_pdfs,
    scanner_octet_stream_pdf,
    multipage_tiff,
    jpeg_photo,
    rfc2231_non_ascii_name,
    zip_only,
    encrypted_pdf,
    empty_mail,
    text_only,
    html_only,
)

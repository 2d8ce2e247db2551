"""The documents core on wrappers and converters: winmail.dat, attached mails, S/MIME,
office conversion (a stand-in converter here, LibreOffice when installed), file kinds."""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import struct
import sys
import time
import zipfile
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from pypdf import PdfReader

from gateway.convert.office import MEMORY_LIMIT_BYTES, LibreOffice, find_office_converter
from gateway.core import filetypes
from gateway.core.documents import DocumentRefused, NothingToFax
from gateway.core.tnef import TnefError, unpack_tnef
from tests import corpus
from tests.unit.extracting import extract, summary


def with_attachment(
    data: bytes, filename: str, mime: str = "application/octet-stream", text: str = "See attached.\n"
) -> bytes:
    message = EmailMessage(policy=policy.default)
    message["From"] = corpus.FROM
    message["To"] = corpus.TO
    message["Subject"] = "Test"
    message.set_content(text)
    maintype, subtype = mime.split("/")
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=policy.SMTP)


# ---- winmail.dat -------------------------------------------------------------------


def test_tnef_unpacks_files_in_order_with_their_long_names() -> None:
    contents = unpack_tnef(corpus.make_tnef([("Überweisung März.pdf", b"%PDF-x"), ("b.txt", b"hello")]))
    assert contents.files == (("Überweisung März.pdf", b"%PDF-x"), ("b.txt", b"hello"))
    assert contents.items_without_data == 0


def test_tnef_with_a_hostile_property_count_finishes_at_once_with_the_short_name() -> None:
    tnef = bytearray(corpus.make_tnef([("report.pdf", b"%PDF-x")]))
    block = tnef.index(struct.pack("<IHH", 1, 0x001F, 0x3707))
    tnef[block : block + 4] = struct.pack("<I", 0xFFFFFFFF)  # 4 billion properties
    started = time.monotonic()
    contents = unpack_tnef(bytes(tnef))
    assert time.monotonic() - started < 0.5
    assert contents.files == (("REPORT~1.PDF", b"%PDF-x"),)


def test_a_winmail_dat_without_files_leaves_the_text_as_the_fax() -> None:
    result = extract(
        with_attachment(
            corpus.make_tnef([]), "winmail.dat", "application/ms-tnef", text="Just text from Outlook."
        )
    )
    assert result.body_is_document
    assert summary(result) == [("message.txt", "TXT", 1, "text")]


def test_a_damaged_winmail_dat_is_refused() -> None:
    with pytest.raises(TnefError):
        unpack_tnef(b"\x78\x9f\x3e\x22\x01\x00" + b"\xff" * 40)
    with pytest.raises(DocumentRefused, match=re.escape('package "winmail.dat" is damaged')):
        extract(with_attachment(b"\x78\x9f\x3e\x22\x01\x00" + b"\xff" * 40, "winmail.dat"))


def test_a_zip_inside_winmail_dat_is_left_out_by_its_inner_name() -> None:
    tnef = corpus.make_tnef([("a.zip", corpus.make_zip()), ("b.pdf", corpus.make_pdf(1, "b"))])
    result = extract(with_attachment(tnef, "winmail.dat", "application/ms-tnef"))
    assert summary(result) == [("b.pdf", "PDF", 1, "pdf")]
    assert [o.filename for o in result.left_out] == ["a.zip"]


# ---- attached mails, signatures, encryption ---------------------------------------


def _forwarded() -> EmailMessage:
    inner = EmailMessage(policy=policy.default)
    inner["From"] = "Bob <bob@example.com>"
    inner["Subject"] = "Offer"
    inner.set_content("The offer is attached.\n\n-- \nBob\n")
    inner.add_attachment(
        corpus.make_pdf(2, "offer"), maintype="application", subtype="pdf", filename="offer.pdf"
    )
    return inner


def test_an_attached_mail_is_faxed_as_its_text_then_its_attachments() -> None:
    outer = EmailMessage(policy=policy.default)
    outer["Subject"] = "Fwd: Offer"
    outer.set_content("Please fax Bob's offer.\n")
    outer.add_attachment(_forwarded())
    outer.add_attachment(
        corpus.make_pdf(1, "after"), maintype="application", subtype="pdf", filename="after.pdf"
    )
    result = extract(outer.as_bytes())
    assert summary(result) == [
        ("Offer.eml", "TXT", 1, "message"),
        ("offer.pdf", "PDF", 2, "pdf"),
        ("after.pdf", "PDF", 1, "pdf"),
    ]
    assert result.documents[0].content.decode() == (
        "From: Bob <bob@example.com>\nSubject: Offer\n\nThe offer is attached.\n\n-- \nBob"
    )
    assert result.body_text == "Please fax Bob's offer."


def test_a_signed_mail_faxes_its_content_and_not_the_signature() -> None:
    raw = (
        b"Subject: signed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
        b'protocol="application/pkcs7-signature"; micalg=sha-256; boundary="s"\r\n\r\n'
        b"--s\r\nContent-Type: text/plain\r\n\r\nSigned words.\r\n"
        b"--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\nMIIB\r\n--s--\r\n"
    )
    result = extract(raw)
    assert summary(result) == [("message.txt", "TXT", 1, "text")]
    assert result.body_text == "Signed words."
    assert result.left_out == ()


def test_an_encrypted_mail_is_nothing_to_fax() -> None:
    raw = (
        b"Subject: secret\r\nMIME-Version: 1.0\r\nContent-Type: multipart/encrypted; "
        b'protocol="application/pgp-encrypted"; boundary="e"\r\n\r\n'
        b"--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        b"--e\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE"
        b"-----\r\n--e--\r\n"
    )
    with pytest.raises(NothingToFax, match="an encrypted part, which cannot be read"):
        extract(raw)


def test_an_unreferenced_inline_image_with_a_name_is_faxed() -> None:
    raw = (
        b"Subject: photo\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; "
        b'boundary="r"\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<p>No pictures here'
        b"</p>\r\n--r\r\nContent-Type: image/jpeg\r\nContent-ID: <unused@x>\r\n"
        b"Content-Disposition: inline; filename=whiteboard.jpg\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + __import__("base64").encodebytes(corpus.make_image("JPEG"))
        + b"--r--\r\n"
    )
    result = extract(raw)
    assert summary(result) == [("whiteboard.jpg", "PDF", 1, "jpeg")]
    assert result.body_text == "No pictures here"


# ---- office conversion ------------------------------------------------------------


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _converter(path: Path, body: str) -> LibreOffice:
    """The LibreOffice adapter running a stand-in ``soffice`` script."""
    return LibreOffice(_script(path, body))


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def test_office_documents_go_through_the_converter_command(tmp_path: Path) -> None:
    pdf = tmp_path / "made.pdf"
    pdf.write_bytes(corpus.make_pdf(4, "converted"))
    converter = _converter(
        tmp_path / "soffice",
        f"""
import sys, shutil, pathlib
args = sys.argv[1:]
assert args[0].startswith("-env:UserInstallation=file://"), args
assert "--headless" in args and args[args.index("--convert-to") + 1] == "pdf"
outdir = pathlib.Path(args[args.index("--outdir") + 1])
source = pathlib.Path(args[-1])
assert source.suffix == ".docx" and source.read_bytes().startswith(b"PK")
shutil.copy({str(pdf)!r}, outdir / (source.stem + ".pdf"))
""",
    )
    result = extract(with_attachment(_docx(), "Brief.docx"), office_converter=converter)
    assert summary(result) == [("Brief.docx", "PDF", 4, "docx")]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="util-linux's prlimit is not installed")
def test_the_converter_runs_with_its_address_space_capped(tmp_path: Path) -> None:
    pdf = tmp_path / "made.pdf"
    pdf.write_bytes(corpus.make_pdf(1, "converted"))
    converter = _converter(
        tmp_path / "soffice",
        f"""
import resource, shutil, sys, pathlib
soft, _ = resource.getrlimit(resource.RLIMIT_AS)
assert soft == {MEMORY_LIMIT_BYTES}, soft
args = sys.argv[1:]
outdir = pathlib.Path(args[args.index("--outdir") + 1])
shutil.copy({str(pdf)!r}, outdir / (pathlib.Path(args[-1]).stem + ".pdf"))
""",
    )
    result = extract(with_attachment(_docx(), "Brief.docx"), office_converter=converter)
    assert summary(result) == [("Brief.docx", "PDF", 1, "docx")]


def test_a_converter_that_hangs_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    converter = _converter(
        tmp_path / "soffice",
        f"""
import subprocess, time, pathlib
child = subprocess.Popen(["sleep", "60"])
pathlib.Path({str(pidfile)!r}).write_text(str(child.pid))
time.sleep(60)
""",
    )
    started = time.monotonic()
    with pytest.raises(DocumentRefused) as caught:
        extract(with_attachment(_docx(), "slow.docx"), office_converter=converter, conversion_timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        'The Word document "slow.docx" took longer than 1 seconds to convert; save it as PDF '
        "and send it again."
    )
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def test_a_converter_that_makes_nothing_is_a_refusal(tmp_path: Path) -> None:
    converter = _converter(tmp_path / "soffice", "import sys; sys.exit(1)\n")
    with pytest.raises(DocumentRefused, match=re.escape('"Brief.docx" could not be converted to PDF')):
        extract(with_attachment(_docx(), "Brief.docx"), office_converter=converter)


def test_find_office_converter_looks_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_office_converter() is None
    soffice = _script(tmp_path / "soffice", "pass\n")
    assert find_office_converter() == LibreOffice(soffice)


@pytest.mark.skipif(find_office_converter() is None, reason="LibreOffice is not installed")
def test_libreoffice_converts_an_rtf_letter() -> None:
    rtf = b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}}\\f0 Dear Bob,\\par Twelve boxes.\\par}"
    result = extract(
        with_attachment(rtf, "letter.rtf"), office_converter=find_office_converter(), conversion_timeout_s=120
    )
    assert summary(result) == [("letter.rtf", "PDF", 1, "rtf")]
    text = PdfReader(io.BytesIO(result.documents[0].content)).pages[0].extract_text()
    assert "Twelve boxes" in text


# ---- kinds from bytes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.4\n", "pdf"),
        (b"\x1b%-12345X@PJL\r\n%PDF-1.4\n...\n%%EOF\n", "pdf"),
        (b"we talk about %PDF- files here", "text"),
        (b"II*\x00rest", "tiff"),
        (b"\xff\xd8\xff\xe0rest", "jpeg"),
        (b"\x78\x9f\x3e\x22rest", "tnef"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "WordDocument".encode("utf-16-le"), "doc"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "__substg1.0_0037".encode("utf-16-le"), "outlook-item"),
        (b"{\\rtf1 x}", "rtf"),
        (b"\x7fELF\x02\x01", "executable"),
        (b"\x1f\x8b\x08\x00" + bytes(30), "archive"),
        (b"ID3\x03\x00" + bytes(30), "audio"),
        ("Grüße\r\n".encode("utf-16"), "text"),
        (b"<!DOCTYPE html><html></html>", "html"),
        (b"BEGIN:VCARD\r\n", "vcard"),
        (b"%!PS-Adobe-3.0\n", "postscript"),
        (b"  \r\n ", "empty"),
        (bytes(range(256)), "unknown"),
    ],
)
def test_kinds_are_read_from_the_bytes(data: bytes, kind: str) -> None:
    assert filetypes.detect(data) == kind

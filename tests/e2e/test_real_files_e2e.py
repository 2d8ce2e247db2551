"""Files as real tools make them, over real SMTP: what reaches POST /faxes is what viewers show.

Ghostscript, qpdf, libheif and Pillow's encoders make the files (tests/pdfcorpus.py,
tests/imagecorpus.py); the gateway and the simulator are the real ones; each test
reads what the simulator recorded of the POST /faxes.
"""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pypdf import PdfReader

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests import corpus, imagecorpus, pdfcorpus
from tests.e2e.conftest import sim_get, smtp_send
from tests.helpers import wait_until

RCPT = ["13235551212@fax.local"]


def _mail(*files: tuple[bytes, str, str], text: str = "See attached.\n", subject: str = "Documents") -> bytes:
    message = corpus._new(subject)
    message.set_content(text)
    for data, mime, filename in files:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return corpus._bytes(message)


async def _posted(sim: RunningSimulator) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """(document_type, decoded content) per document of the one fax POSTed, and the fax."""
    [summary] = await wait_until(lambda: sim_get(sim, "/_sim/faxes"))
    fax = await sim_get(sim, f"/_sim/faxes/{summary['fax_id']}")
    return [(d["document_type"], base64.b64decode(d["document_content"])) for d in fax["documents"]], fax


def _strictly_clean(pdf: bytes) -> int:
    pages = len(PdfReader(io.BytesIO(pdf), strict=True).pages)
    checked = pdfcorpus.qpdf_check(pdf)
    assert checked.returncode == 0 and b"WARNING" not in checked.stdout + checked.stderr, checked
    return pages


async def test_a_clean_pdf_reaches_efax_byte_for_byte(gateway: Gateway, simulator: RunningSimulator) -> None:
    original = pdfcorpus.ghostscript_pdf(2)
    result = await smtp_send(gateway.smtp_port, _mail((original, "application/pdf", "clean.pdf")), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)
    assert (kind, content) == ("PDF", original)


@pytest.mark.parametrize("damage", ["junk_after_eof", "pjl_header", "wrong_startxref", "zeroed_xref"])
async def test_a_damaged_pdf_reaches_efax_repaired_with_its_pages(
    gateway: Gateway, simulator: RunningSimulator, damage: str
) -> None:
    damaged = pdfcorpus.DAMAGES[damage](pdfcorpus.ghostscript_pdf(3))
    result = await smtp_send(gateway.smtp_port, _mail((damaged, "application/pdf", "scan.pdf")), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)
    assert kind == "PDF" and _strictly_clean(content) == 3
    assert [page.split() for page in pdfcorpus.pdftotext_pages(content)] == [
        ["Page", "1"],
        ["Page", "2"],
        ["Page", "3"],
    ]


async def test_an_owner_password_pdf_is_faxed_decrypted(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    locked = pdfcorpus.qpdf_encrypted(pdfcorpus.ghostscript_pdf(2), user="", owner="bank")
    result = await smtp_send(
        gateway.smtp_port, _mail((locked, "application/pdf", "statement.pdf")), rcpts=RCPT
    )
    assert result.code == 250, result
    [(_, content)], _ = await _posted(simulator)
    assert not PdfReader(io.BytesIO(content)).is_encrypted and _strictly_clean(content) == 2


async def test_a_pdf_that_needs_a_password_is_refused_with_its_sentence(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    locked = pdfcorpus.qpdf_encrypted(pdfcorpus.ghostscript_pdf(1), user="open-me", owner="owner")
    result = await smtp_send(gateway.smtp_port, _mail((locked, "application/pdf", "payslip.pdf")), rcpts=RCPT)
    assert (result.stage, result.code) == ("data", 554)
    assert result.text.startswith("5.6.0 ") and '"payslip.pdf" is a PDF that needs a password' in result.text
    assert await sim_get(simulator, "/_sim/faxes") == []


async def test_a_filled_in_form_is_faxed_with_its_values_on_the_page(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    form = pdfcorpus.filled_form("Jane Q. Public")
    result = await smtp_send(gateway.smtp_port, _mail((form, "application/pdf", "form.pdf")), rcpts=RCPT)
    assert result.code == 250, result
    [(_, content)], _ = await _posted(simulator)
    reader = PdfReader(io.BytesIO(content), strict=True)
    assert "Jane Q. Public" in reader.pages[0].extract_text() and "/AcroForm" not in reader.root_object


async def test_a_pdf_inflate_bomb_is_refused_quickly(gateway: Gateway, simulator: RunningSimulator) -> None:
    bomb = pdfcorpus.inflate_bomb(71)
    started = time.monotonic()
    result = await smtp_send(gateway.smtp_port, _mail((bomb, "application/pdf", "bomb.pdf")), rcpts=RCPT)
    assert time.monotonic() - started < 5
    assert (result.code, result.text[:6]) == (554, "5.6.0 ")
    assert '"bomb.pdf" is a PDF whose contents unpack to too much data' in result.text


async def test_an_iphone_heic_photo_is_faxed_as_a_page(gateway: Gateway, simulator: RunningSimulator) -> None:
    heic = imagecorpus.heic_from(imagecorpus.saved(imagecorpus.noisy("RGB", (900, 1200)), "JPEG"))
    result = await smtp_send(gateway.smtp_port, _mail((heic, "image/heic", "IMG_0001.HEIC")), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)
    assert kind == "PDF" and _strictly_clean(content) == 1


async def test_a_59_megapixel_rgba_png_is_faxed_as_a_page(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    png = imagecorpus.big_rgba_png(7680, 7680)
    result = await smtp_send(gateway.smtp_port, _mail((png, "image/png", "plan.png")), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)
    [image] = PdfReader(io.BytesIO(content)).pages[0].images
    assert kind == "PDF" and image.image is not None and max(image.image.size) <= 2200


def _text_mail(subject: str, text: str) -> bytes:
    message = corpus._new(subject)
    message.replace_header("From", "Jürgen Müller <alice@example.com>")
    message.set_content(text, cte="quoted-printable")
    return corpus._bytes(message)


async def test_a_text_only_fax_says_who_sent_it_when_and_what_in_any_script(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    long_line = "Lieferung " + "sehr " * 60 + "dringend."
    text = f"Grüße aus Köln, «Привет», Ελληνικά.\n{long_line}\n"
    result = await smtp_send(gateway.smtp_port, _text_mail("Bestellung Größe 5", text), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], fax = await _posted(simulator)
    assert kind == "PDF"  # set by the gateway, not eFax's text renderer
    assert not fax["fax_options"].get("include_cover_page")  # the mailbox's "auto": none
    page = pdfcorpus.pdftotext_pages(content)[0]
    assert "From:" in page and "Jürgen Müller <alice@example.com>" in page
    assert "Date:" in page and "3 Jun 2024" in page
    assert "Subject:" in page and "Bestellung Größe 5" in page
    assert "Grüße aus Köln, «Привет», Ελληνικά." in page
    lines = page.splitlines()
    assert max(len(line) for line in lines) <= 100  # the long line was wrapped ...
    assert " ".join(page.split()).count("sehr") == 60 and "dringend." in page  # ... and kept whole


async def test_cover_and_nocover_still_decide_the_cover_page_of_a_text_fax(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    result = await smtp_send(gateway.smtp_port, _text_mail("Note [cover]", "Call me.\n"), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], fax = await _posted(simulator)
    assert fax["fax_options"]["include_cover_page"] is True
    assert kind == "PDF" and "Call me." in pdfcorpus.pdftotext_pages(content)[0]


class _Watcher(http.server.BaseHTTPRequestHandler):
    """An HTTP server on loopback that notes every request (none may come)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def watcher() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Watcher,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def _price_list(base: str) -> str:
    return f"""<html><head><link rel="stylesheet" href="{base}/style.css">
<style>@import url("{base}/more.css"); td {{ padding: 4px; background: url({base}/cell.png) }}</style></head>
<body><h1>Price list</h1><p>Grüße from ACME</p>
<table border="1"><tr><th>Item</th><th>Quantity</th><th>Price</th></tr>
<tr><td>Boxes</td><td>12</td><td>$4.00</td></tr><tr><td>Tape</td><td>3</td><td>$1.50</td></tr></table>
<img src="{base}/pixel.gif" width="1" height="1"><img src="cid:logo@acme" alt="">
<p style="background-image: url('{base}/p.png')">Thanks, Alice</p></body></html>"""


def _columns(pdf: bytes) -> list[list[str]]:
    return [line.split() for line in "\n".join(pdfcorpus.pdftotext_pages(pdf)).splitlines() if line.strip()]


async def test_an_html_only_mail_is_rendered_with_its_table_and_fetches_nothing(
    gateway: Gateway, simulator: RunningSimulator, watcher: tuple[str, list[str]]
) -> None:
    base, seen = watcher
    message = corpus._new("Price list")
    message.set_content(_price_list(base), subtype="html")
    logo = imagecorpus.saved(imagecorpus.noisy("RGB", (120, 40)), "PNG")
    message.add_related(logo, maintype="image", subtype="png", cid="<logo@acme>")
    result = await smtp_send(gateway.smtp_port, corpus._bytes(message), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)  # the logo is no document of its own
    assert kind == "PDF" and _strictly_clean(content) == 1
    rows = _columns(content)
    assert ["Item", "Quantity", "Price"] in rows and ["Boxes", "12", "$4.00"] in rows  # columns kept
    assert ["From:", "Alice", "Example", "<alice@example.com>"] in rows and [
        "Subject:",
        "Price",
        "list",
    ] in rows
    assert not PdfReader(io.BytesIO(content)).pages[0].images  # neither logo nor pixel
    assert seen == []  # nothing was fetched while rendering


async def test_an_html_attachment_is_rendered_with_its_layout(
    gateway: Gateway, simulator: RunningSimulator, watcher: tuple[str, list[str]]
) -> None:
    base, seen = watcher
    page = _price_list(base).encode()
    result = await smtp_send(gateway.smtp_port, _mail((page, "text/html", "prices.html")), rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], fax = await _posted(simulator)
    assert kind == "PDF" and ["Tape", "3", "$1.50"] in _columns(content)
    assert fax["fax_options"]["include_cover_page"] is True  # "See attached." on the cover
    assert seen == []


def _broken_multipart(content_type: bytes, parts: bytes) -> bytes:
    head = (
        b"From: Alice Example <alice@example.com>\r\nTo: 13235551212@fax.local\r\nSubject: Order\r\n"
        b"Date: Mon, 03 Jun 2024 09:30:00 +0000\r\nMessage-ID: <broken@example.com>\r\nMIME-Version: 1.0\r\n"
    )
    return head + b"Content-Type: " + content_type + b"\r\n\r\n" + parts + b"--REAL--\r\n"


_TEXT_PART = (
    b"--REAL\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Please deliver 12 boxes, Gr\xc3\xbc\xc3\x9fe.\r\n"
)


async def test_a_mail_whose_boundary_is_missing_faxes_its_text(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    raw = _broken_multipart(b"multipart/mixed", _TEXT_PART)
    result = await smtp_send(gateway.smtp_port, raw, rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], _ = await _posted(simulator)
    assert kind == "PDF" and "Please deliver 12 boxes, Grüße." in pdfcorpus.pdftotext_pages(content)[0]


async def test_a_mail_whose_boundary_is_mismatched_faxes_its_attachment_and_text(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    pdf = pdfcorpus.ghostscript_pdf(2)
    encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    attachment = (
        b"--REAL\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="order.pdf"\r\n\r\n' + encoded
    )
    raw = _broken_multipart(b'multipart/mixed; boundary="NOT-THE-ONE-USED"', _TEXT_PART + attachment)
    result = await smtp_send(gateway.smtp_port, raw, rcpts=RCPT)
    assert result.code == 250, result
    [(kind, content)], fax = await _posted(simulator)
    assert (kind, content) == ("PDF", pdf)
    assert fax["fax_options"]["cover_page_options"]["message"] == "Please deliver 12 boxes, Grüße."

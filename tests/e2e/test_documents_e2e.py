"""Real clients' and scanners' mails through SMTP: exactly the right documents reach eFax."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests import corpus
from tests.e2e.conftest import sim_get, smtp_send
from tests.helpers import wait_until

RCPT = ["13235551212@fax.local"]


async def sent_documents(sim: RunningSimulator) -> tuple[list[tuple[str, int, str]], dict[str, Any]]:
    """(type, pages, PDF title or text) per document of the one fax sent, and the fax."""
    [summary] = await wait_until(lambda: sim_get(sim, "/_sim/faxes"))
    fax = await sim_get(sim, f"/_sim/faxes/{summary['fax_id']}")
    found = []
    for doc in fax["documents"]:
        content = base64.b64decode(doc["document_content"])
        if doc["document_type"] == "PDF":
            reader = PdfReader(io.BytesIO(content))
            title = reader.metadata.get("/Title", "") if reader.metadata is not None else ""
            found.append(("PDF", len(reader.pages), str(title)))
        else:
            found.append((doc["document_type"], 1, content.decode()))
    return found, fax


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        ("outlook_html_logo_pdf", [("PDF", 2, "invoice")]),
        ("winmail_dat", [("PDF", 3, "report"), ("PDF", 1, "")]),
        ("gmail_nested", [("PDF", 1, "first"), ("PDF", 1, ""), ("PDF", 2, "last")]),
        ("apple_inline_pdf", [("PDF", 1, "contract")]),
        ("thunderbird_two_pdfs", [("PDF", 1, "first"), ("PDF", 2, "second")]),
        ("scanner_octet_stream_pdf", [("PDF", 2, "scan")]),
        ("multipage_tiff", [("PDF", 3, "")]),
        ("jpeg_photo", [("PDF", 1, "")]),
    ],
)
async def test_each_client_style_faxes_exactly_its_documents_in_order(
    gateway: Gateway, simulator: RunningSimulator, builder: str, expected: list[tuple[str, int, str]]
) -> None:
    result = await smtp_send(
        gateway.smtp_port, getattr(corpus, builder)(), sender="alice@example.com", rcpts=RCPT
    )
    assert result.code == 250, result
    documents, _ = await sent_documents(simulator)
    got = [(t, p, title if any(title == e[2] for e in expected) else "") for t, p, title in documents]
    assert got == expected


async def test_non_ascii_names_arrive_as_two_pdfs(gateway: Gateway, simulator: RunningSimulator) -> None:
    result = await smtp_send(gateway.smtp_port, corpus.rfc2231_non_ascii_name(), rcpts=RCPT)
    assert result.code == 250
    documents, _ = await sent_documents(simulator)
    assert [d[0] for d in documents] == ["PDF", "PDF"]
    assert gateway.store is not None
    stored = await gateway.store.message(result.job_id)
    assert stored is not None
    assert [d.filename for d in stored.documents] == ["Überweisung März.pdf", "Größe €.pdf"]


async def test_text_only_mail_is_the_fax_and_has_no_cover(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    assert (await smtp_send(gateway.smtp_port, corpus.text_only(), rcpts=RCPT)).code == 250
    documents, fax = await sent_documents(simulator)
    [(kind, _, _)] = documents
    assert kind == "PDF"  # set by the gateway, headed by who sent it
    [document] = fax["documents"]
    text = PdfReader(io.BytesIO(base64.b64decode(document["document_content"]))).pages[0].extract_text()
    assert "please deliver 12 boxes" in text
    assert "Alice" in text and "-- " not in text and "How many boxes" not in text  # trimmed
    assert not fax["fax_options"].get("include_cover_page")


async def test_attachments_with_text_get_a_cover_page_with_that_text(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    assert (await smtp_send(gateway.smtp_port, corpus.thunderbird_two_pdfs(), rcpts=RCPT)).code == 250
    _, fax = await sent_documents(simulator)
    options = fax["fax_options"]
    assert options["include_cover_page"] is True
    assert options["cover_page_options"]["message"] == "Two documents, in this order."


@pytest.mark.parametrize(
    ("builder", "words"),
    [
        ("zip_only", "zip"),
        ("encrypted_pdf", "password"),
        ("empty_mail", "no text and no attachment"),
    ],
)
async def test_unusable_mail_is_refused_at_data_with_a_sentence(
    gateway: Gateway, simulator: RunningSimulator, builder: str, words: str
) -> None:
    result = await smtp_send(gateway.smtp_port, getattr(corpus, builder)(), rcpts=RCPT)
    assert (result.stage, result.code) == ("data", 554)
    assert result.text.startswith("5.6.0 ") and words in result.text.lower()
    assert await sim_get(simulator, "/_sim/faxes") == []


def _cpython_email_corpus() -> list[Path]:
    try:
        import test.test_email  # the running interpreter's own test data
    except ImportError:
        return []
    return sorted(Path(os.path.dirname(test.test_email.__file__), "data").glob("msg_*.txt"))


def _as_alice(raw: bytes) -> bytes:
    """The corpus mail, sent by an allowed sender (its own From: would be refused first)."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, sep, body = raw.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^from:.*(\r\n[ \t].*)*", b"", head).lstrip(b"\r\n")
    head = re.sub(rb"(?m)^From .*\r\n", b"", head)  # mbox separator lines
    return b"From: alice@example.com\r\n" + head + (sep or b"\r\n\r\n") + body


@pytest.mark.skipif(not _cpython_email_corpus(), reason="this Python was installed without its test package")
async def test_cpython_email_corpus_is_queued_or_refused_never_crashes(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    paths = _cpython_email_corpus()
    assert len(paths) > 40
    outcomes: dict[int, int] = {}
    for path in paths:
        result = await smtp_send(gateway.smtp_port, _as_alice(path.read_bytes()), rcpts=RCPT)
        outcomes[result.code] = outcomes.get(result.code, 0) + 1
        assert result.code == 250 or (result.code == 554 and result.text.startswith("5.6.0 ")), (
            path.name,
            result,
        )
    assert outcomes.get(250, 0) > 10 and outcomes.get(554, 0) >= 1, outcomes
    # every queued mail reaches eFax
    await wait_until(lambda: _count_faxes(simulator, outcomes[250]), timeout=30)


async def _count_faxes(sim: RunningSimulator, n: int) -> bool:
    return len(await sim_get(sim, "/_sim/faxes")) >= n


RTF = rb"{\rtf1\ansi\deff0 {\fonttbl {\f0 Times;}} \f0\fs24 Office document for the fax.\par}"


def _rtf_mail() -> bytes:
    msg = corpus._new("Minutes")
    msg.set_content("The minutes are attached.")
    msg.add_attachment(RTF, maintype="application", subtype="rtf", filename="minutes.rtf")
    return corpus._bytes(msg)


@pytest.mark.skipif(
    __import__("shutil").which("soffice") is None,
    reason="LibreOffice is not installed (.ci/run installs it; the Dockerfile ships it)",
)
async def test_an_office_document_is_converted_with_libreoffice(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    result = await smtp_send(gateway.smtp_port, _rtf_mail(), rcpts=RCPT)
    assert result.code == 250, result
    documents, _ = await sent_documents(simulator)
    assert [(kind, pages) for kind, pages, _ in documents] == [("PDF", 1)]

"""Proof of transmission, end to end: real SMTP in, the simulator as eFax, a real SMTP relay
(tests/sink.py) for the report; the confirmation PDF read back with pypdf."""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from gateway.app import Gateway
from gateway.commands.evidence import evidence_command
from gateway.commands.queue import queue
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import RunningSimulator, start_simulator
from tests.e2e.conftest import MAILBOXES, make_pdf, pdf_mail, smtp_send
from tests.e2e.tracking_helpers import fast_settings, start_gateway
from tests.helpers import wait_until
from tests.sink import Received, SmtpSink


def relay_at(sink: SmtpSink) -> dict[str, object]:
    return {"host": sink.host, "port": sink.port, "tls": "none"}


def attachments(message: EmailMessage) -> dict[str, bytes]:
    found = {}
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        content = part.get_content()
        found[str(part.get_filename())] = content if isinstance(content, bytes) else content.encode()
    return found


def pdf_text(data: bytes) -> tuple[int, str, int]:
    """(pages, text, images on page one) of a PDF."""
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return len(reader.pages), text, len(reader.pages[0].images)


async def deliver_one(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, **overrides: Any
) -> tuple[Gateway, str, Received]:
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink), **overrides)
    result = await smtp_send(gw.smtp_port, pdf_mail(pdf=make_pdf(2, marker="evidence")))
    assert result.code == 250, result
    [got] = await wait_until(lambda: sink.messages, timeout=15)
    return gw, result.job_id, got


async def test_the_delivered_report_carries_a_confirmation_whose_hashes_match_what_efax_received(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, job_id, got = await deliver_one(tmp_path, simulator, sink)
    try:
        assert got.message["Subject"] == "Fax delivered: Contract"
        assert gw.store is not None
        [fax] = await gw.store.faxes(job_id)
    finally:
        await gw.stop()
    [sent] = simulator.state.sent_faxes()
    assert sent.fax_id == fax.fax_id
    received = [hashlib.sha256(d.content).hexdigest() for d in sent.documents]
    files = attachments(got.message)
    assert list(files) == [f"confirmation-{fax.fax_id}.pdf"]
    pages, text, images = pdf_text(files[f"confirmation-{fax.fax_id}.pdf"])
    assert pages == 1
    assert "Fax transmission confirmation" in text and "Delivered" in text
    assert fax.fax_id in text
    assert f"Pages {fax.detail['pages']}" in text
    assert "Remote station (CSID) not reported" in text  # the simulator reports none
    assert "+1 323-555-1212" in text and job_id in text
    for digest in received:
        assert digest in text
    assert images == 1  # the first page as sent
    body = got.message.get_body(("plain",))
    assert body is not None and f"confirmation-{fax.fax_id}.pdf" in str(body.get_content())


async def test_confirmation_plus_fax_attaches_the_bytes_efax_received_and_the_mailbox_zone(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mailboxes = [
        {**MAILBOXES[0], "report_attachment": "confirmation+fax", "timezone": "America/Los_Angeles"},
        MAILBOXES[1],
    ]
    gw, _, got = await deliver_one(tmp_path, simulator, sink, mailboxes=mailboxes)
    await gw.stop()
    [sent] = simulator.state.sent_faxes()
    files = attachments(got.message)
    confirmation = f"confirmation-{sent.fax_id}.pdf"
    assert sorted(files) == sorted([confirmation, "contract.pdf"])
    assert files["contract.pdf"] == sent.documents[0].content
    _, text, _ = pdf_text(files[confirmation])
    assert "America/Los_Angeles" in text and "UTC" in text
    assert hashlib.sha256(files["contract.pdf"]).hexdigest() in text


async def test_report_attachment_none_sends_the_report_bare(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mailboxes = [{**MAILBOXES[0], "report_attachment": "none"}, MAILBOXES[1]]
    gw, _, got = await deliver_one(tmp_path, simulator, sink, mailboxes=mailboxes)
    await gw.stop()
    assert got.message["Subject"] == "Fax delivered: Contract"
    assert attachments(got.message) == {}


async def test_a_failed_fax_gets_no_confirmation(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink))
    try:
        result = await smtp_send(gw.smtp_port, pdf_mail(to="13235550000@fax.local"))  # always busy
        assert result.code == 250
        [got] = await wait_until(lambda: sink.messages, timeout=15)
    finally:
        await gw.stop()
    assert got.message["Subject"] == "Fax failed: Contract"
    assert attachments(got.message) == {}


async def test_queue_show_prints_the_hashes_and_evidence_writes_the_confirmation_again_after_the_purge(
    tmp_path: Path,
    simulator: RunningSimulator,
    sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, job_id, _ = await deliver_one(tmp_path, simulator, sink)
    await gw.stop()
    [sent] = simulator.state.sent_faxes()
    digest = hashlib.sha256(sent.documents[0].content).hexdigest()
    settings = fast_settings(tmp_path, simulator, relay=relay_at(sink))

    assert await queue(argparse.Namespace(action="show", id=job_id), settings) == 0
    assert f"sha256 {digest}" in capsys.readouterr().out

    again = tmp_path / "again.pdf"
    assert await evidence_command(argparse.Namespace(id=job_id, output=str(again)), settings) == 0
    pages, text, images = pdf_text(again.read_bytes())
    assert pages == 1 and sent.fax_id in text and digest in text and images == 1

    from gateway.store import open_store

    store = await open_store(settings.database.url)
    try:
        assert await store.purge(before=time.time() + 1, now=time.time()) == (1, 0)
    finally:
        await store.close()
    later = tmp_path / "later.pdf"
    assert await evidence_command(argparse.Namespace(id=sent.fax_id, output=str(later)), settings) == 0
    pages, text, images = pdf_text(later.read_bytes())
    assert pages == 1 and sent.fax_id in text and digest in text
    assert images == 0 and "database.keep_days" in text

    assert await evidence_command(argparse.Namespace(id="NO-SUCH-JOB", output=str(later)), settings) == 1


async def test_evidence_writes_the_pdf_to_stdout(
    tmp_path: Path,
    simulator: RunningSimulator,
    sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, job_id, _ = await deliver_one(tmp_path, simulator, sink)
    await gw.stop()
    settings = fast_settings(tmp_path, simulator, relay=relay_at(sink))
    capsysbinary.readouterr()
    assert await evidence_command(argparse.Namespace(id=job_id, output=None), settings) == 0
    out = capsysbinary.readouterr().out
    assert out.startswith(b"%PDF-")
    pages, text, _ = pdf_text(out)
    assert pages == 1 and job_id in text


async def test_a_remote_csid_efax_reports_is_on_the_confirmation(
    tmp_path: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sim = await start_simulator(SimulatorConfig(complete_after_s=0.3, destination_csid="ACME LEGAL"))
    try:
        gw, _, got = await deliver_one(tmp_path, sim, sink)
        await gw.stop()
    finally:
        await sim.stop()
    [confirmation] = attachments(got.message).values()
    _, text, _ = pdf_text(confirmation)
    assert "Remote station (CSID) ACME LEGAL" in text

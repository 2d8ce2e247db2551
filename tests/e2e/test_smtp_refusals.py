"""Every refusal DESIGN.md lists, at its SMTP step, with its code and a sentence."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import gateway_settings, pdf_mail, sim_get, smtp_send


async def no_fax_sent(sim: RunningSimulator) -> None:
    assert await sim_get(sim, "/_sim/faxes") == []


@pytest.mark.parametrize(
    ("rcpt", "reply"),
    [
        ("13235551212@example.com", "550 5.7.1 This gateway only accepts mail for <number>@fax.local"),
        ("bob@fax.local", "553 5.1.3 bob is not a fax number"),
        ("12@fax.local", "553 5.1.3"),
        ("19005551234@fax.local", "550 5.7.1 19005551234 is a premium-rate number"),
        ("+442079460958@fax.local", "550 5.7.1 Faxes to GB are not allowed here (allowed: US)."),
    ],
)
async def test_recipient_refusals(
    gateway: Gateway, simulator: RunningSimulator, rcpt: str, reply: str
) -> None:
    result = await smtp_send(gateway.smtp_port, pdf_mail(to=rcpt), rcpts=[rcpt])
    assert result.stage == "rcpt"
    assert f"{result.code} {result.text}".startswith(reply)
    await no_fax_sent(simulator)


async def test_sender_not_allowed_is_refused_at_mail_from(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    result = await smtp_send(
        gateway.smtp_port, pdf_mail(sender="mallory@example.net"), sender="mallory@example.net"
    )
    assert (result.stage, result.code) == ("mail", 550)
    assert result.text == (
        "5.7.1 mallory@example.net is not allowed to send faxes through this gateway; "
        "ask the administrator to add it to a mailbox's senders."
    )


async def test_header_from_must_match_too(gateway: Gateway, simulator: RunningSimulator) -> None:
    result = await smtp_send(
        gateway.smtp_port, pdf_mail(sender="mallory@example.net"), sender="alice@example.com"
    )
    assert (result.stage, result.code) == ("data", 550)
    assert "The From: address mallory@example.net is not allowed" in result.text
    await no_fax_sent(simulator)


async def test_null_sender_cannot_fax(gateway: Gateway) -> None:
    result = await smtp_send(gateway.smtp_port, pdf_mail(), sender="")
    assert (result.stage, result.code) == ("mail", 550)
    assert "Bounces and automatic replies cannot send faxes" in result.text


async def test_untrusted_unauthenticated_session_cannot_fax(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"trusted_networks": []})
    async with Gateway(settings) as gw:
        result = await smtp_send(gw.smtp_port, pdf_mail())
    assert (result.stage, result.code) == ("mail", 530)
    assert result.text.startswith("5.7.0 Authentication required")
    await no_fax_sent(simulator)


def _ehlo_size(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        return client.esmtp_features.get("size", "")


async def test_size_is_advertised_and_enforced(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"max_message_bytes": 200_000})
    async with Gateway(settings) as gw:
        assert await asyncio.to_thread(_ehlo_size, gw.smtp_port) == "200000"
        big = pdf_mail(pdf=b"%PDF-1.4\n" + b"0" * 300_000)
        result = await smtp_send(gw.smtp_port, big)
        declared = await asyncio.to_thread(_mail_with_size, gw.smtp_port, 500_000)
    assert (result.stage, result.code) == ("data", 552)
    assert result.text.startswith("5.3.4 The message is too big for this gateway (at most 0.2 MB)")
    assert declared[0] == 552 and declared[1].startswith(b"5.3.4")
    await no_fax_sent(simulator)


def _padded_pdf(size: int) -> bytes:
    """A valid one-page PDF of about ``size`` bytes: a stream of zeros pypdf never decodes."""
    from io import BytesIO

    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    padding = StreamObject()
    padding.set_data(b"\0" * size)
    page[NameObject("/PieceInfo")] = writer._add_object(padding)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_documents_over_efaxs_100_mb_once_encoded_are_refused_at_data(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 38 MB PDFs fit a 120 MB mail limit but come to 101 MB of base64 for eFax."""
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"max_message_bytes": 120_000_000})
    mail = pdf_mail(pdf=_padded_pdf(38_000_000))
    mail.add_attachment(_padded_pdf(38_000_000), maintype="application", subtype="pdf", filename="b.pdf")
    async with Gateway(settings) as gw:
        result = await smtp_send(gw.smtp_port, mail)
    assert (result.stage, result.code) == ("data", 552)
    assert result.text.startswith("5.3.4 The documents come to 101.")
    assert "more than the 100 MB one fax may carry; send them in several mails." in result.text
    await no_fax_sent(simulator)


def _mail_with_size(port: int, size: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        return client.mail("alice@example.com", options=[f"SIZE={size}"])


@pytest.mark.parametrize(
    ("build", "words"),
    [
        ("empty", "no text and no attachment"),
        ("zip", "zip"),
    ],
)
async def test_nothing_to_fax_is_refused_at_data(
    gateway: Gateway, simulator: RunningSimulator, build: str, words: str
) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "13235551212@fax.local"
    msg["Subject"] = "x"
    if build == "zip":
        msg.set_content("")
        msg.add_attachment(
            b"PK\x03\x04" + b"\0" * 100, maintype="application", subtype="zip", filename="files.zip"
        )
    result = await smtp_send(gateway.smtp_port, msg)
    assert (result.stage, result.code) == ("data", 554)
    assert result.text.startswith("5.6.0 ")
    assert words in result.text.lower()
    await no_fax_sent(simulator)


async def test_store_trouble_is_a_temporary_refusal_and_nothing_is_lost(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    import asyncio

    from gateway.store.engine import SqlStore
    from gateway.store.sqlite import SQLiteBackend

    store = gateway.store
    assert isinstance(store, SqlStore) and isinstance(store.backend, SQLiteBackend)
    conn = store.backend._writer
    assert conn is not None

    async def query_only(on: bool) -> None:  # a real SQLite refusal to write, not a mock
        await asyncio.get_running_loop().run_in_executor(
            store._write_pool, conn.execute, f"PRAGMA query_only = {int(on)}"
        )

    await query_only(True)
    result = await smtp_send(gateway.smtp_port, pdf_mail())
    assert (result.stage, result.code) == ("data", 451)
    assert result.text == "4.3.0 The gateway cannot store your mail right now; please try again later."
    await no_fax_sent(simulator)
    await query_only(False)
    assert (await smtp_send(gateway.smtp_port, pdf_mail())).code == 250


async def test_too_many_recipients(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"max_recipients": 2})
    rcpts = ["13235551212@fax.local", "13235551213@fax.local", "13235551214@fax.local"]
    async with Gateway(settings) as gw:
        result = await smtp_send(gw.smtp_port, pdf_mail(to=", ".join(rcpts)), rcpts=rcpts)
    assert (result.stage, result.code) == ("rcpt", 452)
    assert result.text == (
        "4.5.3 Too many fax recipients: this mail takes 2 numbers, the ones accepted so far; "
        "send the rest in another mail."
    )

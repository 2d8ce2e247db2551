"""Lines longer than RFC 5321's 998 octets, as scanners and scripts send them, through
real clients (swaks, smtplib): taken and faxed intact; only the mail's size is bounded,
and what is still refused is refused with a code, a sentence, a log line and an audit line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import smtplib
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE, gateway_settings, make_pdf, sim_get, smtp_send
from tests.e2e.tracking_helpers import FAST_TRACKING, reports_for
from tests.helpers import wait_until

RCPT = "13235551212@fax.local"
END_OF_TEXT = "and-this-is-where-the-long-line-ends"


def padded_pdf(min_bytes: int) -> bytes:
    """A real 2-page PDF of at least ``min_bytes`` (a title long enough to make it so)."""
    pdf = make_pdf(2, marker="scan-" + "x" * min_bytes)
    assert len(pdf) >= min_bytes
    return pdf


def long_line_mail(pdf: bytes, *, html_only: bool = False) -> bytes:
    """Text and HTML of one long line each (or the HTML alone), and the PDF as one unwrapped
    base64 line, as a script or scanner writes them (CRLF line ends, nothing folded)."""
    words = " ".join(f"word{n}" for n in range(900)) + " " + END_OF_TEXT  # about 8000 characters
    html = "<html><body><table><tr>" + "".join(f"<td>cell {n}</td>" for n in range(400)) + "</tr></table>"
    html += f"<p>{words}</p></body></html>"
    encoded = base64.b64encode(pdf).decode()
    assert len(encoded) > 5000 and len(html) > 5000 and len(words) > 5000
    if html_only:
        body = ["--outer", "Content-Type: text/html; charset=utf-8", "", html]
    else:
        body = [
            "--outer",
            'Content-Type: multipart/alternative; boundary="inner"',
            "",
            "--inner",
            "Content-Type: text/plain; charset=utf-8",
            "",
            words,
            "--inner",
            "Content-Type: text/html; charset=utf-8",
            "",
            html,
            "--inner--",
        ]
    lines = [
        f"From: Alice <{ALICE}>",
        f"To: <{RCPT}>",
        "Subject: Scanned contract",
        "Message-ID: <long-lines-1@example.com>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        *body,
        "--outer",
        'Content-Type: application/pdf; name="scan.pdf"',
        'Content-Disposition: attachment; filename="scan.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        encoded,
        "--outer--",
        "",
    ]
    return "\r\n".join(lines).encode()


async def one_fax(sim: RunningSimulator) -> dict[str, Any]:
    [summary] = await wait_until(lambda: sim_get(sim, "/_sim/faxes"), timeout=10)
    fax: dict[str, Any] = await sim_get(sim, f"/_sim/faxes/{summary['fax_id']}")
    return fax


async def swaks(port: int, data: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        "--server", f"127.0.0.1:{port}",
        "--helo", "scanner.example.com",
        "--from", ALICE,
        "--to", RCPT,
        "--data", f"@{data}",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return await proc.wait(), out.decode(errors="replace")


@pytest.mark.skipif(
    shutil.which("swaks") is None and "CI" not in os.environ,
    reason="swaks is not installed (Debian: swaks; .ci/run installs it, and under CI it must run)",
)
async def test_swaks_sends_unwrapped_base64_and_long_html_lines_and_they_are_faxed_intact(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pdf = padded_pdf(6000)
    mail = tmp_path / "long.eml"
    mail.write_bytes(long_line_mail(pdf))
    async with Gateway(gateway_settings(tmp_path, simulator.base_url, tracking=FAST_TRACKING)) as gw:
        status, out = await swaks(gw.smtp_port, mail)
        assert status == 0, out
        assert "<** " not in out and "250 2.0.0 Ok: queued as" in out, out
        job_id = out.split("queued as ", 1)[1].split()[0]
        fax = await one_fax(simulator)
        [report] = await wait_until(lambda: reports_for(tmp_path, job_id), timeout=10)
    [document] = fax["documents"]
    assert document["document_type"] == "PDF"
    assert base64.b64decode(document["document_content"]) == pdf  # byte for byte
    message = fax["fax_options"]["cover_page_options"]["message"]
    assert message.startswith("word0 word1 ") and message.endswith(END_OF_TEXT)  # the long line, whole
    assert report.message["Subject"] == "Fax delivered: Scanned contract"
    assert "scan.pdf (pdf, 2 pages)" in report.text


@pytest.mark.parametrize("html_only", [False, True])
async def test_smtplib_sends_long_lines_and_they_are_faxed_intact(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch, html_only: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    pdf = padded_pdf(20_000)
    async with Gateway(gateway_settings(tmp_path, simulator.base_url)) as gw:
        result = await smtp_send(gw.smtp_port, long_line_mail(pdf, html_only=html_only), rcpts=[RCPT])
        assert (result.code, result.stage) == (250, "data"), result
        fax = await one_fax(simulator)
    [document] = fax["documents"]
    assert base64.b64decode(document["document_content"]) == pdf
    message = fax["fax_options"]["cover_page_options"]["message"]  # the HTML's text, its long line whole
    assert END_OF_TEXT in message and "word0 word1 word2" in message


def _audited(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def test_what_is_still_refused_has_a_code_a_sentence_a_log_line_and_an_audit_line(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mail over smtp.max_message_bytes (one long line included) and a command line over
    RFC 5321's 512 characters: the two refusals that remain."""
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    settings = gateway_settings(
        tmp_path,
        simulator.base_url,
        smtp={"listen": "127.0.0.1:0", "max_message_bytes": 100_000},
        logging={"audit_file": str(audit)},
    )
    big = long_line_mail(padded_pdf(120_000))
    caplog.set_level("INFO", logger="gateway.smtp")

    def session() -> tuple[tuple[int, str], tuple[int, str]]:
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30) as client:
            client.ehlo("script.example.com")
            long_command = client.docmd("MAIL", f"FROM:<{ALICE}> " + "X" * 600)
            client.mail(ALICE)
            client.rcpt(RCPT)
            code, text = client.data(big)  # the reply after the mail, whatever it is
            return (long_command[0], long_command[1].decode()), (code, text.decode())

    async with Gateway(settings) as gw:
        (command_code, command_text), (data_code, data_text) = await asyncio.to_thread(session)
    assert command_code == 500 and command_text.startswith("5.5.2 The command line is too long")
    assert data_code == 552 and data_text.startswith("5.3.4 The message is too big for this gateway")
    assert await sim_get(simulator, "/_sim/faxes") == []
    refused = [r for r in _audited(audit) if r.get("audit") == "refused"]
    assert [(r["stage"], str(r["reply"])[:9]) for r in refused] == [
        ("command", "500 5.5.2"),
        ("data", "552 5.3.4"),
    ]
    assert refused[1]["sender"] == ALICE and refused[1]["to"] == ["13235551212"]
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.smtp.handler"]
    assert any(m.startswith("refused: 500 5.5.2") for m in logged)
    assert any(m.startswith("refused: 552 5.3.4") for m in logged)

"""Client values cannot forge log lines: what a client sends is escaped in every log and audit line.

A real gateway with TLS; the client signs in with a user name carrying CR LF, a Unicode
line separator and a bidi override, says EHLO with an escape sequence and gives a sender
with a control character. The log lines are read as the gateway's own formatter writes
them, the audit log as its file.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.logs import EventFormatter
from gateway.simulator.server import RunningSimulator
from tests.e2e.security_helpers import Certs, Raw, make_certs, secure_settings

FORGED = "mallory\r\n2026-12-03 08:00:00,000 INFO gateway.smtp.auth: signed in action=signed-in user=admin"
SNEAKY = "eve\u2028\u202eadmin\x85"
HELO = "client\x1b[2J.example.com"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def _session(port: int, certs: Certs) -> list[bytes]:
    raw = Raw(port)
    seen = [raw.reply()]
    raw.send(b"EHLO client.example.com\r\n")
    seen.append(raw.reply())
    raw.send(b"STARTTLS\r\n")
    seen.append(raw.reply())
    raw.starttls(certs.client)
    raw.send(f"EHLO {HELO}\r\n".encode())
    seen.append(raw.reply())
    for user in (FORGED, SNEAKY):
        blob = base64.b64encode(f"\0{user}\0wrong".encode()).decode()
        raw.send(f"AUTH PLAIN {blob}\r\n".encode())
        seen.append(raw.reply())
    raw.send(b"MAIL FROM:<ev\x1bil\r@example.com>\r\n")
    seen.append(raw.reply())
    raw.close()
    return seen


async def test_client_values_are_escaped_in_log_and_audit_lines(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"auth_failure_delay_s": 0},
        logging={"mask": False, "audit_file": str(audit)},
    )
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EventFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with Gateway(settings) as gw:
            seen = await asyncio.to_thread(_session, gw.smtp_port, certs)
    finally:
        root.removeHandler(handler)
    assert seen[4:6] == [b"535 5.7.8 The user name or password is wrong.\r\n"] * 2
    assert seen[6].startswith(b"530 5.7.0 Authentication required")

    text = out.getvalue()
    lines = text.split("\n")[:-1]
    assert all(LINE_START.match(line) or line.startswith("  | ") for line in lines), lines
    assert len(text.splitlines()) == len(lines)  # no U+2028, U+0085 ... that other readers break at
    assert not any(c in text for c in "\r\x1b\x85\u2028\u202e")
    failed = [line for line in lines if 'action="auth failed"' in line]
    assert len(failed) == 2
    assert 'user="mallory\\x0d\\x0a2026-12-03 08:00:00,000 INFO gateway.smtp.auth: signed "' in failed[0]
    assert "helo=client\\x1b[2J.example.com" in failed[0]
    assert "user=eve\\u2028\\u202eadmin\\x85" in failed[1]
    [refused] = [line for line in lines if "action=refused" in line and "stage=mail" in line]
    assert "sender=ev\\x1bil\\x0d@example.com" in refused

    records = audit.read_text(encoding="utf-8")
    assert len(records.splitlines()) == len(records.split("\n")[:-1])  # one record, one line, for any reader
    assert not any(c in records for c in "\r\x1b\x85\u2028\u202e")
    parsed = [json.loads(line) for line in records.split("\n") if line]
    assert [r["user"] for r in parsed if r.get("stage") == "auth"] == [FORGED[:64], SNEAKY]  # the very values
    assert [r["sender"] for r in parsed if r.get("stage") == "mail"] == ["ev\x1bil\r@example.com"]


async def test_a_reply_that_names_a_client_value_stays_one_clean_line(gateway: Gateway) -> None:
    def session() -> list[bytes]:
        raw = Raw(gateway.smtp_port)
        seen = [raw.reply()]
        for command in (
            b"EHLO client.example.com\r\n",
            b"MAIL FROM:<ev\x1bil\r@example.com>\r\n",
            b"QUIT\r\n",
        ):
            raw.send(command)
            seen.append(raw.reply())
        raw.close()
        return seen

    seen = await asyncio.to_thread(session)
    assert seen[2] == (
        b"550 5.7.1 ev?il?@example.com is not allowed to send faxes through this gateway; "
        b"ask the administrator to add it to a mailbox's senders.\r\n"
    )
    assert seen[3] == b"221 Bye\r\n"  # nothing the client sent was taken for a reply of its own

"""End-to-end fixtures: the real gateway, the real simulator, real SMTP on loopback."""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest

from gateway.app import Gateway
from gateway.settings import Settings, load_settings
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import RunningSimulator, start_simulator
from tests.helpers import smtp_error_text

ALICE = "alice@example.com"
ALICE_USER = "11111111-22222222"
SCANNER_USER = "33333333-44444444"
API_KEY = "test-api-key-do-not-log"


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    sim = await start_simulator(SimulatorConfig(complete_after_s=0.3))
    yield sim
    await sim.stop()


MAILBOXES: list[dict[str, Any]] = [
    {
        "user_id": ALICE_USER,
        "fax_number": "13235550100",
        "senders": [ALICE, "bob@example.com"],
        "deliver_to": [ALICE],
    },
    {
        "user_id": SCANNER_USER,
        "fax_number": "13235550200",
        "senders": ["*@scan.example.com"],
        "deliver_to": ["frontdesk@example.com"],
    },
]


def gateway_settings(tmp_path: Path, simulator_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        # One reader kept ready (more are started when mails wait): a gateway per test.
        "smtp": {"listen": "127.0.0.1:0", "reader_processes": 1},
        "http": {"listen": "127.0.0.1:0"},
        "database": {"url": f"sqlite:///{tmp_path}/gateway.db"},
        "relay": {"maildir": str(tmp_path / "mail")},
        "efax": {"base_url": simulator_url, "app_id": "test-app", "api_key": API_KEY},
        "workers": {"poll_idle_s": 0.05, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        "mailboxes": [dict(m) for m in MAILBOXES],
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return load_settings(None, base)


@pytest.fixture
async def gateway(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.chdir(tmp_path)
    gw = Gateway(gateway_settings(tmp_path, simulator.base_url))
    await gw.start()
    yield gw
    await gw.stop()


@dataclass
class SmtpResult:
    code: int
    text: str
    stage: str  # "mail", "rcpt", "data" or "size"

    @property
    def job_id(self) -> str:
        return self.text.rsplit(" ", 1)[-1]


def smtp_transaction(client: smtplib.SMTP, sender: str, rcpts: list[str], data: bytes) -> SmtpResult:
    """MAIL, RCPT..., DATA on an open session: the reply of the first refusing step, or of DATA."""
    code, text = client.mail(sender)
    if code >= 400:
        return SmtpResult(code, text.decode(), "mail")
    for rcpt in rcpts:
        code, text = client.rcpt(rcpt)
        if code >= 400:
            return SmtpResult(code, text.decode(), "rcpt")
    try:
        code, text = client.data(data)
    except smtplib.SMTPDataError as err:
        return SmtpResult(err.smtp_code, smtp_error_text(err), "data")
    return SmtpResult(code, text.decode(), "data")


def _smtp_send(port: int, sender: str, rcpts: list[str], data: bytes) -> SmtpResult:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.com")
        return smtp_transaction(client, sender, rcpts, data)


async def smtp_send(
    port: int, message: EmailMessage | bytes, *, sender: str = ALICE, rcpts: list[str] | None = None
) -> SmtpResult:
    """Send one mail through real SMTP; the reply of the first refusing step, or of DATA."""
    data = message if isinstance(message, bytes) else message.as_bytes(policy=email.policy.SMTP)
    if rcpts is None:
        assert isinstance(message, EmailMessage)
        rcpts = [a.addr_spec for a in message["To"].addresses]
    return await asyncio.to_thread(_smtp_send, port, sender, rcpts, data)


def make_pdf(pages: int = 1, marker: str = "doc") -> bytes:
    from io import BytesIO

    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    writer.add_metadata({"/Title": marker})
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


class MailFields(TypedDict, total=False):
    """What a test may set of ``pdf_mail`` (``**fields: Unpack[MailFields]``)."""

    to: str
    sender: str
    subject: str
    pdf: bytes | None
    text: str


def pdf_mail(
    *,
    to: str = "13235551212@fax.local",
    sender: str = ALICE,
    subject: str = "Contract",
    pdf: bytes | None = None,
    text: str = "Please sign.",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<original-1@example.com>"
    msg.set_content(text)
    msg.add_attachment(pdf or make_pdf(), maintype="application", subtype="pdf", filename="contract.pdf")
    return msg


async def sim_get(sim: RunningSimulator, url: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        response = await client.get(url, params=params)
        response.raise_for_status()
        return response.json()


async def sim_post(sim: RunningSimulator, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        response = await client.post(path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None


def requests_to(
    sim: RunningSimulator, method: str, path: str
) -> Callable[[], Coroutine[Any, Any, list[dict[str, Any]]]]:
    async def read() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = await sim_get(sim, "/_sim/requests", method=method, path=path)
        return items

    return read


@pytest.fixture
async def sink() -> AsyncIterator[Any]:
    """A real SMTP sink on a loopback port, standing in for the mail relay (tests/sink.py)."""
    from tests.sink import SmtpSink

    relay = await SmtpSink().start()
    yield relay
    await relay.stop()


# -- no secret in any log line -----------------------------------------------------------------
# Secrets the e2e tests use (besides API_KEY); every SecretStr of every Gateway started during
# a test (API key, relay password, webhook secret, password hashes) is checked as well.
RELAY_PASSWORD = "relay-password-do-not-log"
WEBHOOK_SECRET = "webhook-secret-do-not-log"
USER_PASSWORD = "user-password-do-not-log"
KNOWN_SECRETS = frozenset({API_KEY, RELAY_PASSWORD, WEBHOOK_SECRET, USER_PASSWORD})


def secret_values(settings: Settings) -> set[str]:
    """Every SecretStr value in the settings tree (long enough not to match by chance)."""
    from pydantic import BaseModel, SecretStr

    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, SecretStr):
            if len(node.get_secret_value()) >= 8:
                found.add(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(settings)
    return found


def record_text(record: Any) -> str:
    """A log record as anyone could read it: message, event fields, exception."""
    import logging

    try:
        parts = [record.getMessage()]
    except Exception:  # a bad format string is the logging call's bug, not ours to hide
        parts = [str(record.msg), repr(record.args)]
    fields = getattr(record, "_faxgw_fields", None)
    if fields:
        parts.append(repr(fields))
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every e2e test runs with logging at DEBUG; no known secret may appear in any record."""
    import logging

    secrets = set(KNOWN_SECRETS)
    start = Gateway.start

    async def start_and_note_secrets(self: Gateway) -> None:
        secrets.update(secret_values(self.settings))
        await start(self)

    monkeypatch.setattr(Gateway, "start", start_and_note_secrets)
    texts: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            texts.append(record_text(record))

    recorder, root = Recorder(logging.DEBUG), logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)
    leaks = [text for text in texts if any(secret in text for secret in secrets)]
    assert not leaks, f"{len(leaks)} log record(s) carry a secret, e.g.: {leaks[0][:500]!r}"

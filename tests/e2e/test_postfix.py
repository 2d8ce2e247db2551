"""docs/postfix.md, followed: Postfix in front of the gateway, and behind it for mail out.

A real Postfix of its own (tests/postfix.py: private main.cf and master.cf, its own
queue, loopback ports) routes the fax domain to the gateway with a transport map (two
next hops, the first down, as with two instances) and
relays the gateway's reports to the organisation's mail (here the SMTP sink, standing in
for the mailbox server). A fax through Postfix is faxed and its report comes back
through Postfix, from the null sender, threaded; a mail the gateway refuses is bounced
by Postfix to its sender with the gateway's own sentence in the bounce."""

from __future__ import annotations

import asyncio
import email.policy
import os
import re
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE, pdf_mail
from tests.e2e.tracking_helpers import fast_settings
from tests.helpers import wait_until
from tests.postfix import MISSING, PostfixInstance, free_port, installed
from tests.sink import Received, SmtpSink

PREMIUM = "19005550123"  # a US premium-rate number: the gateway never dials one


@pytest.fixture
def postfix_dir() -> Iterator[Path]:
    """A directory of its own, outside pytest's (0700) temp root: Postfix's daemons run as
    the postfix user and must reach their data directory."""
    if not installed():
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}; under CI the Postfix recipe test must run", pytrace=False)
        pytest.skip(MISSING)
    workdir = Path(tempfile.mkdtemp(prefix="faxgw-postfix-"))
    workdir.chmod(0o755)
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


def _send(port: int, sender: str, rcpt: str, data: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("workstation.example.com")
        client.mail(sender)
        code, text = client.rcpt(rcpt)
        if code >= 400:
            return code, text.decode()
        code, text = client.data(data)
        return code, text.decode()


def _rcpt_reply(port: int, sender: str, rcpt: str) -> str:
    """What the gateway itself answers at RCPT (or MAIL), spoken to directly."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("workstation.example.com")
        code, text = client.mail(sender)
        if code < 400:
            code, text = client.rcpt(rcpt)
        assert code >= 500, (code, text)
        return f"{code} {text.decode()}"


def _words(text: str) -> str:
    return " ".join(text.split())


def _bounce_text(mail: Received) -> str:
    message = mail.message
    parts = [str(p.get_content()) for p in message.walk() if p.get_content_type() == "text/plain"]
    parts += [p.as_string() for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    return _words(" ".join(parts))


async def test_postfix_routes_the_fax_domain_to_the_gateway_and_relays_reports_and_bounces(
    tmp_path: Path,
    postfix_dir: Path,
    simulator: RunningSimulator,
    sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    postfix = PostfixInstance(postfix_dir, routes={})
    settings = fast_settings(
        tmp_path,
        simulator,
        relay={
            "host": "127.0.0.1",
            "port": postfix.port,
            "tls": "none",
            "from_address": "fax-gateway@example.com",
        },
    )
    async with Gateway(settings) as gw:
        down = free_port()  # a second gateway that is down: Postfix goes on to the next hop
        postfix.routes = {
            "fax.local": f"smtp:[127.0.0.1]:{down}, [127.0.0.1]:{gw.smtp_port}",  # the recipe's map
            "example.com": f"smtp:[127.0.0.1]:{sink.port}",  # the organisation's mailbox server
        }
        try:
            await asyncio.to_thread(postfix.start)
            await _through_postfix(gw, postfix, sink)
            assert f"connect to 127.0.0.1[127.0.0.1]:{down}: Connection refused" in postfix.log()
        finally:
            await asyncio.to_thread(postfix.stop)
    assert postfix.master_pid() is None or "stopping the Postfix mail system" in postfix.log()


async def _through_postfix(gw: Gateway, postfix: PostfixInstance, sink: SmtpSink) -> None:
    # 1. A fax through Postfix: faxed, and its report comes back through Postfix.
    mail = pdf_mail(to="Dr. Who <13235551212@fax.local>")
    data = mail.as_bytes(policy=email.policy.SMTP)
    code, said = await asyncio.to_thread(_send, postfix.port, ALICE, "13235551212@fax.local", data)
    assert code == 250, said  # Postfix queued it

    def report() -> Received | None:
        return next((m for m in sink.messages if m.message["X-Fax-Gateway-Job"]), None)

    got: Any = await wait_until(report, timeout=40, interval=0.1)
    assert got.mail_from in ("", "<>") and got.rcpt_tos == [ALICE]  # the null sender survives the relay
    assert str(got.message["Subject"]).startswith("Fax delivered")
    assert got.message["In-Reply-To"] == mail["Message-ID"]
    assert re.search(r"Received: from \S+ \(localhost \[127\.0\.0\.1\]\)", got.data.decode(errors="replace"))
    assert gw.store is not None
    job = str(got.message["X-Fax-Gateway-Job"])
    stored = await gw.store.message(job)
    assert stored is not None and stored.auth.startswith("trusted 127.0.0.1")  # Postfix is trusted

    # 2. A mail the gateway refuses: Postfix bounces it to its sender with the gateway's sentence.
    sentence = await asyncio.to_thread(_rcpt_reply, gw.smtp_port, ALICE, f"{PREMIUM}@fax.local")
    refused = pdf_mail(to=f"{PREMIUM}@fax.local").as_bytes(policy=email.policy.SMTP)
    code, said = await asyncio.to_thread(_send, postfix.port, ALICE, f"{PREMIUM}@fax.local", refused)
    assert code == 250, said  # accepted by Postfix: the refusal comes at delivery

    def bounce() -> Received | None:
        return next((m for m in sink.messages if m.mail_from in ("", "<>") and m is not got), None)

    bounced: Any = await wait_until(bounce, timeout=30, interval=0.1)
    assert bounced.rcpt_tos == [ALICE]
    assert "MAILER-DAEMON" in str(bounced.message["From"])
    text = _bounce_text(bounced)
    assert _words(sentence.split(" ", 2)[2]) in text, (sentence, text)  # the gateway's own words
    assert f"{PREMIUM}@fax.local" in text and "550" in text
    assert len([m for m in sink.messages if m.message["X-Fax-Gateway-Job"]]) == 1  # no report for it

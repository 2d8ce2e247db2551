"""A mail to more numbers than ``smtp.max_recipients``: the 452 says how many were taken,
and when the client's mail server delivers the rest in another transaction, as MTAs do
(RFC 5321 4.5.3.1.10), each part's report says which numbers it covers and where the
others went.

The client here behaves as an MTA's queue does: it keeps the numbers refused with 452,
and delivers them with the same mail in a new session, at once or later.
"""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import RunningSimulator, start_simulator
from tests.e2e.conftest import ALICE, pdf_mail
from tests.e2e.tracking_helpers import Report, reports_for, run_queue, start_gateway
from tests.helpers import wait_until

NUMBERS = [f"1323555{n:04d}" for n in range(1201, 1206)]  # five numbers; the gateway takes three
PRETTY = [f"+1 323-555-{n:04d}" for n in range(1201, 1206)]


@dataclass
class Delivery:
    """One transaction as an MTA's log would show it."""

    replies: list[tuple[str, int, str]] = field(default_factory=list)  # (recipient, code, text)
    data: tuple[int, str] | None = None

    @property
    def job_id(self) -> str:
        assert self.data is not None and self.data[0] == 250, self.data
        return self.data[1].rsplit(" ", 1)[-1]


class QueueingClient:
    """Delivers one mail like an MTA: the recipients answered 4xx stay queued for the
    next attempt, a new session with the same bytes; 5xx ones are dropped (bounced)."""

    def __init__(self, port: int, data: bytes, recipients: list[str]) -> None:
        self.port = port
        self.data = data
        self.queued = list(recipients)
        self.deliveries: list[Delivery] = []

    def _attempt(self) -> Delivery:
        delivery = Delivery()
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("mta.example.com")
            code, _ = client.mail(ALICE)
            assert code == 250
            taken = []
            for rcpt in self.queued:
                code, text = client.rcpt(rcpt)
                delivery.replies.append((rcpt, code, text.decode()))
                if code == 250:
                    taken.append(rcpt)
            if taken:
                code, text = client.data(self.data)
                delivery.data = (code, text.decode())
        if delivery.data is not None and delivery.data[0] == 250:
            self.queued = [r for r, code, _ in delivery.replies if 400 <= code < 500]
        self.deliveries.append(delivery)
        return delivery

    async def attempt(self) -> Delivery:
        return await asyncio.to_thread(self._attempt)


@pytest.fixture
async def slow_simulator() -> AsyncIterator[RunningSimulator]:
    """Faxes take 1.5 s: both parts are stored before the first part's report is written."""
    sim = await start_simulator(SimulatorConfig(complete_after_s=1.5))
    yield sim
    await sim.stop()


def _mail() -> bytes:
    message = pdf_mail(to=", ".join(f"{n}@fax.local" for n in NUMBERS))
    return message.as_bytes(policy=email.policy.SMTP)


def _one(tmp_path: Path, job_id: str) -> Report:
    found = reports_for(tmp_path, job_id)
    assert len(found) <= 1
    return found[0] if found else None  # type: ignore[return-value]


async def test_the_rest_retried_later_each_report_says_where_the_other_numbers_went(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, smtp={"max_recipients": 3})
    try:
        mta = QueueingClient(gw.smtp_port, _mail(), [f"{n}@fax.local" for n in NUMBERS])
        first = await mta.attempt()
        assert [code for _, code, _ in first.replies] == [250, 250, 250, 452, 452]
        assert first.replies[3][2] == (
            "4.5.3 Too many fax recipients: this mail takes 3 numbers, the ones accepted so far; "
            "send the rest in another mail."
        )
        assert mta.queued == [f"{n}@fax.local" for n in NUMBERS[3:]]
        # The first part is faxed and reported before the mail server comes back with the rest.
        early = await wait_until(lambda: _one(tmp_path, first.job_id), timeout=10)
        second = await mta.attempt()
        assert [code for _, code, _ in second.replies] == [250, 250] and mta.queued == []
        later = await wait_until(lambda: _one(tmp_path, second.job_id), timeout=10)
        capsys.readouterr()
        assert await run_queue(gw, "show", first.job_id) == 0
        shown = capsys.readouterr().out
    finally:
        await gw.stop()
    assert early.message["Subject"] == later.message["Subject"] == "Fax delivered: Contract"
    assert early.to == later.to == [ALICE]
    assert early.message["In-Reply-To"] == later.message["In-Reply-To"] == "<original-1@example.com>"
    assert 'Your fax "Contract" was delivered to all 3 numbers.' in early.text
    assert (
        "Your mail was addressed to more fax numbers than the gateway takes in one delivery, so your "
        f"mail server delivered it in parts. This report is about {PRETTY[0]}, {PRETTY[1]}, {PRETTY[2]}."
    ) in " ".join(early.text.split())
    assert (
        f"The gateway asked your mail server to send {PRETTY[3]} and {PRETTY[4]} in another delivery, "
        "which gets a report of its own; if none comes, send your mail again to those numbers."
    ) in " ".join(early.text.split())
    assert 'Your fax "Contract" was delivered to all 2 numbers.' in later.text
    assert f"This report is about {PRETTY[3]}, {PRETTY[4]}." in " ".join(later.text.split())
    assert (
        f"{PRETTY[0]}, {PRETTY[1]} and {PRETTY[2]} came in another delivery (job {first.job_id}) "
        "and get a report of their own."
    ) in " ".join(later.text.split())
    assert "asked your mail server" not in later.text
    assert "delivered it in parts" in early.html and "delivered it in parts" in later.html
    assert f"  not  {PRETTY[3]}: over smtp.max_recipients (452), left for another delivery" in shown


async def test_the_rest_delivered_at_once_both_reports_name_the_other_part(
    tmp_path: Path, slow_simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, slow_simulator, smtp={"max_recipients": 3})
    try:
        mta = QueueingClient(gw.smtp_port, _mail(), [f"{n}@fax.local" for n in NUMBERS])
        first, second = await mta.attempt(), await mta.attempt()
        assert mta.queued == []
        one = await wait_until(lambda: _one(tmp_path, first.job_id), timeout=15)
        two = await wait_until(lambda: _one(tmp_path, second.job_id), timeout=15)
    finally:
        await gw.stop()
    flat_one, flat_two = " ".join(one.text.split()), " ".join(two.text.split())
    assert f"{PRETTY[3]} and {PRETTY[4]} came in another delivery (job {second.job_id})" in flat_one
    assert "asked your mail server" not in flat_one
    assert (
        f"{PRETTY[0]}, {PRETTY[1]} and {PRETTY[2]} came in another delivery (job {first.job_id})" in flat_two
    )


async def test_a_mail_sent_twice_to_the_same_numbers_is_no_split(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same Message-ID again (a client that resent after a lost 250) is not a part."""
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, smtp={"max_recipients": 3})
    try:
        data = pdf_mail(to=f"{NUMBERS[0]}@fax.local").as_bytes(policy=email.policy.SMTP)
        first = await QueueingClient(gw.smtp_port, data, [f"{NUMBERS[0]}@fax.local"]).attempt()
        again = await QueueingClient(gw.smtp_port, data, [f"{NUMBERS[0]}@fax.local"]).attempt()
        await wait_until(lambda: _one(tmp_path, first.job_id) and _one(tmp_path, again.job_id), timeout=10)
        reports = [_one(tmp_path, first.job_id), _one(tmp_path, again.job_id)]
    finally:
        await gw.stop()
    assert all("in parts" not in r.text for r in reports)

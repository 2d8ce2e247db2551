"""Reports through a real SMTP relay (tests/sink.py), who gets them, and which ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Unpack

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import ALICE, MAILBOXES, MailFields, make_pdf, pdf_mail, sim_post, smtp_send
from tests.e2e.tracking_helpers import job_state, reports_for, start_gateway
from tests.helpers import wait_until
from tests.sink import SmtpSink


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    relay = await SmtpSink().start()
    yield relay
    await relay.stop()


def relay_at(sink: SmtpSink) -> dict[str, object]:
    return {"host": sink.host, "port": sink.port, "tls": "none"}


async def send(gw: Gateway, **kwargs: Unpack[MailFields]) -> str:
    result = await smtp_send(gw.smtp_port, pdf_mail(**kwargs))
    assert result.code == 250, result
    return result.job_id


async def _report_job(gw: Gateway, ref: str, state: JobState, *, with_error: bool = False) -> bool:
    assert gw.store is not None
    job = await gw.store.find_job(JobKind.REPORT, ref)
    return job is not None and job.state is state and (bool(job.last_error) or not with_error)


async def test_report_goes_through_the_relay_with_a_null_sender(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink))
    try:
        job_id = await send(gw)
        [got] = await wait_until(lambda: sink.messages)
        assert got.mail_from == "<>" and got.rcpt_tos == ["alice@example.com"]
        assert got.message["Subject"] == "Fax delivered: Contract"
        assert got.message["In-Reply-To"] == "<original-1@example.com>"
        assert got.message["Auto-Submitted"] == "auto-replied"
        assert got.message["From"] == "Fax gateway <fax-gateway@fax.local>"
        assert b"\r\n" in got.data
        await wait_until(lambda: _report_job(gw, job_id, JobState.DONE))
    finally:
        await gw.stop()
    assert len(sink.messages) == 1 and reports_for(tmp_path, job_id) == []


async def test_relay_down_then_up_delivers_the_report_once(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink))
    await sink.stop()  # the relay is down
    try:
        job_id = await send(gw)
        await wait_until(lambda: _report_job(gw, job_id, JobState.DEFERRED, with_error=True))
        assert gw.store is not None
        job = await gw.store.find_job(JobKind.REPORT, job_id)
        assert job is not None and "cannot be reached" in (job.last_error or "")
        await sink.start()  # back on the same port
        await wait_until(lambda: _report_job(gw, job_id, JobState.DONE), timeout=5)
    finally:
        await gw.stop()
    assert [m.message["Subject"] for m in sink.messages] == ["Fax delivered: Contract"]


async def test_relay_answering_4xx_is_retried(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink.fail_data = "451 4.3.0 try again later"
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink))
    try:
        job_id = await send(gw)
        await wait_until(lambda: _report_job(gw, job_id, JobState.DEFERRED, with_error=True))
        sink.fail_data = None
        await wait_until(lambda: _report_job(gw, job_id, JobState.DONE))
    finally:
        await gw.stop()
    assert len(sink.messages) == 1


async def test_relay_answering_550_drops_the_report_without_a_retry_loop(
    tmp_path: Path,
    simulator: RunningSimulator,
    sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    sink.fail_rcpt["alice@example.com"] = "550 5.1.1 no such user"
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink))
    try:
        job_id = await send(gw)
        await wait_until(lambda: _report_job(gw, job_id, JobState.FAILED))
        assert gw.store is not None
        job = await gw.store.find_job(JobKind.REPORT, job_id)
        assert job is not None and job.attempts == 1 and "550" in (job.last_error or "")
        assert gw.metrics.reports_sent._value.get() == 0
    finally:
        await gw.stop()
    assert sink.messages == []
    refused = [r for r in caplog.records if "refused by the relay" in r.getMessage()]
    assert len(refused) == 1
    ours = [r for r in caplog.records if r.name.startswith("gateway.workers")]
    assert all("alice@example.com" not in r.getMessage() for r in ours)  # masked (the audit log is whole)


async def test_a_mailbox_wanting_failures_only_gets_no_success_report(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mailboxes = [{**MAILBOXES[0], "reports": "failures"}, MAILBOXES[1]]
    gw = await start_gateway(tmp_path, simulator, mailboxes=mailboxes)
    try:
        ok = await send(gw)
        await wait_until(lambda: _report_job(gw, ok, JobState.DONE))
        assert gw.store is not None
        assert any(e.action == "report not sent" for e in await gw.store.events(ok))
        busy = await send(gw, to="13235550000@fax.local")
        await wait_until(lambda: reports_for(tmp_path, busy))
    finally:
        await gw.stop()
    assert reports_for(tmp_path, ok) == []
    assert [r.message["Subject"] for r in reports_for(tmp_path, busy)] == ["Fax failed: Contract"]


async def test_a_refused_submission_gets_a_failure_report(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "POST", "path": "/faxes", "kind": "status", "status": 400, "count": 1},
    )
    gw = await start_gateway(tmp_path, simulator)
    try:
        job_id = await send(gw)
        [report] = await wait_until(lambda: reports_for(tmp_path, job_id))
        assert await job_state(gw, JobKind.DISPATCH, job_id) is JobState.FAILED
        await wait_until(lambda: _report_job(gw, f"{job_id}:not-sent", JobState.DONE))
    finally:
        await gw.stop()
    assert report.message["Subject"] == "Fax failed: Contract"
    assert "was not sent" in report.text and "Reason: " in report.text
    assert report.sender == "<>" and report.message["In-Reply-To"] == "<original-1@example.com>"
    assert len(reports_for(tmp_path, job_id)) == 1


@pytest.mark.parametrize(
    ("sender", "reply_to", "report_to"),
    [
        (ALICE, "someone@outside.example", ALICE),  # behind a trusted MTA: not out of the organisation
        (ALICE, "Bob <bob@example.com>", "bob@example.com"),  # one of the mailbox's senders
        ("mfp@scan.example.com", "desk@scan.example.com", "desk@scan.example.com"),  # a scanner's desk
        ("mfp@scan.example.com", "carol@staff.example.org", "mfp@scan.example.com"),
    ],
)
async def test_a_reply_to_is_followed_only_when_it_is_one_of_the_mailbox_senders(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    sender: str,
    reply_to: str,
    report_to: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator)
    try:
        mail = pdf_mail(sender=sender)
        mail["Reply-To"] = reply_to
        result = await smtp_send(gw.smtp_port, mail, sender=sender)
        assert result.code == 250, result
        [report] = await wait_until(lambda: reports_for(tmp_path, result.job_id))
        assert gw.store is not None
        stored = await gw.store.message(result.job_id)
    finally:
        await gw.stop()
    assert report.to == [report_to] and report.sender == "<>"
    assert report.message["To"] == report_to
    assert stored is not None and stored.report_to == report_to
    assert report.message["Subject"] == "Fax delivered: Contract"


async def test_no_report_to_an_address_outside_the_senders(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mailbox was narrowed after the mail was accepted: its sender is no longer allowed."""
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator)
    try:
        job_id = await send(gw)
        assert gw.store is not None
        await wait_until(lambda: gw.store.faxes(job_id))  # type: ignore[union-attr]
        gw.settings.mailboxes[0].senders = ["bob@example.com"]
        await wait_until(lambda: _report_job(gw, job_id, JobState.DONE))
        assert gw.store is not None
        events = [e for e in await gw.store.events(job_id) if e.action == "report not sent"]
    finally:
        await gw.stop()
    assert reports_for(tmp_path, job_id) == []
    assert len(events) == 1 and "senders" in events[0].detail


async def test_the_report_mails_tell_small_truths(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eFax counts the cover page; one attempt is not "retried"; UTC is named once; the From:
    has a name (relay.from_name)."""
    monkeypatch.chdir(tmp_path)
    relay = {**relay_at(sink), "from_address": "fax@praxis.example", "from_name": "Praxis Fax"}
    gw = await start_gateway(tmp_path, simulator, relay=relay)
    try:
        ok = await send(gw, pdf=make_pdf(2))  # with its text: a cover page, then 2 pages
        busy = await send(gw, to="13235550000@fax.local")  # the simulator: busy, one attempt listed
        await wait_until(lambda: len(sink.messages) == 2, timeout=10)
    finally:
        await gw.stop()
    by_job = {m.message["X-Fax-Gateway-Job"]: m.message for m in sink.messages}
    delivered, failed = by_job[ok], by_job[busy]
    assert delivered["From"] == failed["From"] == "Praxis Fax <fax@praxis.example>"
    text = delivered.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Pages: 3 (a cover page and 2 pages of your documents)" in text
    assert "Documents faxed (after a cover page):\n  1. contract.pdf (pdf, 2 pages)" in text
    assert " UTC\n" in text and "UTC (UTC)" not in text and "Times are in UTC." in text
    text = failed.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Attempts: 1" in text and "eFax tried once; this result is final." in text
    assert "already retried" not in text

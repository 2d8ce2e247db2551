"""Acting on a fax by replying to its report, end to end: real SMTP in (the report's
Reply-To), the simulator as eFax, a real SMTP relay (tests/sink.py) for reports and answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import RunningSimulator, start_simulator
from gateway.store.base import JobKind
from tests.e2e.conftest import ALICE, pdf_mail, sim_post, smtp_send
from tests.e2e.tracking_helpers import start_gateway
from tests.helpers import wait_until
from tests.sink import Received, SmtpSink

BUSY = "13235550000@fax.local"  # the simulator's always-busy number (E41)


def relay_at(sink: SmtpSink) -> dict[str, object]:
    return {"host": sink.host, "port": sink.port, "tls": "none"}


def reply(to: str, text: str, *, sender: str = ALICE, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Re: Fax failed: Contract"
    msg["Message-ID"] = "<reply-1@example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{text}\n\nOn Thu, the gateway wrote:\n> Fax failed\n")
    return msg


def subjects(sink: SmtpSink) -> list[str]:
    return [str(m.message["Subject"]) for m in sink.messages]


async def next_mail(sink: SmtpSink, count: int, timeout: float = 15) -> Received:
    await wait_until(lambda: len(sink.messages) >= count, timeout=timeout)
    return sink.messages[count - 1]


async def failed_report(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, **overrides: Any
) -> tuple[Gateway, str, str]:
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink), **overrides)
    result = await smtp_send(gw.smtp_port, pdf_mail(to=BUSY))
    assert result.code == 250, result
    report = await next_mail(sink, 1)
    assert report.message["Subject"] == "Fax failed: Contract"
    reply_to = str(report.message["Reply-To"])
    assert reply_to.startswith("fax-gateway+") and reply_to.endswith("@fax.local")
    return gw, result.job_id, reply_to


async def test_retry_by_reply_sends_a_failed_fax_again_once_with_its_own_report(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, job_id, reply_to = await failed_report(tmp_path, simulator, sink)
    try:
        assert "reply to this mail" in str(sink.messages[0].message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        await sim_post(simulator, "/_sim/outcomes", {"suffix": "0000", "error_code": None})  # not busy now
        taken = await smtp_send(gw.smtp_port, reply(reply_to, "Retry please"))
        assert taken.code == 250 and "retry" in taken.text, taken
        answer = await next_mail(sink, 2)
        assert answer.mail_from == "<>" and answer.rcpt_tos == [ALICE]
        assert answer.message["Subject"] == "Fax retry: Contract"
        assert answer.message["In-Reply-To"] == "<reply-1@example.com>"
        text = str(answer.message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert "Sent again to +1 323-555-0000" in text
        new_job = text.split("job ", 1)[1].split(";", 1)[0]
        report = await next_mail(sink, 3)
        assert report.message["Subject"] == "Fax delivered: Contract"
        assert report.message["X-Fax-Gateway-Job"] == new_job != job_id
        assert report.message["In-Reply-To"] == "<original-1@example.com>"  # threaded as before
        assert len(simulator.state.sent_faxes()) == 2  # one new attempt

        again = await smtp_send(gw.smtp_port, reply(reply_to, "retry"))
        assert (again.code, again.stage) == (550, "rcpt") and "5.1.1" in again.text  # works once
        assert gw.store is not None
        story = [e.action for e in await gw.store.events(job_id)]
        assert "reply" in story and "new attempt" in story and "answer sent" in story
    finally:
        await gw.stop()
    await asyncio.sleep(0.3)
    assert len(simulator.state.sent_faxes()) == 2 and len(sink.messages) == 3


async def test_a_stolen_token_an_unknown_one_and_an_expired_one_are_refused_at_smtp_time(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, _, reply_to = await failed_report(tmp_path, simulator, sink, replies={"window_s": 2.0})
    try:
        # bob may fax from the same mailbox, but the fax is alice's
        bob = await smtp_send(
            gw.smtp_port, reply(reply_to, "retry", sender="bob@example.com"), sender="bob@example.com"
        )
        assert (
            (bob.code, bob.stage) == (550, "rcpt") and "5.7.1" in bob.text and "Only the sender" in bob.text
        )
        # an envelope of alice's with bob's From: is refused at DATA
        forged = await smtp_send(gw.smtp_port, reply(reply_to, "retry", sender="bob@example.com"))
        assert (forged.code, forged.stage) == (550, "data") and "5.7.1" in forged.text
        stranger = await smtp_send(
            gw.smtp_port, reply(reply_to, "retry", sender="eve@evil.example"), sender="eve@evil.example"
        )
        assert stranger.code == 550 and stranger.stage == "mail"
        unknown = await smtp_send(gw.smtp_port, reply("fax-gateway+" + "a" * 32 + "@fax.local", "retry"))
        assert (unknown.code, unknown.stage) == (550, "rcpt") and "5.1.1" in unknown.text
        mixed = await smtp_send(
            gw.smtp_port, reply(reply_to, "retry"), rcpts=["13235551212@fax.local", reply_to]
        )
        assert mixed.code == 452 and mixed.stage == "rcpt"
        await asyncio.sleep(2.1)
        expired = await smtp_send(gw.smtp_port, reply(reply_to, "retry"))
        assert (expired.code, expired.stage) == (550, "rcpt") and "5.1.1" in expired.text
        await asyncio.sleep(0.3)
        assert gw.store is not None
        assert await gw.store.jobs(kind=JobKind.REPLY) == []
    finally:
        await gw.stop()
    assert subjects(sink) == ["Fax failed: Contract"]  # no backscatter, no answer
    assert len(simulator.state.sent_faxes()) == 1


async def test_another_word_gets_the_list_of_words_and_the_token_still_works(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, _, reply_to = await failed_report(tmp_path, simulator, sink)
    try:
        auto = await smtp_send(gw.smtp_port, reply(reply_to, "retry", Auto_Submitted="auto-replied"))
        assert auto.code == 250 and "automatic" in auto.text  # an out-of-office notice: nothing done
        taken = await smtp_send(gw.smtp_port, reply(reply_to, "Thanks!"))
        assert taken.code == 250
        answer = await next_mail(sink, 2)
        assert answer.message["Subject"] == "Fax reply not understood: Contract"
        text = str(answer.message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert "retry:" in text and "cancel:" in text
        again = await smtp_send(gw.smtp_port, reply(reply_to, "retry"))
        assert again.code == 250
        assert (await next_mail(sink, 3)).message["Subject"] == "Fax retry: Contract"
    finally:
        await gw.stop()


@pytest.fixture
async def slow_simulator() -> AsyncIterator[RunningSimulator]:
    sim = await start_simulator(SimulatorConfig(complete_after_s=60))
    yield sim
    await sim.stop()


async def test_cancel_by_reply_to_the_not_yet_confirmed_notice_then_the_truth(
    tmp_path: Path, slow_simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(
        tmp_path, slow_simulator, relay=relay_at(sink), tracking={"unconfirmed_after_s": 0.5}
    )
    try:
        result = await smtp_send(gw.smtp_port, pdf_mail())
        assert result.code == 250
        notice = await next_mail(sink, 1)
        assert notice.message["Subject"] == "Fax not yet confirmed: Contract"
        taken = await smtp_send(gw.smtp_port, reply(str(notice.message["Reply-To"]), "CANCEL"))
        assert taken.code == 250 and "cancel" in taken.text
        answer = await next_mail(sink, 2)
        assert answer.message["Subject"] == "Fax cancel requested: Contract"
        final = await next_mail(sink, 3)
        assert final.message["Subject"] == "Fax cancelled: Contract"
        assert gw.store is not None
        events = await gw.store.events(result.job_id)
        assert any(e.action == "cancel" and "reply from alice@example.com" in e.detail for e in events)
    finally:
        await gw.stop()
    [fax] = slow_simulator.state.sent_faxes()
    assert fax.cancel_at is not None


async def test_retry_by_reply_releases_a_held_fax_as_queue_retry_does(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # The connection drops before eFax did anything: the gateway cannot know that, and holds it.
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop", "count": 1}
    )
    dispatch = {"reconcile_window_s": 1.5, "reconcile_every_s": 0.3}
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink), dispatch=dispatch)
    try:
        result = await smtp_send(gw.smtp_port, pdf_mail())
        assert result.code == 250
        held = await next_mail(sink, 1)
        assert str(held.message["Subject"]).startswith("Fax not confirmed by eFax, not sent again")
        taken = await smtp_send(gw.smtp_port, reply(str(held.message["Reply-To"]), "retry"))
        assert taken.code == 250
        answer = await next_mail(sink, 2)
        assert answer.message["Subject"] == "Fax retry: Contract"
        text = " ".join(str(answer.message.get_body(("plain",)).get_content()).split())  # type: ignore[union-attr]
        assert "will have it twice" in text
        final = await next_mail(sink, 3)
        assert final.message["Subject"] == "Fax delivered: Contract"
        assert final.message["X-Fax-Gateway-Job"] == result.job_id  # the same job, released
        assert gw.store is not None
        assert "released" in [e.action for e in await gw.store.events(result.job_id)]
    finally:
        await gw.stop()
    assert len(simulator.state.sent_faxes()) == 1


async def test_over_smtp_auth_the_signed_in_sender_may_reply_and_others_may_not(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.conftest import USER_PASSWORD
    from tests.e2e.security_helpers import ALICE_NUMBER, USER_HASH, make_certs, secure_settings, send

    monkeypatch.chdir(tmp_path)
    certs = make_certs(tmp_path)
    users = [
        {"name": "alice", "password_hash": USER_HASH, "mailboxes": [ALICE_NUMBER]},
        {"name": "bob", "password_hash": USER_HASH, "mailboxes": [ALICE_NUMBER]},
    ]
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        users=users,
        relay=relay_at(sink),
        tracking={"first_check_s": 0.05, "max_interval_s": 0.2},
    )
    gw = Gateway(settings)
    await gw.start()
    try:
        fax = pdf_mail(to=BUSY).as_bytes()
        sent = await asyncio.to_thread(
            send,
            gw.smtp_port,
            fax,
            sender=ALICE,
            rcpts=[BUSY],
            context=certs.client,
            user=("alice", USER_PASSWORD),
        )
        assert sent.code == 250, sent
        reply_to = str((await next_mail(sink, 1)).message["Reply-To"])
        unsigned = await asyncio.to_thread(
            send,
            gw.smtp_port,
            reply(reply_to, "retry").as_bytes(),
            sender=ALICE,
            rcpts=[reply_to],
            context=certs.client,
        )
        assert (unsigned.code, unsigned.stage) == (530, "mail")
        bob = await asyncio.to_thread(
            send,
            gw.smtp_port,
            reply(reply_to, "retry", sender="bob@example.com").as_bytes(),
            sender="bob@example.com",
            rcpts=[reply_to],
            context=certs.client,
            user=("bob", USER_PASSWORD),
        )
        assert (bob.code, bob.stage) == (550, "rcpt") and "Only the sender" in bob.text
        alice = await asyncio.to_thread(
            send,
            gw.smtp_port,
            reply(reply_to, "retry").as_bytes(),
            sender=ALICE,
            rcpts=[reply_to],
            context=certs.client,
            user=("alice", USER_PASSWORD),
        )
        assert alice.code == 250, alice
        assert (await next_mail(sink, 2)).message["Subject"] == "Fax retry: Contract"
    finally:
        await gw.stop()


async def test_an_answer_the_relay_defers_is_sent_later_without_acting_twice(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw, job_id, reply_to = await failed_report(tmp_path, simulator, sink)
    try:
        sink.fail_data = "451 4.3.0 try again later"
        taken = await smtp_send(gw.smtp_port, reply(reply_to, "retry"))
        assert taken.code == 250
        assert gw.store is not None
        store = gw.store

        async def deferred() -> bool:
            jobs = await store.jobs(kind=JobKind.REPLY)
            return bool(jobs) and jobs[0].attempts >= 2

        await wait_until(deferred, timeout=10)
        sink.fail_data = None
        subjects_now = await wait_until(lambda: "Fax retry: Contract" in subjects(sink) or None, timeout=10)
        assert subjects_now
        await wait_until(lambda: len(sink.messages) >= 3, timeout=15)  # the new attempt's report
        attempts = [e for e in await store.events(job_id) if e.action == "new attempt"]
        assert len(attempts) == 1
    finally:
        await gw.stop()
    assert len(simulator.state.sent_faxes()) == 2


async def test_cancel_by_reply_to_a_held_notice_stops_it_before_any_resend(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop", "count": 1}
    )
    dispatch = {"reconcile_window_s": 1.5, "reconcile_every_s": 0.3}
    gw = await start_gateway(tmp_path, simulator, relay=relay_at(sink), dispatch=dispatch)
    try:
        assert (await smtp_send(gw.smtp_port, pdf_mail())).code == 250
        held = await next_mail(sink, 1)
        taken = await smtp_send(gw.smtp_port, reply(str(held.message["Reply-To"]), "cancel"))
        assert taken.code == 250
        answer = await next_mail(sink, 2)
        assert answer.message["Subject"] == "Fax cancelled: Contract"
        await asyncio.sleep(0.5)
    finally:
        await gw.stop()
    assert simulator.state.sent_faxes() == [] and len(sink.messages) == 2

"""Received faxes to the mapped inboxes, exactly once: simulator -> gateway -> SMTP sink, all real."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE, ALICE_USER, SCANNER_USER, make_pdf, requests_to, sim_get, sim_post
from tests.e2e.inbound_helpers import (
    ADMIN,
    BOB,
    FROM,
    FRONTDESK,
    done,
    fax_id,
    mailboxes,
    ok_patches,
    poller,
    receive,
    running,
    settings,
)
from tests.helpers import wait_until
from tests.process import GatewayProcess, write_config
from tests.sink import SmtpSink


async def test_250_received_faxes_on_three_pages_are_each_mailed_and_patched_once(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, simulator, sink, inbound={"workers": 4}, mailboxes=mailboxes([ALICE]))
    async with running(config, monkeypatch, tmp_path) as gw:
        since = len(await requests_to(simulator, "GET", "/faxes/received")())
        ids = await receive(simulator, ALICE_USER, count=250)
        assert await poller(gw).poll_once(ALICE_USER) == 250
        await wait_until(done(gw, 250), timeout=30)
        lists = (await requests_to(simulator, "GET", "/faxes/received")())[since:]
    assert len(lists) == 4  # offset 0, the probe at 1 (it counts records), 101, 201: each fax once
    assert sorted(fax_id(m) for m in sink.messages) == sorted(ids)
    assert len({m.message["Message-ID"] for m in sink.messages}) == 250
    assert all(m.rcpt_tos == [ALICE] and m.mail_from == FROM for m in sink.messages)
    assert sorted(await ok_patches(simulator)) == sorted(ids)
    assert len(await requests_to(simulator, "PATCH", "/faxes/{id}/metadata")()) == 250
    assert all(f["image_downloaded"] for f in await sim_get(simulator, "/_sim/faxes", direction="INBOUND"))
    assert await requests_to(simulator, "DELETE", "/faxes/{id}")() == []  # retention "keep"


async def test_relay_down_for_a_while_then_every_fax_arrives_once(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, simulator, sink, mailboxes=mailboxes([ALICE, BOB]))
    async with running(config, monkeypatch, tmp_path) as gw:
        await sink.stop()
        ids = await receive(simulator, ALICE_USER, count=5)
        await poller(gw).poll_once()

        async def all_retried() -> bool:
            assert gw.store is not None
            jobs = await gw.store.jobs(kind="deliver")  # type: ignore[arg-type]
            return len(jobs) == 5 and all(j.attempts >= 2 and j.last_error for j in jobs)

        await wait_until(all_retried, timeout=10)
        assert await ok_patches(simulator) == []  # nothing is marked before it was mailed
        await sink.start()  # same port: the relay is back
        await wait_until(done(gw, 5), timeout=10)
    assert sorted(fax_id(m) for m in sink.messages) == sorted(ids)
    assert all(sorted(m.rcpt_tos) == [ALICE, BOB] for m in sink.messages)
    assert sorted(await ok_patches(simulator)) == sorted(ids)


async def test_two_mailboxes_never_cross(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, simulator, sink, mailboxes=mailboxes([ALICE, BOB]))
    async with running(config, monkeypatch, tmp_path) as gw:
        alices = await receive(simulator, ALICE_USER, count=3)
        scanners = await receive(simulator, SCANNER_USER, count=2, to_number="13235550200")
        assert await poller(gw).poll_once() == 5
        await wait_until(done(gw, 5))
    by_fax = {fax_id(m): m for m in sink.messages}
    assert len(sink.messages) == 5 and sorted(by_fax) == sorted(alices + scanners)
    for fid in alices:
        assert sorted(by_fax[fid].rcpt_tos) == [ALICE, BOB]
        assert by_fax[fid].message["To"] == f"{ALICE}, {BOB}"
    for fid in scanners:
        assert by_fax[fid].rcpt_tos == [FRONTDESK]
        assert ALICE_USER not in by_fax[fid].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_the_mail_names_caller_pages_and_carries_the_pdf(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make_pdf(pages=3, marker="the received fax")
    config = settings(tmp_path, simulator, sink, mailboxes=mailboxes([ALICE]), timezone="America/New_York")
    async with running(config, monkeypatch, tmp_path) as gw:
        [fid] = await receive(simulator, ALICE_USER, pdf_base64=base64.b64encode(pdf).decode(), tsid="ACME")
        await poller(gw).poll_once()
        await wait_until(done(gw, 1))
    [mail] = sink.messages
    msg = mail.message
    assert msg["Subject"] == "Fax from +1 323-555-1212 (3 pages)"
    assert msg["From"] == f"Fax gateway <{FROM}>" and mail.mail_from == FROM  # the envelope: bare
    assert msg["Message-ID"] == f"<fax.{fid}@gw.example.com>"
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content() == pdf
    filename = attachment.get_filename()
    assert filename is not None
    assert filename.startswith("fax-") and filename.endswith("-from-13235551212.pdf")
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "ACME" in text and fid in text and ALICE_USER in text and "America/New_York" in text
    assert " EST (America/New_York)" in text or " EDT (America/New_York)" in text


async def test_a_refused_address_does_not_block_the_others_and_the_admin_is_told(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.fail_rcpt[BOB] = "550 5.1.1 <bob@example.com>: no such user"
    config = settings(
        tmp_path, simulator, sink, mailboxes=mailboxes([ALICE, BOB], retention="delete_after_delivery")
    )
    async with running(config, monkeypatch, tmp_path) as gw:
        [fid] = await receive(simulator, ALICE_USER)
        await poller(gw).poll_once()
        await wait_until(done(gw, 1))
    [fax_mail] = sink.to(ALICE)
    assert fax_id(fax_mail) == fid and fax_mail.rcpt_tos == [ALICE]
    [notice] = sink.to(ADMIN)
    assert notice.mail_from == "<>"  # a notice cannot bounce back into the gateway
    assert BOB in notice.message.get_content() and fid in notice.message.get_content()
    assert len(sink.messages) == 2
    assert await ok_patches(simulator) == [fid]
    assert await requests_to(simulator, "DELETE", "/faxes/{id}")() == []  # Bob never got it: kept


async def test_one_mail_each_when_the_mailbox_says_separately_and_delete_after_delivery(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mailboxes([ALICE, BOB], deliver_mode="separately", retention="delete_after_delivery")
    config = settings(tmp_path, simulator, sink, mailboxes=box)
    async with running(config, monkeypatch, tmp_path) as gw:
        [fid] = await receive(simulator, ALICE_USER)
        await poller(gw).poll_once()
        await wait_until(done(gw, 1))
    assert sorted((m.rcpt_tos[0], m.message["To"]) for m in sink.messages) == [(ALICE, ALICE), (BOB, BOB)]
    assert {m.message["Message-ID"] for m in sink.messages} == {f"<fax.{fid}@gw.example.com>"}
    deletes = await requests_to(simulator, "DELETE", "/faxes/{id}")()
    assert [d["path"] for d in deletes] == [f"/faxes/{fid}"]
    [gone] = await sim_get(simulator, "/_sim/faxes", direction="INBOUND")
    assert gone["deleted"] and gone["image_downloaded"]


async def test_a_fax_larger_than_the_relay_takes_is_announced_not_dropped(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = make_pdf(pages=60, marker="x" * 20_000)
    config = settings(
        tmp_path,
        simulator,
        sink,
        mailboxes=mailboxes([ALICE], retention="delete_after_delivery"),
        relay={"max_message_bytes": 20_000},
    )
    async with running(config, monkeypatch, tmp_path) as gw:
        [fid] = await receive(simulator, ALICE_USER, pdf_base64=base64.b64encode(big).decode())
        await poller(gw).poll_once()
        await wait_until(done(gw, 1))
        assert gw.store is not None
        assert await gw.store.received_image(fid) == big  # kept in the gateway's database
    [notice] = sink.messages
    assert notice.rcpt_tos == [ALICE]
    assert list(notice.message.iter_attachments()) == []
    assert notice.message["Subject"].endswith("too large to attach")
    text = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert fid in text and "eFax" in text and "too large" in text
    assert await ok_patches(simulator) == [fid]
    assert await requests_to(simulator, "DELETE", "/faxes/{id}")() == []  # kept at eFax too


def deliver_state(db: Path, fid: str) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT state FROM jobs WHERE kind = 'deliver' AND ref = ?", (fid,)).fetchone()
    return None if row is None else str(row[0])


async def test_serve_killed_between_the_relays_250_and_the_patch_mails_once(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink
) -> None:
    [fid] = await receive(simulator, ALICE_USER)
    # The PATCH hangs, so the kill lands after the relay's 250 and before eFax heard of it.
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "PATCH", "path": "/faxes/{id}/metadata", "kind": "slow", "delay_s": 60},
    )
    config = write_config(
        tmp_path / "gateway.toml",
        f"""
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[database]
url = "sqlite:///{tmp_path}/gateway.db"
[efax]
base_url = "{simulator.base_url}"
app_id = "inbound-crash"
api_key = "inbound-crash-key"
[relay]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
[dispatch]
poll_idle_s = 0.05
backoff_initial_s = 0.05
backoff_max_s = 0.2
[[mailboxes]]
user_id = "{ALICE_USER}"
fax_number = "13235550100"
senders = ["{ALICE}"]
deliver_to = ["{ALICE}"]
""",
    )
    first = GatewayProcess(config, cwd=tmp_path)
    try:
        await asyncio.to_thread(first.start)
        await wait_until(lambda: len(sink.messages) == 1, timeout=20)
        await wait_until(requests_to(simulator, "PATCH", f"/faxes/{fid}/metadata"), timeout=10)
        await asyncio.to_thread(first.kill)
    finally:
        await asyncio.to_thread(first.kill)
    second = GatewayProcess(config, cwd=tmp_path)
    try:
        await asyncio.to_thread(second.start)
        await wait_until(lambda: ok_patches(simulator), timeout=20)
        await wait_until(lambda: deliver_state(tmp_path / "gateway.db", fid) == "done", timeout=10)
        assert await asyncio.to_thread(second.terminate) == 0
    finally:
        await asyncio.to_thread(second.kill)
    assert len(sink.messages) == 1, second.output()
    assert "action=recovered" in second.output()  # taken back at once, not after the 300 s lease
    assert await ok_patches(simulator) == [fid]


async def test_serve_killed_while_the_relay_takes_its_time_to_answer_250_mails_the_fax_again(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink
) -> None:
    """The window docs/inbound.md describes: the relay has the mail, its 250 is slow to
    come, serve is killed meanwhile. The restarted gateway cannot know the relay kept it,
    so the fax is mailed again, with the same Message-ID; it is PATCHed once."""
    [fid] = await receive(simulator, ALICE_USER)
    sink.data_delay_s = 30.0  # the whole window: as long as the relay's answer takes
    config = write_config(
        tmp_path / "gateway.toml",
        f"""
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[database]
url = "sqlite:///{tmp_path}/gateway.db"
[efax]
base_url = "{simulator.base_url}"
app_id = "inbound-slow-relay"
api_key = "inbound-slow-relay-key"
[relay]
host = "127.0.0.1"
port = {sink.port}
tls = "none"
[dispatch]
poll_idle_s = 0.05
backoff_initial_s = 0.05
backoff_max_s = 0.2
[[mailboxes]]
user_id = "{ALICE_USER}"
fax_number = "13235550100"
senders = ["{ALICE}"]
deliver_to = ["{ALICE}"]
""",
    )
    first = GatewayProcess(config, cwd=tmp_path)
    try:
        await asyncio.to_thread(first.start)
        await wait_until(lambda: len(sink.messages) == 1, timeout=20)  # the relay has it ...
        await asyncio.sleep(1.0)  # ... and a second later still has not answered
        await asyncio.to_thread(first.kill)
    finally:
        await asyncio.to_thread(first.kill)
    assert await ok_patches(simulator) == []
    sink.data_delay_s = 0.0
    second = GatewayProcess(config, cwd=tmp_path)
    try:
        await asyncio.to_thread(second.start)
        await wait_until(lambda: ok_patches(simulator), timeout=20)
        assert await asyncio.to_thread(second.terminate) == 0
    finally:
        await asyncio.to_thread(second.kill)
    first_copy, second_copy = sink.messages
    assert first_copy.message["Message-ID"] == second_copy.message["Message-ID"] == f"<fax.{fid}@fax.local>"
    assert await ok_patches(simulator) == [fid]


async def test_a_429_on_the_list_is_recorded_and_the_next_read_gets_every_fax(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, simulator, sink, mailboxes=mailboxes([ALICE]))
    async with running(config, monkeypatch, tmp_path) as gw:
        assert gw.store is not None
        ids = await receive(simulator, ALICE_USER, count=3)
        fault = {"method": "GET", "path": "/faxes/received", "kind": "rate_limit", "retry_after": 120}
        await sim_post(simulator, "/_sim/faults", fault)
        assert await poller(gw).poll_once(ALICE_USER) == 0
        [failed] = [p for p in await gw.store.polls() if p.user_id == ALICE_USER]
        assert (
            failed.last_error
            and failed.last_try_at
            and failed.last_ok_at
            and failed.last_ok_at < failed.last_try_at
        )
        assert await poller(gw).poll_once(ALICE_USER) == 3
        await wait_until(done(gw, 3))
        [ok] = [p for p in await gw.store.polls() if p.user_id == ALICE_USER]
        assert ok.last_error is None
    assert sorted(fax_id(m) for m in sink.messages) == sorted(ids)

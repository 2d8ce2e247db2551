"""The watchdog over real SMTP and the simulator: one mail per incident, one when it is over."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import MAILBOXES, pdf_mail, smtp_send
from tests.e2e.tracking_helpers import all_tracked, start_gateway
from tests.helpers import wait_until

OPS = "ops@example.com"
WATCHDOG = {"failure_alert_after": 3, "watchdog_every_s": 0.1}


def incident_mails(tmp_path: Path) -> list[EmailMessage]:
    """The watchdog's mails in the test Maildir, oldest first."""
    new = tmp_path / "mail" / "new"
    found = []
    for path in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.is_dir() else []:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        if parsed["X-Fax-Incident"] is not None:
            found.append(parsed)
    return found


async def fax_to(gw: Gateway, number: str) -> str:
    result = await smtp_send(gw.smtp_port, pdf_mail(to=f"{number}@fax.local"), rcpts=[f"{number}@fax.local"])
    assert result.code == 250, result
    await wait_until(lambda: all_tracked(gw, result.job_id))
    return result.job_id


async def test_failures_in_a_row_mail_the_admins_once_and_once_when_over(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(tmp_path, simulator, admin_address=OPS, policy=WATCHDOG)
    try:
        for _ in range(2):
            await fax_to(gw, "13235550000")  # busy, every time
        assert gw.watchdog is not None
        await gw.watchdog.check()
        assert incident_mails(tmp_path) == []  # two in a row are no incident
        await fax_to(gw, "13235550000")
        alerts = await wait_until(lambda: incident_mails(tmp_path))
        assert len(alerts) == 1
        alert = alerts[0]
        assert alert["X-Fax-Incident"] == "failures opened"
        assert "3 faxes in a row failed" in str(alert["Subject"])
        assert alert["Return-Path"] == "<>" and OPS in str(alert["To"])
        await fax_to(gw, "13235550000")  # still failing: nothing more
        assert await gw.watchdog.check() == 0
        assert len(incident_mails(tmp_path)) == 1

        await fax_to(gw, "13235551212")  # delivered
        mails = await wait_until(lambda: len(incident_mails(tmp_path)) == 2 and incident_mails(tmp_path))
        assert mails[1]["X-Fax-Incident"] == "failures closed"
        assert "recovered" in str(mails[1]["Subject"])
        assert await gw.watchdog.check() == 0
    finally:
        await gw.stop()

    again = await start_gateway(tmp_path, simulator, admin_address=OPS, policy=WATCHDOG)
    try:  # a restart (or a second gateway on the same store) tells nothing twice
        assert again.watchdog is not None
        assert await again.watchdog.check() == 0
    finally:
        await again.stop()
    assert len(incident_mails(tmp_path)) == 2


async def test_the_mailbox_admins_are_told_too(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boxes = [{**dict(m), "admins": ["desk@example.com"]} for m in MAILBOXES]
    gw = await start_gateway(
        tmp_path, simulator, policy={"failure_alert_after": 1, "watchdog_every_s": 0.1}, mailboxes=boxes
    )
    try:
        await fax_to(gw, "13235550000")
        alerts = await wait_until(lambda: incident_mails(tmp_path))
        assert len(alerts) == 1 and str(alerts[0]["To"]) == "desk@example.com"
    finally:
        await gw.stop()


def digests(tmp_path: Path) -> list[EmailMessage]:
    new = tmp_path / "mail" / "new"
    found = []
    for path in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.is_dir() else []:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        if parsed["X-Fax-Digest"] is not None:
            found.append(parsed)
    return found


async def test_the_daily_digest_counts_the_day_and_goes_once(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boxes = [{**dict(m), "digest": True, "admins": ["desk@example.com"]} for m in MAILBOXES[:1]]
    gw = await start_gateway(tmp_path, simulator, admin_address=OPS, mailboxes=boxes)
    try:
        await fax_to(gw, "13235550000")  # busy
        await fax_to(gw, "13235551212")  # delivered
        assert gw.watchdog is not None
        today = datetime.now(gw.settings.zone).date()
        assert await gw.watchdog.send_digests(today) == 1
        assert await gw.watchdog.send_digests(today) == 0  # once a day
        # (the watchdog's first look mailed yesterday's, empty, at start)
        [digest] = [d for d in digests(tmp_path) if d["X-Fax-Digest"] == today.isoformat()]
        assert digest["Return-Path"] == "<>"
        assert str(digest["To"]) == f"{OPS}, desk@example.com"
        assert str(digest["Subject"]) == f"Fax mailbox 13235550100 on {today}: 2 sent, 1 failed, 0 received"
        text = digest.get_content()
        assert "Delivered:       1" in text and "Held mails:      0" in text
        assert "1 x " in text  # the failure's reason
    finally:
        await gw.stop()

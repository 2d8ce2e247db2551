"""The watchdog against a real SQLite store and a Maildir: a mailbox that stops receiving."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from gateway.mail.maildir import MaildirSink
from gateway.settings import load_settings
from gateway.store import open_store
from gateway.workers.watchdog import Watchdog

HOUR = 3600.0


async def test_a_mailbox_that_stops_receiving_is_told_once_and_once_when_faxes_come(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        {
            "database": {"url": f"sqlite:///{tmp_path}/gateway.db"},
            "efax": {"base_url": "http://127.0.0.1:9", "app_id": "a", "api_key": "k"},
            "admin_address": "ops@example.com",
            "inbound": {"silence_alert_h": 2, "silence_usual_faxes": 2},
            "mailboxes": [
                {"user_id": "u1", "fax_number": "13235550100", "admins": ["desk@example.com"]},
                {"user_id": "quiet", "fax_number": "13235550200"},  # never receives: never told
            ],
        },
    )
    store = await open_store(settings.database.url)
    sink = MaildirSink(tmp_path / "mail")
    now = 10 * HOUR
    dog = Watchdog(store, sink, settings, clock=lambda: now)
    try:
        for n, at in enumerate([now - 3 * HOUR, now - 2.5 * HOUR]):
            await store.record_received(user_id="u1", fax_id=f"r{n}", metadata={}, now=at)
        assert await dog.check() == 1
        assert await dog.check() == 0
        now += 5 * HOUR  # still silent, and no longer "usually receives": nothing more
        assert await dog.check() == 0
        await store.record_received(user_id="u1", fax_id="back", metadata={}, now=now - 1)
        assert await dog.check() == 1
        assert await dog.check() == 0
    finally:
        await store.close()
    mails = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted((tmp_path / "mail" / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    ]
    assert [m["X-Fax-Incident"] for m in mails] == ["silence opened", "silence closed"]
    assert mails[0]["To"] == "ops@example.com, desk@example.com"
    assert "no fax received for 2 hours" in mails[0]["Subject"]

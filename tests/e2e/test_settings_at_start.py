"""``serve``'s settings: built once and never changed after (the demo mailbox of the
built-in simulator goes into a copy), and a renamed key said once as it starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.app import DEMO_SENDER, Gateway
from gateway.settings import load_settings


async def test_the_settings_handed_in_are_not_changed_and_old_keys_are_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        None,
        {
            "smtp": {"listen": "127.0.0.1:0"},
            "http": {"listen": "127.0.0.1:0"},
            "database": {"url": f"sqlite:///{tmp_path}/gateway.db"},
            "relay": {"maildir": str(tmp_path / "mail")},
            "dispatch": {"poll_idle_s": 0.05},  # the old name of workers.poll_idle_s
        },
    )
    assert settings.efax.simulated and settings.mailboxes == []
    before = settings.model_dump()
    caplog.set_level(logging.WARNING, logger="gateway.app")
    async with Gateway(settings) as gw:
        assert [m.senders for m in gw.settings.mailboxes] == [[DEMO_SENDER]]  # the demo, in a copy
        assert gw.settings.workers.poll_idle_s == 0.05
    assert settings.mailboxes == [] and settings.model_dump() == before
    said = [r.getMessage() for r in caplog.records if "is now workers." in r.getMessage()]
    assert said == [
        "configuration: dispatch.poll_idle_s is now workers.poll_idle_s (it governs every worker); "
        "the old name still works for now: move it to [workers]"
    ]

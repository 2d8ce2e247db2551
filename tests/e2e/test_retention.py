"""Retention: after database.keep_days the bytes of a finished fax go, its record stays,
and a mail whose bytes are gone is never sent again."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import gateway_settings, make_pdf, pdf_mail, sim_get, sim_post, smtp_send
from tests.e2e.tracking_helpers import run_queue
from tests.helpers import wait_until

KEEP_S = 0.5


@pytest.fixture
async def keeping(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, database={"keep_days": KEEP_S / 86_400})
    async with Gateway(settings) as gw:
        yield gw


async def _dispatch(gw: Gateway, job_id: str) -> str:
    assert gw.store is not None
    job = await gw.store.find_job("dispatch", job_id)  # type: ignore[arg-type]
    return job.state if job is not None else ""


async def _purged(gw: Gateway, job_id: str) -> bool:
    assert gw.store is not None and gw.purger is not None
    gw.purger.nudge()
    stored = await gw.store.message(job_id)
    return stored is not None and stored.purged_at is not None


async def test_a_sent_fax_loses_its_bytes_after_keep_days_and_keeps_its_story(
    keeping: Gateway, simulator: RunningSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(pages=2, marker="kept a while")
    reply = await smtp_send(keeping.smtp_port, pdf_mail(pdf=pdf))
    assert reply.code == 250
    await wait_until(lambda: _done(keeping, reply.job_id), timeout=10)
    assert keeping.store is not None
    await wait_until(lambda: _purged(keeping, reply.job_id), timeout=10, interval=0.1)
    assert await keeping.store.raw_message(reply.job_id) == b""
    with sqlite3.connect(keeping.settings.database.url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT sum(length(content)) FROM documents").fetchone() == (0,)
    stored = await keeping.store.message(reply.job_id)
    assert stored is not None and stored.documents[0].size == len(pdf) and stored.subject == "Contract"
    assert "accepted" in [e.action for e in await keeping.store.events(reply.job_id)]
    capsys.readouterr()
    assert await run_queue(keeping, "show", reply.job_id) == 0
    shown = capsys.readouterr().out
    assert "document 1: contract.pdf (pdf -> PDF, 2 pages)" in shown
    assert "mail and documents deleted" in shown and "(database.keep_days)" in shown
    assert len(await sim_get(simulator, "/_sim/faxes")) == 1  # sent once, before, and only then


async def _done(gw: Gateway, job_id: str) -> bool:
    return await _dispatch(gw, job_id) == "done"


async def test_a_failed_fax_whose_bytes_are_gone_is_not_retried(
    keeping: Gateway, simulator: RunningSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "POST", "path": "/faxes", "kind": "status", "status": 400, "count": 1},
    )
    reply = await smtp_send(keeping.smtp_port, pdf_mail())
    assert reply.code == 250
    await wait_until(lambda: _failed(keeping, reply.job_id), timeout=10)
    await wait_until(lambda: _purged(keeping, reply.job_id), timeout=10, interval=0.1)

    assert await run_queue(keeping, "retry", reply.job_id) == 1
    assert "not queued again: its mail was deleted after database.keep_days" in capsys.readouterr().out
    assert await _dispatch(keeping, reply.job_id) == "failed"
    assert await sim_get(simulator, "/_sim/faxes") == []


async def _failed(gw: Gateway, job_id: str) -> bool:
    return await _dispatch(gw, job_id) == "failed"

"""Tracking sent faxes to their end against the simulator, and the one report each mail gets."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Unpack

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import MailFields, pdf_mail, sim_get, sim_post, smtp_send
from tests.e2e.tracking_helpers import (
    all_tracked,
    fax_ids,
    job_state,
    reports_for,
    run_queue,
    start_gateway,
    status_reads,
)
from tests.helpers import wait_until


@pytest.fixture
async def gw(tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    gateway = await start_gateway(tmp_path, simulator)
    yield gateway
    await gateway.stop()


async def send(gw: Gateway, **fields: Unpack[MailFields]) -> str:
    result = await smtp_send(gw.smtp_port, pdf_mail(**fields))  # to 13235551212@fax.local unless told
    assert result.code == 250, result
    return result.job_id


async def one_report(tmp_path: Path, job_id: str, within_s: float = 5.0):  # type: ignore[no-untyped-def]
    reports = await wait_until(lambda: reports_for(tmp_path, job_id), timeout=within_s)
    assert len(reports) == 1, [r.message["Subject"] for r in reports]
    return reports[0]


async def test_delivered_fax_gets_one_threaded_report_from_the_null_sender(
    gw: Gateway, simulator: RunningSimulator, tmp_path: Path
) -> None:
    job_id = await send(gw)
    report = await one_report(tmp_path, job_id)
    m = report.message
    assert report.sender == "<>" and report.to == ["alice@example.com"]
    assert m["Subject"] == "Fax delivered: Contract"
    assert m["In-Reply-To"] == "<original-1@example.com>" and m["References"] == "<original-1@example.com>"
    assert m["Auto-Submitted"] == "auto-replied"
    assert "+1 323-555-1212" in report.text and "Delivered" in report.text and job_id in report.text
    assert "contract.pdf" in report.text and "contract.pdf" in report.html
    await wait_until(lambda: all_tracked(gw, job_id))
    assert gw.store is not None
    [fax] = await gw.store.faxes(job_id)
    assert fax.status == "delivered" and fax.detail["pages"] >= 1
    assert await status_reads(simulator, fax.fax_id) <= 4
    assert await job_state(gw, JobKind.REPORT, job_id) is JobState.DONE
    # The counter moves after the job's bookkeeping, a moment after the mail lands.
    await wait_until(lambda: gw.metrics.reports_sent._value.get() == 1)
    assert gw.metrics.reports_sent._value.get() == 1


async def test_busy_number_fails_with_the_busy_reason(gw: Gateway, tmp_path: Path) -> None:
    job_id = await send(gw, to="13235550000@fax.local")  # the simulator: busy (E41) after its retries
    report = await one_report(tmp_path, job_id)
    assert report.message["Subject"] == "Fax failed: Contract"
    assert "The fax number was busy (eFax code E41)" in report.text
    assert "eFax tried once; this result is final." in report.text  # its details list one attempt
    assert "Try again later" in report.text
    assert report.sender == "<>" and report.message["In-Reply-To"] == "<original-1@example.com>"


async def test_invalid_number_fails_with_the_invalid_reason(gw: Gateway, tmp_path: Path) -> None:
    job_id = await send(gw, to="13235550051@fax.local")  # E51
    report = await one_report(tmp_path, job_id)
    assert report.message["Subject"] == "Fax failed: Contract"
    assert "The fax number is not valid" in report.text and "E51" in report.text
    assert "eFax tried once; this result is final." in report.text
    assert report.sender == "<>" and report.message["References"] == "<original-1@example.com>"


async def test_cancel_is_explained_and_tracked_to_the_real_end(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = await send(gw, to="13235559999@fax.local")  # never finishes on its own
    [fax_id] = await wait_until(lambda: fax_ids(gw, job_id))
    await wait_until(lambda: _seen_sending(gw, job_id))
    assert await run_queue(gw, "cancel", job_id) == 0
    assert "accepted the request (202)" in capsys.readouterr().out
    report = await one_report(tmp_path, job_id)
    assert report.message["Subject"] == "Fax cancelled: Contract"
    assert "cancelled" in report.text and "Delivered" not in report.text
    assert report.sender == "<>" and report.message["In-Reply-To"] == "<original-1@example.com>"
    assert await run_queue(gw, "cancel", fax_id) == 1  # already final: nothing to cancel
    assert await run_queue(gw, "show", job_id) == 0
    story = capsys.readouterr().out
    for step in ("accepted", "submitted", "status", "cancel", "cancelled", "report sent"):
        assert f"  {step}" in story, step


async def test_cancel_of_a_finished_fax_says_409(
    gw: Gateway, simulator: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw.settings.tracking.first_check_s = 30  # the gateway will not notice before we cancel
    job_id = await send(gw)
    [fax_id] = await wait_until(lambda: fax_ids(gw, job_id))
    await wait_until(lambda: _sim_state(simulator, fax_id, "COMPLETE"))
    assert await run_queue(gw, "cancel", job_id) == 0
    assert "refused (409)" in capsys.readouterr().out
    report = await one_report(tmp_path, job_id)  # the cancel made the tracker read at once
    assert report.message["Subject"] == "Fax delivered: Contract"


async def _sim_state(sim: RunningSimulator, fax_id: str, state: str) -> bool:
    fax = await sim_get(sim, f"/_sim/faxes/{fax_id}")
    return bool(fax["state"] == state)


async def test_three_destinations_get_one_report_listing_each(
    gw: Gateway, simulator: RunningSimulator, tmp_path: Path
) -> None:
    to = '"Bob Smith" <13235551212@fax.local>, 13235550000@fax.local, 13235550051@fax.local'
    result = await smtp_send(
        gw.smtp_port,
        pdf_mail(to=to),
        rcpts=["13235551212@fax.local", "13235550000@fax.local", "13235550051@fax.local"],
    )
    assert result.code == 250
    report = await one_report(tmp_path, result.job_id)
    assert report.message["Subject"] == "Fax failed for 2 of 3 numbers: Contract"
    text = report.text
    assert "To +1 323-555-1212 (Bob Smith): Delivered" in text
    assert "To +1 323-555-0000: Failed" in text and "busy" in text
    assert "To +1 323-555-0051: Failed" in text and "not valid" in text
    await wait_until(lambda: all_tracked(gw, result.job_id))
    assert len(reports_for(tmp_path, result.job_id)) == 1


async def test_a_restart_while_tracking_loses_nothing(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await sim_post(simulator, "/_sim/outcomes", {"suffix": "1212", "error_code": "SFAX"})
    simulator.state.config.complete_after_s = 1.5
    first = await start_gateway(tmp_path, simulator)
    try:
        job_id = await send(first)
        await wait_until(lambda: _seen_sending(first, job_id))
    finally:
        await first.stop()
    assert reports_for(tmp_path, job_id) == []
    second = await start_gateway(tmp_path, simulator)
    try:
        report = await one_report(tmp_path, job_id, within_s=10)
        assert report.message["Subject"] == "Fax delivered: Contract"
        await wait_until(lambda: all_tracked(second, job_id))
    finally:
        await second.stop()
    assert len(reports_for(tmp_path, job_id)) == 1


async def _seen_sending(gw: Gateway, job_id: str) -> bool:
    assert gw.store is not None
    return any(e.action == "status" for e in await gw.store.events(job_id))


async def test_unknown_status_value_is_tracked_on_and_logged_once(
    gw: Gateway, simulator: RunningSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.state.config.complete_after_s = 1.0
    simulator.state.config.status_inprogress_spelling = "QUEUED AT CARRIER"  # not in any eFax doc
    caplog.set_level(logging.WARNING, logger="gateway")
    job_id = await send(gw)
    report = await one_report(tmp_path, job_id)
    assert report.message["Subject"] == "Fax delivered: Contract"
    [fax_id] = await fax_ids(gw, job_id)
    assert await status_reads(simulator, fax_id) >= 4  # several reads saw the unknown value
    lines = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(lines) == 1 and "QUEUED AT CARRIER" in lines[0].getMessage()


async def test_an_expedited_track_job_is_read_at_once(
    gw: Gateway, simulator: RunningSimulator, tmp_path: Path
) -> None:
    gw.settings.tracking.first_check_s = 60  # left alone, the first read is a minute away
    job_id = await send(gw)
    [fax_id] = await wait_until(lambda: fax_ids(gw, job_id))
    await wait_until(lambda: job_state(gw, JobKind.TRACK, fax_id), timeout=2)
    await wait_until(lambda: _scheduled(gw, fax_id))
    await wait_until(lambda: _sim_state(simulator, fax_id, "COMPLETE"))
    assert await status_reads(simulator, fax_id) == 0
    assert gw.store is not None
    assert await gw.store.expedite(JobKind.TRACK, fax_id, now=time.time())  # what the webhook does
    report = await one_report(tmp_path, job_id, within_s=3)
    assert report.message["Subject"] == "Fax delivered: Contract"
    assert await status_reads(simulator, fax_id) == 1


async def _scheduled(gw: Gateway, fax_id: str) -> bool:
    assert gw.store is not None
    job = await gw.store.find_job(JobKind.TRACK, fax_id)
    return job is not None and job.state is JobState.DEFERRED and "due" in job.payload


async def test_a_fax_not_final_in_time_is_reported_once_then_given_up(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = await start_gateway(
        tmp_path, simulator, tracking={"unconfirmed_after_s": 0.3, "give_up_after_s": 1.2}
    )
    try:
        job_id = await send(gw, to="13235559999@fax.local")  # never final at eFax
        unconfirmed = await wait_until(lambda: reports_for(tmp_path, job_id))
        assert [r.message["Subject"] for r in unconfirmed] == ["Fax not yet confirmed: Contract"]
        assert "keeps checking until" in unconfirmed[0].text
        assert unconfirmed[0].sender == "<>"
        [fax_id] = await fax_ids(gw, job_id)
        assert await job_state(gw, JobKind.TRACK, fax_id) is not JobState.DONE  # still tracked
        both = await wait_until(lambda: _at_least(reports_for(tmp_path, job_id), 2), timeout=5)
        assert [r.message["Subject"] for r in both] == [
            "Fax not yet confirmed: Contract",
            "Fax not confirmed: Contract",
        ]
        assert "not known whether the fax arrived" in both[1].text
        assert await job_state(gw, JobKind.TRACK, fax_id) is JobState.DONE
    finally:
        await gw.stop()
    assert len(reports_for(tmp_path, job_id)) == 2


def _at_least(items: list, n: int) -> list | None:  # type: ignore[type-arg]
    return items if len(items) >= n else None

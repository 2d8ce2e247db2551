"""Helpers for the tracking and report tests: a gateway with fast tracking, reports read back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.commands.queue import queue
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import gateway_settings, sim_get

FAST_TRACKING = {"first_check_s": 0.05, "max_interval_s": 0.2}


def fast_settings(tmp_path: Path, sim: RunningSimulator, **overrides: Any) -> Any:
    tracking = {**FAST_TRACKING, **overrides.pop("tracking", {})}
    return gateway_settings(tmp_path, sim.base_url, tracking=tracking, **overrides)


async def start_gateway(tmp_path: Path, sim: RunningSimulator, **overrides: Any) -> Gateway:
    gw = Gateway(fast_settings(tmp_path, sim, **overrides))
    await gw.start()
    return gw


@dataclass
class Report:
    sender: str  # the envelope sender (Return-Path)
    to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())


def maildir_reports(tmp_path: Path) -> list[Report]:
    """Reports written to the test Maildir, oldest first."""
    new = tmp_path / "mail" / "new"
    found = []
    for path in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.is_dir() else []:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        if parsed["X-Fax-Gateway-Job"] is None:
            continue  # not a report (a received fax)
        to = [a.strip() for a in str(parsed["X-Envelope-To"]).split(",")]
        found.append(Report(str(parsed["Return-Path"]), to, parsed))
    return found


def reports_for(tmp_path: Path, job_id: str) -> list[Report]:
    return [r for r in maildir_reports(tmp_path) if r.message["X-Fax-Gateway-Job"] == job_id]


async def job_state(gw: Gateway, kind: JobKind, ref: str) -> JobState | None:
    assert gw.store is not None
    job = await gw.store.find_job(kind, ref)
    return job.state if job is not None else None


async def fax_ids(gw: Gateway, job_id: str) -> list[str]:
    assert gw.store is not None
    return [f.fax_id for f in await gw.store.faxes(job_id)]


async def all_tracked(gw: Gateway, job_id: str) -> bool:
    ids = await fax_ids(gw, job_id)
    states = [await job_state(gw, JobKind.TRACK, f) for f in ids]
    return bool(ids) and all(s is JobState.DONE for s in states)


async def status_reads(sim: RunningSimulator, fax_id: str) -> int:
    items = await sim_get(sim, "/_sim/requests", method="GET", path=f"/faxes/{fax_id}/transmission-details")
    return len(items)


async def run_queue(gw: Gateway, action: str, ident: str = "", **extra: Any) -> int:
    args = argparse.Namespace(action=action, id=ident, kind=None, state=None, older_than=None, limit=50)
    for key, value in extra.items():
        setattr(args, key, value)
    return await queue(args, gw.settings)

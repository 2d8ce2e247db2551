"""Helpers for the admin page's tests: a gateway with admins and a held mail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.core.passwords import hash_password
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import pdf_mail, sim_post, smtp_send
from tests.e2e.tracking_helpers import fast_settings, job_state
from tests.helpers import wait_until

ADMIN, ADMIN_PASSWORD = "olivia", "correct horse battery staple"
SCANNER_ADMIN, SCANNER_PASSWORD = "sam", "scanner room key 42"
SESSION_SECRET = "session-secret-never-logged-0123456789abcdef"
CHEAP_N = 1024  # scrypt cost lowered for tests only: each sign-in stays fast


def admin_entries() -> list[dict[str, Any]]:
    """An admin of every mailbox, and one of the scanner's mailbox (13235550200) only."""
    return [
        {"name": ADMIN, "password_hash": hash_password(ADMIN_PASSWORD, n=CHEAP_N)},
        {
            "name": SCANNER_ADMIN,
            "password_hash": hash_password(SCANNER_PASSWORD, n=CHEAP_N),
            "mailboxes": ["13235550200"],
        },
    ]


def admin_settings(tmp_path: Path, sim: RunningSimulator, **overrides: Any) -> Any:
    admins = admin_entries()
    return fast_settings(
        tmp_path,
        sim,
        efax={"read_timeout_s": 0.4},
        dispatch={"reconcile_window_s": 1.0, "reconcile_every_s": 0.2},
        http={"session_secret": SESSION_SECRET, "login_failures": 3},
        admins=admins,
        **overrides,
    )


async def held_mail(gw: Gateway, sim: RunningSimulator, **mail: Any) -> str:
    """A mail whose POST /faxes was cut off before eFax did anything: held, not sent."""
    await sim_post(sim, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop", "count": 1})
    result = await smtp_send(gw.smtp_port, pdf_mail(**mail))
    assert result.code == 250, result
    job = result.job_id

    async def held() -> bool:
        return await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD

    await wait_until(held, timeout=15)
    return job


def admin_url(gw: Gateway) -> str:
    assert gw.http_server is not None
    return f"{gw.http_server.base_url}/admin"

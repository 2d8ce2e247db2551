"""A real ``serve`` process: killed with SIGKILL right after 250, and stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
from pathlib import Path

import pytest

from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE, ALICE_USER, pdf_mail, requests_to, sim_get, sim_post
from tests.helpers import wait_until
from tests.process import GatewayProcess, write_config


def config(tmp_path: Path, sim_url: str, lease_s: float = 300) -> Path:
    return write_config(
        tmp_path / "gateway.toml",
        f"""
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[database]
url = "sqlite:///{tmp_path}/gateway.db"
[relay]
maildir = "{tmp_path}/mail"
[efax]
base_url = "{sim_url}"
app_id = "crash-test"
api_key = "crash-test-key"
[dispatch]
lease_s = {lease_s}
poll_idle_s = 0.05
backoff_initial_s = 0.1
backoff_max_s = 0.5
[[mailboxes]]
user_id = "{ALICE_USER}"
fax_number = "13235550100"
senders = ["{ALICE}"]
""",
    )


def dispatch_state(tmp_path: Path, job_id: str) -> str | None:
    """The dispatch job's state, read from the process's database."""
    conn = sqlite3.connect(f"file:{tmp_path}/gateway.db?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT state FROM jobs WHERE kind = 'dispatch' AND ref = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


def send_then_kill(gw: GatewayProcess) -> str:
    """Send one mail; SIGKILL the instant the 250 has been read."""
    data = pdf_mail().as_bytes()
    client = smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=30)
    client.ehlo()
    client.mail(ALICE)
    client.rcpt("13235551212@fax.local")
    code, text = client.data(data.replace(b"\n", b"\r\n"))
    gw.kill()
    client.close()
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


@pytest.mark.parametrize("slow_efax", [False, True], ids=["idle-efax", "efax-slow-when-killed"])
async def test_sigkill_right_after_250_then_restart_submits_exactly_once(
    tmp_path: Path, simulator: RunningSimulator, slow_efax: bool
) -> None:
    if slow_efax:  # the kill lands while POST /faxes is in flight: outcome unknown
        await sim_post(
            simulator,
            "/_sim/faults",
            {"method": "POST", "path": "/faxes", "kind": "slow", "delay_s": 0.5, "count": 1},
        )
    path = config(tmp_path, simulator.base_url)
    first = GatewayProcess(path, cwd=tmp_path).start()
    try:
        job_id = await asyncio.to_thread(send_then_kill, first)
    finally:
        first.kill()
    with GatewayProcess(path, cwd=tmp_path) as second:
        # The lease is 300 s: the restarted process takes the dead one's job back at once.
        await wait_until(lambda: dispatch_state(tmp_path, job_id) == "done", timeout=20)
        faxes = await sim_get(simulator, "/_sim/faxes")
        assert len(faxes) == 1, second.output()
        assert faxes[0]["client_reference_id"] == job_id
        assert second.terminate() == 0
    posts = await requests_to(simulator, "POST", "/faxes")()
    assert len(posts) == 1
    for output in (first.output(), second.output()):  # the real process's logs never hold the key
        assert "crash-test-key" not in output


async def test_sigterm_stops_gracefully_with_exit_status_0(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    gw = GatewayProcess(config(tmp_path, simulator.base_url), cwd=tmp_path).start()
    try:
        code = await asyncio.to_thread(gw.terminate)
    finally:
        gw.kill()
    assert code == 0
    assert "stopped" in gw.output()

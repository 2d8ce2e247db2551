"""Several ``serve`` processes on one PostgreSQL: load split over them, one killed with
SIGKILL mid-load and left down, received faxes polled by both, and PostgreSQL itself
restarted under load. Real processes, real SMTP, the simulator over HTTP."""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
import time
from pathlib import Path

import httpx

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import RunningSimulator, start_simulator
from tests.e2e.conftest import ALICE, ALICE_USER, SCANNER_USER, pdf_mail, requests_to, sim_get, sim_post
from tests.e2e.inbound_helpers import receive
from tests.e2e.tracking_helpers import maildir_reports
from tests.helpers import smtp_error_text, wait_until
from tests.pgcluster import PgCluster
from tests.process import GatewayProcess, write_config
from tests.sink import SmtpSink

LEASE_S = 6  # production: 30; short here so that the takeover is quick to see
BOB = "bob@example.com"


def config(tmp_path: Path, name: str, sim_url: str, db_url: str, relay: str = "") -> Path:
    """One instance's configuration: its own ports, the shared database and Maildir."""
    return write_config(
        tmp_path / f"{name}.toml",
        f"""
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[database]
url = "{db_url}"
[relay]
maildir = "{tmp_path}/mail"
{relay}
[efax]
base_url = "{sim_url}"
app_id = "several"
api_key = "several-key"
[dispatch]
lease_s = {LEASE_S}
heartbeat_s = 1
poll_idle_s = 0.2
backoff_initial_s = 0.2
backoff_max_s = 1
reconcile_every_s = 0.5
reconcile_window_s = 8
[tracking]
first_check_s = 0.2
max_interval_s = 0.5
[inbound]
poll_interval_s = 30
[[mailboxes]]
user_id = "{ALICE_USER}"
fax_number = "13235550100"
senders = ["{ALICE}", "{BOB}"]
deliver_to = ["{ALICE}", "frontdesk@example.com"]
[[mailboxes]]
user_id = "{SCANNER_USER}"
fax_number = "13235550200"
senders = ["*@scan.example.com"]
deliver_to = ["scans@example.com"]
""",
    )


def send(port: int, n: int) -> str | None:
    """One mail of a sender taking turns; its job id on 250, None when refused or cut off."""
    code, text = send_code(port, n)
    return text.rsplit(" ", 1)[-1] if code == 250 else None


def send_code(port: int, n: int) -> tuple[int, str]:
    """One mail of a sender taking turns: the final reply (0 when the session broke)."""
    sender = (ALICE, BOB)[n % 2]
    data = pdf_mail(sender=sender, subject=f"mail {n}").as_bytes().replace(b"\n", b"\r\n")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            client.mail(sender)
            client.rcpt(f"1323555{1000 + n:04d}@fax.local")
            code, text = client.data(data)
    except smtplib.SMTPResponseException as err:
        return err.smtp_code, smtp_error_text(err)
    except (OSError, smtplib.SMTPException) as err:
        return 0, repr(err)  # the instance died with the session open: not answered 250
    return code, text.decode()


async def posts_by_job(sim: RunningSimulator) -> collections.Counter[str]:
    faxes = await sim_get(sim, "/_sim/faxes", direction="OUTBOUND")
    return collections.Counter(str(f["client_reference_id"]) for f in faxes)


async def test_one_instance_killed_mid_load_its_mail_is_faxed_once_by_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    sim = await start_simulator(SimulatorConfig(complete_after_s=0.5))
    try:
        # Every POST /faxes is answered late (eFax has the fax at once, as it does once the
        # body is in), so the killed instance holds submissions whose reply it never read.
        late_reply = {"method": "POST", "path": "/faxes", "kind": "slow_after", "delay_s": 0.4}
        await sim_post(sim, "/_sim/faults", late_reply)
        a = GatewayProcess(config(tmp_path, "a", sim.base_url, pg_url), cwd=tmp_path).start()
        b = GatewayProcess(config(tmp_path, "b", sim.base_url, pg_url), cwd=tmp_path).start()
        try:
            ports = [a.smtp_port, b.smtp_port]
            first = await asyncio.gather(*(asyncio.to_thread(send, ports[n % 2], n) for n in range(16)))
            killed_at = time.monotonic()
            a.kill()  # mid-load: A holds claimed jobs and submissions in flight; it stays down
            later = await asyncio.gather(*(asyncio.to_thread(send, b.smtp_port, n) for n in range(16, 24)))
            accepted = [job for job in (*first, *later) if job is not None]
            assert len(accepted) == 24  # every mail of this test was answered 250

            async def all_reported() -> bool:
                reported = collections.Counter(
                    r.message["X-Fax-Gateway-Job"] for r in maildir_reports(tmp_path)
                )
                return all(reported[job] >= 1 for job in accepted)

            await wait_until(all_reported, timeout=60)
            took = time.monotonic() - killed_at
            assert took < 60, f"the other instance needed {took:.0f} s"
            posts = await posts_by_job(sim)
            reports = {r.message["X-Fax-Gateway-Job"]: r for r in maildir_reports(tmp_path)}
            assert len(maildir_reports(tmp_path)) == len(reports) == len(accepted)  # one report each
            # A mail whose POST the kill cut off before eFax had it cannot be told from one
            # eFax took without a word: never sent twice, it is held and its sender told so.
            held = [
                job for job in accepted if reports[job].message["Subject"].startswith("Fax not confirmed")
            ]
            assert len(held) <= 4  # at most what A's dispatchers had in hand
            assert {job: posts[job] for job in accepted} == {job: 0 if job in held else 1 for job in accepted}
            assert all(
                reports[job].message["Subject"].startswith("Fax delivered")
                for job in accepted
                if job not in held
            )
            # Both instances did work before the kill (the load was split), and B took over A's.
            assert "faxes handed to eFax" in a.output() and "faxes handed to eFax" in b.output()
        finally:
            a.kill()
            b.kill()
    finally:
        await sim.stop()


async def test_received_faxes_are_mailed_once_per_address_while_both_poll(
    tmp_path: Path, pg_url: str, simulator: RunningSimulator
) -> None:
    alice_ids = await receive(simulator, ALICE_USER, count=6)
    scan_ids = await receive(simulator, SCANNER_USER, count=4)
    sink = await SmtpSink().start()
    try:
        relay = f'host = "127.0.0.1"\nport = {sink.port}\ntls = "none"'
        paths = [config(tmp_path, name, simulator.base_url, pg_url, relay) for name in ("a", "b")]
        with GatewayProcess(paths[0], cwd=tmp_path) as a, GatewayProcess(paths[1], cwd=tmp_path) as b:
            # Alice's mailbox is read at start, the scanner's half an interval later (staggered).
            await wait_until(lambda: sum(len(m.rcpt_tos) for m in sink.messages) >= 6 * 2 + 4, timeout=40)
            await asyncio.sleep(1)  # nothing more comes
            per_address = collections.Counter(
                (rcpt, str(m.message["X-Fax-Id"])) for m in sink.messages for rcpt in m.rcpt_tos
            )
            expected = {(r, f) for f in alice_ids for r in (ALICE, "frontdesk@example.com")}
            expected |= {("scans@example.com", f) for f in scan_ids}
            assert set(per_address) == expected
            assert set(per_address.values()) == {1}
            # One instance read each mailbox: the poll lock, not the unique fax id, kept it single.
            lists = await requests_to(simulator, "GET", "/faxes/received")()
            readers = collections.Counter(r.get("user_id") for r in lists)
            assert readers[ALICE_USER] == 1 and readers[SCANNER_USER] == 1
            assert a.proc is not None and b.proc is not None
    finally:
        await sink.stop()


async def test_a_postgresql_outage_and_restart_under_load_lose_nothing(
    tmp_path: Path, pg_url: str, pg_cluster: PgCluster, simulator: RunningSimulator
) -> None:
    gw = GatewayProcess(config(tmp_path, "a", simulator.base_url, pg_url), cwd=tmp_path).start()
    try:
        match = await wait_until(lambda: re.search(r"HTTP listening on (http://\S+)", gw.output()))
        readyz = match.group(1) + "/readyz"
        answered = [
            job for job in await asyncio.gather(*(asyncio.to_thread(send, gw.smtp_port, n) for n in range(4)))
        ]

        # Down: mail is refused for now (never 250), /readyz says why, the outage is logged once.
        await asyncio.to_thread(pg_cluster.stop)
        for n in range(4, 7):
            code, text = await asyncio.to_thread(send_code, gw.smtp_port, n)
            assert (code, text[:5]) == (451, "4.3.0"), text
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(readyz)
        assert ready.status_code == 503 and "store" in ready.text
        await asyncio.sleep(2)  # workers keep trying meanwhile
        assert gw.output().count('action="store down"') == 1, "\n".join(
            line for line in gw.output().splitlines() if "store" in line or "database" in line
        )

        # Back: the same process takes mail again, without a restart.
        await asyncio.to_thread(pg_cluster.start_again)

        async def takes_mail() -> bool:
            code, _ = await asyncio.to_thread(send_code, gw.smtp_port, 7)
            return code == 250

        await wait_until(takes_mail, timeout=20)

        # Restarted while mail comes in: what is refused meanwhile is sent again, as an MTA would.
        sending = [asyncio.to_thread(send, gw.smtp_port, n) for n in range(8, 20)]
        results = await asyncio.gather(*sending, asyncio.to_thread(pg_cluster.restart))
        for n, job in zip(range(8, 20), results[:-1], strict=True):
            while job is None:
                job = await asyncio.to_thread(send, gw.smtp_port, n)
            answered.append(job)
        jobs = [j for j in answered if j is not None]
        assert len(jobs) == 4 + 12

        async def all_faxed() -> bool:
            posts = await posts_by_job(simulator)
            return all(posts[job] >= 1 for job in jobs)

        try:
            await wait_until(all_faxed, timeout=40)
        except AssertionError:
            posts = await posts_by_job(simulator)
            raise AssertionError(f"{[j for j in jobs if not posts[j]]}\n{gw.output()}") from None
        await asyncio.sleep(1)
        posts = await posts_by_job(simulator)
        assert {job: posts[job] for job in jobs} == dict.fromkeys(jobs, 1)
        assert gw.proc is not None and gw.proc.poll() is None  # no restart of the gateway needed
        assert 'action="store up"' in gw.output()
    finally:
        gw.kill()

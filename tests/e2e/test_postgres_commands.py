"""``serve``, ``queue`` and ``check`` on PostgreSQL: a mail's story told from the shared
database, and ``check``'s sentence for each database problem."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.simulator.server import RunningSimulator
from gateway.store import open_store
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import gateway_settings, pdf_mail, smtp_send
from tests.e2e.tracking_helpers import FAST_TRACKING, job_state, run_queue
from tests.helpers import wait_until
from tests.process import write_config


async def test_a_mail_faxed_on_postgresql_is_listed_and_told_by_queue(
    tmp_path: Path,
    pg_url: str,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(
        tmp_path, simulator.base_url, database={"url": pg_url}, tracking=FAST_TRACKING
    )
    async with Gateway(settings) as gw:
        result = await smtp_send(gw.smtp_port, pdf_mail())
        assert result.code == 250
        job = result.job_id

        async def reported() -> bool:
            return await job_state(gw, JobKind.REPORT, job) == JobState.DONE

        await wait_until(reported, timeout=20)
        capsys.readouterr()
        assert await run_queue(gw, "list") == 0
        listed = capsys.readouterr().out
        assert job in listed
        assert await run_queue(gw, "show", job) == 0
        shown = capsys.readouterr().out
        assert "handed to eFax" in shown and "delivered" in shown.lower()


def check(config: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def config_with(tmp_path: Path, url: str) -> Path:
    return write_config(tmp_path / "check.toml", f'[database]\nurl = "{url}"\n')


def test_check_says_what_is_wrong_with_the_database(tmp_path: Path, pg_url: str) -> None:
    code, out = check(config_with(tmp_path, pg_url))
    assert code == 0, out
    assert "database:" in out and "answers; schema version 0, serve brings it to" in out

    user, rest = pg_url.removeprefix("postgresql://").split(":", 1)
    password, where = rest.split("@", 1)
    wrong = f"postgresql://{user}:not-{password}@{where}"
    code, out = check(config_with(tmp_path, wrong))
    assert code == 2 and "refused the user name and password" in out
    assert password not in out and f"not-{password}" not in out  # no password in any sentence

    host_port = where.split("/", 1)[0]
    code, out = check(config_with(tmp_path, f"postgresql://{user}:{password}@{host_port}/no_such_db"))
    assert code == 2 and "the database does not exist" in out

    code, out = check(config_with(tmp_path, f"postgresql://{user}:{password}@127.0.0.1:1/db"))
    assert code == 1 and "cannot reach postgresql://" in out and password not in out


async def test_a_sending_limit_holds_across_instances(
    tmp_path: Path, pg_url: str, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alternating between two gateways on one database does not double a sender's limit."""
    monkeypatch.chdir(tmp_path)

    def settings(name: str) -> Settings:
        return gateway_settings(
            tmp_path / name,
            simulator.base_url,
            database={"url": pg_url},
            policy={"faxes_per_hour_per_sender": 3},
        )

    async with Gateway(settings("a")) as a, Gateway(settings("b")) as b:
        codes = []
        for n in range(6):
            gw = (a, b)[n % 2]
            codes.append((await smtp_send(gw.smtp_port, pdf_mail(to=f"1323555{1200 + n}@fax.local"))).code)
        assert codes == [250, 250, 250, 451, 451, 451]

        # All at once through both: the commits take turns on the sender, so still three
        # in all (what each gateway counts itself would let each take three).
        bob = "bob@example.com"
        mails = [pdf_mail(sender=bob, to=f"1323555{1300 + n}@fax.local") for n in range(8)]
        replies = await asyncio.gather(
            *(smtp_send((a, b)[n % 2].smtp_port, mail, sender=bob) for n, mail in enumerate(mails))
        )
        assert sorted(r.code for r in replies) == [250] * 3 + [451] * 5, [r.text for r in replies]
        for refused in (r for r in replies if r.code == 451):  # at DATA or at the commit: one wording
            assert refused.text.startswith("4.7.1 bob@example.com has sent 3 faxes in the last hour")
            assert "try again in" in refused.text


async def test_a_job_queued_by_one_instance_wakes_the_others(pg_url: str) -> None:
    """NOTIFY on commit: another store listening hears the kind at once (no polling)."""
    first, second = await open_store(pg_url), await open_store(pg_url)
    heard: asyncio.Queue[JobKind] = asyncio.Queue()
    try:
        second.listen(heard.put_nowait)
        await _drained(heard)  # the listener's own wake-ups on connecting
        await first.enqueue(JobKind.DELIVER, "fax-1", {}, now=time.time())
        assert await asyncio.wait_for(heard.get(), timeout=5) == JobKind.DELIVER
        await first.enqueue(JobKind.TRACK, "fax-2", {}, now=time.time(), run_after=time.time() + 3600)
        await first.enqueue(JobKind.DISPATCH, "job-3", {}, now=time.time())
        assert await asyncio.wait_for(heard.get(), timeout=5) == JobKind.DISPATCH  # not the one for later
    finally:
        await first.close()
        await second.close()


async def _drained(queue: asyncio.Queue[JobKind]) -> None:
    """Wait until the listener is connected (it wakes every kind once), then empty the queue."""
    await asyncio.wait_for(queue.get(), timeout=10)
    await asyncio.sleep(0.3)
    while not queue.empty():
        queue.get_nowait()

"""Never twice, never lost, when eFax leaves the outcome of a send unclear.

Every way the sent list may behave (``search_text`` searching the metadata, ignored, or
matching nothing; items with or without the client reference; faxes in progress listed
or not) against every way a ``POST /faxes`` may end unclear after eFax created the fax
(the reply lost, a 5xx, a read timeout, the fax created only after the client gave up):
the fax is at eFax exactly once and the sender's report tells the truth. A send that
never created anything is held, reported as such, and sent once more only when an
administrator says so. Real SMTP in, the simulator over HTTP, reports from the Maildir."""

from __future__ import annotations

import collections
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.conftest import pdf_mail, sim_get, sim_post, smtp_send
from tests.e2e.tracking_helpers import fast_settings, job_state, reports_for, run_queue
from tests.helpers import wait_until

LISTS = [
    {"search_mode": search, "list_client_data": client_data, "list_in_progress": in_progress}
    for search, client_data, in_progress in itertools.product(
        ("metadata", "ignored", "nothing"), (True, False), (True, False)
    )
]
# Each creates the fax, then leaves the client not knowing it did.
UNCLEAR: dict[str, dict[str, Any]] = {
    "reply-lost": {"kind": "drop_after"},
    "5xx-after-creation": {"kind": "status_after", "status": 502},
    "timeout-after-creation": {"kind": "slow_after", "delay_s": 1.2},
    "created-after-the-timeout": {"kind": "late", "delay_s": 1.2},
}
RECONCILE = {"reconcile_window_s": 20, "reconcile_every_s": 0.2}


def settings(tmp_path: Path, sim: RunningSimulator, **dispatch: Any) -> Any:
    return fast_settings(
        tmp_path,
        sim,
        efax={"read_timeout_s": 0.4},
        dispatch={**RECONCILE, **dispatch},
    )


def _list_id(variant: dict[str, Any]) -> str:
    return "-".join(
        [
            f"search-{variant['search_mode']}",
            "with-reference" if variant["list_client_data"] else "no-reference",
            "in-progress-listed" if variant["list_in_progress"] else "finished-only",
        ]
    )


@pytest.mark.parametrize("lists", LISTS, ids=[_list_id(v) for v in LISTS])
@pytest.mark.parametrize("unclear", list(UNCLEAR), ids=list(UNCLEAR))
async def test_an_unclear_send_ends_with_the_fax_at_efax_once_and_the_truth_told(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    lists: dict[str, Any],
    unclear: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    async with httpx.AsyncClient(base_url=simulator.base_url) as client:
        (await client.patch("/_sim/config", json=lists)).raise_for_status()
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "count": 1, **UNCLEAR[unclear]}
    )
    async with Gateway(settings(tmp_path, simulator)) as gw:
        result = await smtp_send(gw.smtp_port, pdf_mail())
        assert result.code == 250
        job = result.job_id

        async def reported() -> bool:
            return await job_state(gw, JobKind.REPORT, job) == JobState.DONE

        await wait_until(reported, timeout=20)
        faxes = await sim_get(simulator, "/_sim/faxes", direction="OUTBOUND")
        assert len(faxes) == 1  # at eFax exactly once
        assert gw.store is not None
        recorded = await gw.store.faxes(job)
        assert [f.fax_id for f in recorded] == [faxes[0]["fax_id"]]
        (report,) = reports_for(tmp_path, job)
        assert report.message["Subject"].startswith("Fax delivered")  # it was: eFax completed it
        story = [e.action for e in await gw.store.events(job)]
        assert "held" not in story


async def test_a_send_that_never_reached_efax_is_held_told_and_resent_only_when_asked(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    # The connection drops before eFax did anything: the gateway cannot know that.
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop", "count": 1}
    )
    async with Gateway(settings(tmp_path, simulator, reconcile_window_s=1.5)) as gw:
        result = await smtp_send(gw.smtp_port, pdf_mail())
        job = result.job_id

        async def held() -> bool:
            return await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD

        await wait_until(held, timeout=15)
        await wait_until(lambda: reports_for(tmp_path, job), timeout=10)
        (report,) = reports_for(tmp_path, job)
        assert report.message["Subject"].startswith("Fax not confirmed by eFax, not sent again")
        assert "was not sent again, so that the recipient does not get it twice" in " ".join(
            report.text.split()
        )
        assert f"fax-gateway queue retry {job}" in report.text
        assert await sim_get(simulator, "/_sim/faxes") == []  # nothing was sent blind

        capsys.readouterr()
        assert await run_queue(gw, "list") == 0
        listed = capsys.readouterr().out
        assert listed.startswith("held, waiting for a decision (1)") and job in listed.splitlines()[1]

        assert await run_queue(gw, "retry", job) == 0
        said = capsys.readouterr().out
        assert "sending it again now to +1 323-555-1212" in said and "twice" in said

        async def delivered() -> bool:
            return await job_state(gw, JobKind.REPORT, job) == JobState.DONE

        await wait_until(delivered, timeout=20)
        assert len(await sim_get(simulator, "/_sim/faxes")) == 1
        actions = collections.Counter(e.action for e in await gw.store.events(job))  # type: ignore[union-attr]
        assert actions["held"] == 1 and actions["released"] == 1

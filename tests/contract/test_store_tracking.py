"""Store contract for tracking: the last fax of a mail to become final enqueues its one report."""

from __future__ import annotations

import asyncio

from gateway.store import Store
from gateway.store.base import JobKind, JobState, MessageOptions, NewDocument, NewJob, NewMessage, Recipient

FAX_IDS = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(3)]


async def submitted(store: Store, n_faxes: int) -> list[str]:
    await store.accept_message(
        NewMessage(
            id="JOB1",
            received_at=1000.0,
            mailbox_user_id="u1",
            envelope_from="a@example.com",
            header_from="a@example.com",
            report_to="a@example.com",
            auth="trusted 127.0.0.1",
            message_id="<m@example.com>",
            subject="s",
            recipients=[Recipient(f"1323555121{n}", f"+1 323-555-121{n}") for n in range(n_faxes)],
            options=MessageOptions(),
            raw=b"raw",
            documents=[NewDocument("a.pdf", "PDF", "pdf", 1, b"%PDF-1.4")],
        )
    )
    job = await store.claim(JobKind.DISPATCH, owner="d", now=1001, lease_s=60)
    assert job is not None
    faxes = [(FAX_IDS[n], f"323555121{n}") for n in range(n_faxes)]
    assert await store.record_submission(job, owner="d", now=1002, faxes=faxes, note="ok")
    return [f for f, _ in faxes]


async def finish(store: Store, fax_id: str, owner: str, status: str = "delivered") -> tuple[bool, bool]:
    claimed = await store.claim(JobKind.TRACK, owner=owner, now=1003, lease_s=60)
    assert claimed is not None and claimed.ref == fax_id  # oldest first
    return await store.finish_fax(
        claimed,
        owner=owner,
        now=1004,
        status=status,
        detail={"pages": 1},
        note="eFax: COMPLETE",
        report=NewJob(JobKind.REPORT, "JOB1"),
    )


async def test_faxes_finishing_together_enqueue_exactly_one_report(store: Store) -> None:
    await submitted(store, 3)
    claimed = [await store.claim(JobKind.TRACK, owner=f"w{n}", now=1003, lease_s=60) for n in range(3)]
    assert all(c is not None for c in claimed)
    results = await asyncio.gather(
        *(
            store.finish_fax(
                c,
                owner=f"w{n}",
                now=1004,
                status="failed" if n else "delivered",
                detail={},
                note="",
                report=NewJob(JobKind.REPORT, "JOB1"),
            )
            for n, c in enumerate(claimed)
            if c is not None
        )
    )
    assert all(done for done, _ in results)
    assert sum(reported for _, reported in results) == 1
    assert [j.ref for j in await store.jobs(kind=JobKind.REPORT)] == ["JOB1"]
    assert {f.status for f in await store.faxes("JOB1")} == {"delivered", "failed"}


async def test_no_report_while_a_fax_is_still_open(store: Store) -> None:
    first, second = await submitted(store, 2)
    assert await finish(store, first, "w1") == (True, False)
    assert await store.jobs(kind=JobKind.REPORT) == []
    assert await finish(store, second, "w2") == (True, True)
    events = [e.action for e in await store.events("JOB1") if e.fax_id]
    assert events.count("delivered") == 2


async def test_a_lost_lease_changes_nothing(store: Store) -> None:
    [only] = await submitted(store, 1)
    job = await store.claim(JobKind.TRACK, owner="w1", now=1003, lease_s=1)
    assert job is not None
    taken = await store.claim(JobKind.TRACK, owner="w2", now=1010, lease_s=60)  # w1's lease expired
    assert taken is not None
    result = await store.finish_fax(
        job,
        owner="w1",
        now=1011,
        status="delivered",
        detail={},
        note="",
        report=NewJob(JobKind.REPORT, "JOB1"),
    )
    assert result == (False, False)
    fax = await store.fax(only)
    assert fax is not None and fax.status == "submitted"
    assert (await store.find_job(JobKind.TRACK, only)).state is JobState.ACTIVE  # type: ignore[union-attr]

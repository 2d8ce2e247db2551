"""The purger over a real store: every batch due in one pass, then nothing; a store error
is logged and the next pass tries again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.store import open_store
from gateway.store.base import JobKind, JobState
from gateway.workers.purge import DAY_S, Purger
from tests.contract.test_store import message


async def test_one_pass_purges_every_batch_due_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        for n in range(1, 6):
            await store.accept_message(message(n))  # received at 1001..1005
            job = await store.find_job(JobKind.DISPATCH, f"JOB{n:05d}")
            assert job is not None
            await store.set_job_state(job.id, JobState.DONE, now=1010)
        purger = Purger(store, keep_days=1, batch=2, clock=lambda: 1003.5 + DAY_S)
        with caplog.at_level(logging.INFO, logger="gateway.workers.purge"):
            assert await purger.purge_due() == (3, 0)  # 1001..1003 are over a day old
        assert "deleted the stored mail of 3 faxes sent or failed" in caplog.text
        assert [await store.raw_message(f"JOB{n:05d}") for n in range(1, 6)] == [b""] * 3 + [b"raw mail"] * 2
        caplog.clear()
        assert await purger.purge_due() == (0, 0)
        assert caplog.text == ""  # a pass with nothing to do says nothing
    finally:
        await store.close()

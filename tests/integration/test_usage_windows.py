"""The sending-limit windows kept in memory, over a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core.policy import Use
from gateway.smtp.usage import UsageWindows
from gateway.store import Store, open_store
from gateway.store.base import NewMessage, Usage
from tests.contract.test_store_usage import mail as stored_mail

ALICE = "alice@example.com"


class Counting:
    """The real store, counting the usage reads that reach it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None

    async def sender_usage(self, sender: str, *, since: float) -> list[Usage]:
        self.reads.append(("sender", sender))
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.sender_usage(sender, since=since)

    async def mailbox_usage(self, mailbox_user_id: str, *, since: float) -> list[Usage]:
        self.reads.append(("mailbox", mailbox_user_id))
        return await self.store.mailbox_usage(mailbox_user_id, since=since)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield s
    await s.close()


def mail(n: int, *, at: float, sender: str = ALICE, mailbox: str = "u1", numbers: int = 1) -> NewMessage:
    return stored_mail(n, at=at, sender=sender, mailbox=mailbox, numbers=numbers, pages=[2])


def windows(counting: Counting, clock: Clock, **kw: Any) -> UsageWindows:
    return UsageWindows(counting, clock=clock, **kw)  # type: ignore[arg-type]


def totals(uses: list[Use]) -> tuple[int, int]:
    return sum(u.faxes for u in uses), sum(u.pages for u in uses)


async def accept(w: UsageWindows, store: Store, new: NewMessage) -> None:
    use = Use(new.received_at, len(new.recipients), 2 * len(new.recipients))
    w.committing(new.id, new.envelope_from, new.mailbox_user_id, use)
    await store.accept_message(new)
    w.committed(new.id)


async def test_each_key_is_read_once_and_own_commits_are_added_without_reading(store: Store) -> None:
    await store.accept_message(mail(1, at=10_000, numbers=2))
    counting, clock = Counting(store), Clock(10_010)
    w = windows(counting, clock)
    assert [totals(x) for x in await w.recent(ALICE.upper(), "u1")] == [(2, 4), (2, 4)]
    for n in range(2, 12):
        clock.now += 1
        await accept(w, store, mail(n, at=clock.now))
        await w.recent(ALICE, "u1")
    sender, mailbox = await w.recent(ALICE, "u1")
    assert totals(sender) == totals(mailbox) == (12, 24)
    assert counting.reads == [("sender", ALICE), ("mailbox", "u1")]
    assert len(sender) <= 2  # summed per minute, not one entry per mail


async def test_a_mail_being_committed_counts_and_a_failed_commit_does_not(store: Store) -> None:
    w = windows(Counting(store), Clock(50_000))
    w.committing("J1", ALICE, "u1", Use(50_000, 3, 6))
    assert [totals(x) for x in await w.recent(ALICE, "u1")] == [(3, 6), (3, 6)]
    w.failed("J1")
    w.committed("J1")  # after failed(): nothing
    assert [totals(x) for x in await w.recent(ALICE, "u1")] == [(0, 0), (0, 0)]


async def test_another_process_s_mail_counts_after_the_refresh(store: Store) -> None:
    counting, clock = Counting(store), Clock(20_000)
    w = windows(counting, clock, refresh_s=60)
    await accept(w, store, mail(1, at=20_000))
    assert totals((await w.recent(ALICE, None))[0]) == (1, 2)
    await store.accept_message(mail(2, at=20_001))  # written by someone else
    clock.now = 20_030
    assert totals((await w.recent(ALICE, None))[0]) == (1, 2)
    clock.now = 20_061
    assert totals((await w.recent(ALICE, None))[0]) == (2, 4)  # read again: own mail not twice
    assert counting.reads == [("sender", ALICE), ("sender", ALICE)]


async def test_uses_older_than_a_day_drop_out(store: Store) -> None:
    clock = Clock(100_000)
    w = windows(Counting(store), clock, refresh_s=10**9)
    await accept(w, store, mail(1, at=100_000))
    clock.now = 100_000 + 86_400 - 1
    assert totals((await w.recent(ALICE, None))[0]) == (1, 2)
    clock.now = 100_000 + 86_400 + 1
    assert totals((await w.recent(ALICE, None))[0]) == (0, 0)


async def test_concurrent_first_reads_share_one_store_read_and_miss_no_commit(store: Store) -> None:
    counting, clock = Counting(store), Clock(30_000)
    counting.gate = asyncio.Event()
    w = windows(counting, clock)
    first = asyncio.ensure_future(w.recent(ALICE, None))
    second = asyncio.ensure_future(w.recent(ALICE, None))
    await asyncio.sleep(0.01)
    await accept(w, store, mail(1, at=30_000))  # commits while the read waits
    counting.gate.set()
    results = await asyncio.gather(first, second)
    assert counting.reads == [("sender", ALICE)]
    for sender, _ in results:
        assert totals(sender) >= (1, 2)  # counted at least once; twice until the next read at most

"""Store contract for the sending limits: recent use per envelope sender and per mailbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.store import Store
from gateway.store.base import (
    JobKind,
    MessageOptions,
    NewDocument,
    NewMessage,
    OverLimit,
    Recipient,
    Usage,
    UsageLimit,
)


def mail(n: int, *, at: float, sender: str, mailbox: str, numbers: int, pages: list[int]) -> NewMessage:
    return NewMessage(
        id=f"USE{n:05d}",
        received_at=at,
        mailbox_user_id=mailbox,
        envelope_from=sender,
        header_from=sender,
        report_to=sender,
        auth="trusted 127.0.0.1",
        message_id=f"<u{n}@example.com>",
        subject="s",
        recipients=[Recipient(f"1323555{1000 + i}", "x") for i in range(numbers)],
        options=MessageOptions(),
        raw=b"raw",
        documents=[NewDocument(f"{i}.pdf", "PDF", "pdf", p, b"%PDF") for i, p in enumerate(pages)],
    )


async def test_usage_counts_numbers_and_pages_times_numbers(store: Store) -> None:
    alice, bob = "alice@example.com", "bob@example.com"
    await store.accept_message(mail(1, at=1000, sender=alice.title(), mailbox="u1", numbers=2, pages=[3, 1]))
    await store.accept_message(mail(2, at=2000, sender=alice, mailbox="u2", numbers=1, pages=[5]))
    await store.accept_message(mail(3, at=3000, sender=bob, mailbox="u1", numbers=3, pages=[1]))
    assert sorted(await store.sender_usage("ALICE@example.com", since=0), key=lambda u: u.at) == [
        Usage(1000, 2, 8),
        Usage(2000, 1, 5),
    ]
    assert await store.sender_usage("alice@example.com", since=1500) == [Usage(2000, 1, 5)]
    assert sorted(await store.mailbox_usage("u1", since=0), key=lambda u: u.at) == [
        Usage(1000, 2, 8),
        Usage(3000, 3, 3),
    ]
    assert await store.mailbox_usage("nobody", since=0) == []


def at_most(
    faxes: int, seen: list[tuple[list[Usage], list[Usage]]] | None = None
) -> Callable[..., str | None]:
    """A judge: refuses once the sender's faxes so far and this mail's would pass ``faxes``."""

    def judge(sender_uses: list[Usage], mailbox_uses: list[Usage]) -> str | None:
        if seen is not None:
            seen.append((list(sender_uses), list(mailbox_uses)))
        return None if sum(u.faxes for u in sender_uses) + 1 <= faxes else "451 4.7.1 too many"

    return judge


async def test_a_mail_goes_in_only_if_it_fits_its_limit_at_the_commit(store: Store) -> None:
    alice = "alice@example.com"
    seen: list[tuple[list[Usage], list[Usage]]] = []
    await store.accept_message(mail(1, at=1000, sender=alice, mailbox="u1", numbers=1, pages=[2]))
    limit = UsageLimit(sender="Alice@Example.com", mailbox="u1", since=500, judge=at_most(2, seen))
    await store.accept_message(
        mail(2, at=1100, sender=alice, mailbox="u1", numbers=1, pages=[1]), limit=limit
    )
    assert seen == [([Usage(1000, 1, 2)], [Usage(1000, 1, 2)])]  # what was stored before, of both
    with pytest.raises(OverLimit) as refused:
        await store.accept_message(
            mail(3, at=1200, sender=alice, mailbox="u1", numbers=1, pages=[1]), limit=limit
        )
    assert refused.value.reply == "451 4.7.1 too many"
    assert await store.message("USE00003") is None  # nothing of it stored
    assert await store.find_job(JobKind.DISPATCH, "USE00003") is None
    assert await store.message("USE00002") is not None
    # Older use than ``since`` does not count; a limit on the mailbox only ignores the sender.
    later = UsageLimit(sender=alice, mailbox=None, since=1150, judge=at_most(2, seen))
    await store.accept_message(
        mail(4, at=1300, sender=alice, mailbox="u2", numbers=1, pages=[1]), limit=later
    )
    assert seen[-1] == ([], [])


async def test_mails_committed_together_count_each_other(store: Store) -> None:
    """Concurrent accepts share one commit: each is judged with those before it that fit."""
    limit = UsageLimit(sender="bob@example.com", mailbox="u9", since=0, judge=at_most(3))
    results = await asyncio.gather(
        *(
            store.accept_message(
                mail(10 + n, at=2000 + n, sender="bob@example.com", mailbox="u9", numbers=1, pages=[1]),
                limit=limit,
            )
            for n in range(6)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 3
    assert all(isinstance(r, OverLimit) for r in results if r is not None)
    assert sum(u.faxes for u in await store.sender_usage("bob@example.com", since=0)) == 3

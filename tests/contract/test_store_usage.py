"""Store contract for the sending limits: recent use per envelope sender and per mailbox."""

from __future__ import annotations

from gateway.store import Store
from gateway.store.base import MessageOptions, NewDocument, NewMessage, Recipient, Usage


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

"""The watchdog's store half on both backends: incidents told once, arrivals counted."""

from __future__ import annotations

from gateway.store import Store


async def test_an_incident_opens_and_closes_once_each(store: Store) -> None:
    assert not await store.incident_open("failures:u1")
    assert await store.set_incident("failures:u1", opened=True, now=10.0)
    assert not await store.set_incident("failures:u1", opened=True, now=11.0)  # told already
    assert await store.incident_open("failures:u1")
    assert not await store.incident_open("failures:u2")
    assert await store.set_incident("failures:u1", opened=False, now=12.0)
    assert not await store.set_incident("failures:u1", opened=False, now=13.0)
    assert not await store.incident_open("failures:u1")


async def test_received_faxes_are_counted_per_mailbox_and_span(store: Store) -> None:
    for n, at in enumerate([100.0, 200.0, 300.0]):
        assert await store.record_received(user_id="u1", fax_id=f"r{n}", metadata={}, now=at)
    await store.record_received(user_id="u2", fax_id="other", metadata={}, now=250.0)
    assert await store.count_received("u1", since=150.0, until=301.0) == 2
    assert await store.count_received("u1", since=301.0, until=900.0) == 0
    assert await store.count_received("u2", since=0.0, until=900.0) == 1


async def test_a_mailbox_without_faxes_has_no_outcomes(store: Store) -> None:
    assert await store.mailbox_outcomes("u1", limit=3) == []


async def test_a_mark_is_made_once(store: Store) -> None:
    assert await store.mark_once("digest:u1:2026-12-02", action="digest sent", now=1.0)
    assert not await store.mark_once("digest:u1:2026-12-02", action="digest sent", now=2.0)
    assert await store.mark_once("digest:u1:2026-12-03", action="digest sent", now=3.0)
    assert not await store.incident_open("digest:u1:2026-12-02")  # a mark is no incident


async def test_an_empty_mailbox_day(store: Store) -> None:
    assert await store.mailbox_day("u1", since=0.0, until=1e10) == []
    assert await store.count_held("u1") == 0

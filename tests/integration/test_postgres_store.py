"""The PostgreSQL store across a server restart: what only a real server can show."""

from __future__ import annotations

import asyncio

from gateway.store import open_store
from tests.pgcluster import PgCluster


async def test_reads_after_a_server_restart_work_at_once(pg_cluster: PgCluster, pg_url: str) -> None:
    """The pool hands out connections unchecked (no round trip per read); the ones the
    restart cut off fail their first read, which is tried once more on a fresh one: no
    read fails once the server is back."""
    store = await open_store(pg_url)
    try:
        for _ in range(5):  # every pooled connection opened and used
            assert await asyncio.gather(*(store.message(f"none-{n}") for n in range(32))) == [None] * 32
        await asyncio.to_thread(pg_cluster.restart)
        assert await asyncio.gather(*(store.message(f"none-{n}") for n in range(32))) == [None] * 32
        assert await store.count_jobs() == {}
    finally:
        await store.close()

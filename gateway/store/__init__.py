"""The store: the durable queue every stage talks through, and the only SQL.

``open_store(url)`` picks the backend by the URL's scheme and returns a ``Store``
(``gateway.store.base``): ``sqlite:///path`` (embedded, one process) or
``postgresql://user:password@host:port/db`` (several instances). Everything else in
the gateway is typed against ``Store`` and imports nothing from ``sqlite/``,
``postgres/`` or a database driver.

Layout: ``base`` (the protocol and its values), ``queries`` (every statement by name),
``ops`` (the transaction logic, written once), ``engine`` (group commit, outages),
``sqlite/`` and ``postgres/`` (connections, dialect, migrations kept in lockstep).

Where work goes (the queue states of ``jobs``): ``queued`` -> ``active`` (claimed, with a
lease of ``workers.lease_s`` renewed every ``workers.heartbeat_s``) -> ``done``; a
transient failure -> ``deferred`` (next attempt at ``run_after``, ``workers.backoff_*``),
until ``workers.lifetime_s`` -> ``failed`` (and the sender's report queued in the same
transaction); a send of unknown outcome never confirmed, or a job that crashed its worker
``workers.max_crashes`` times -> ``held``, until ``fax-gateway queue retry`` (or the admin
page, or a reply) releases it. Nothing leaves the store but through
``database.keep_days``: the bytes of ended mails and received faxes are deleted, the
record stays.

Settings: ``database.url``, ``database.password`` (or ``FAXGW_DATABASE__PASSWORD_FILE``),
``database.keep_days``; the ``workers.*`` above.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.store.base import Store, StoreError

if TYPE_CHECKING:
    from gateway.store.engine import Backend


def backend_for(url: str, *, password: str = "") -> Backend:
    """The backend a database URL names (not yet started)."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteBackend

        return SQLiteBackend(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresBackend

        parts = urlsplit(url)
        if password and parts.password is None:
            netloc = f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{parts.hostname}"
            netloc += f":{parts.port}" if parts.port else ""
            url = urlunsplit(parts._replace(netloc=netloc))
        return PostgresBackend(url)
    raise StoreError(f"unknown database URL scheme: {url.split(':', 1)[0]!r} (sqlite:/// or postgresql://)")


async def open_store(url: str, *, password: str = "") -> Store:
    """Open (and migrate) the store a database URL names; raises StoreError with a sentence."""
    from gateway.store.engine import SqlStore

    return await SqlStore.open(backend_for(url, password=password))


async def check_database(url: str, *, password: str = "") -> tuple[int, str]:
    """``fax-gateway check``'s look at the database, changing nothing: (0 ok, 1 unreachable,
    2 wrong or refused) and a sentence without any password."""
    import asyncio

    try:
        backend = backend_for(url, password=password)
    except StoreError as err:
        return 2, f"database: {err}"
    return await asyncio.to_thread(backend.inspect)


__all__ = ["Store", "StoreError", "backend_for", "check_database", "open_store"]

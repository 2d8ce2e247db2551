"""PostgreSQL: the store several gateway instances share (``postgresql://user:pw@host:port/db``).

Consumes and produces what every store does (``gateway.store.engine`` runs the same
transaction logic over it). What is PostgreSQL's own:

- psycopg 3 with a ``psycopg_pool`` pool for reads and a connection of the writer's own
  (the store's one writer thread) for the group commit; ``synchronous_commit=on``, so
  "250 only after commit" holds as on SQLite; mail bytes stored uncompressed (0011);
- jobs claimed with ``FOR UPDATE SKIP LOCKED``, so instances never wait on each other's
  claims; a mail's tracking and a split mail's pieces are serialised with row and
  advisory locks where two instances could meet;
- ``LISTEN faxgw_jobs`` on a connection of its own (not a pooled one): migration 0010's
  trigger notifies on commit when a job becomes due, and every instance's workers of that
  kind look at once (polling stays as the fallback); the listener reconnects with backoff;
- the schema version in ``schema_version``, migrations applied under an advisory lock so
  that instances starting together migrate once.

An unreachable server is an outage: the pool's connections are checked before use and
replaced, so the store works again without a restart once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool

from gateway.logs import event
from gateway.store.queries import Queries, numbered_scripts

log = logging.getLogger("gateway.store")

CHANNEL = "faxgw_jobs"
_MIGRATION_LOCK = 0x66617867  # "faxg": one migrating instance at a time
_CONNECT_TIMEOUT_S = 3
_POOL_TIMEOUT_S = 3.0


class PostgresQueries(Queries):
    paramstyle = "format"
    SKIP_LOCKED = "FOR UPDATE SKIP LOCKED"
    RELEASE_JOBS = """
    UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0), lease_owner = NULL,
                    lease_until = NULL, updated_at = ?
     WHERE state = 'active' AND lease_owner = ?
    """
    SELECT_FAXES = """
    SELECT fax_id, message_id, destination, status, detail, updated_at
      FROM faxes WHERE message_id = ? ORDER BY seq
    """
    LOCK_MESSAGE = "SELECT 1 FROM messages WHERE id = ? FOR UPDATE"
    LOCK_PARTIAL = "SELECT pg_advisory_xact_lock(hashtext(?))"
    # In hash order, each lock once: two gateways locking overlapping keys cannot deadlock.
    # Two-key locks (class 1819, "usage"): apart from LOCK_PARTIAL's one-key ones.
    LOCK_USAGE = """
    SELECT pg_advisory_xact_lock(1819, h)
      FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(?::text[]) AS k ORDER BY 1) AS keys
    """
    MINUTE = "floor(received_at / 60)"
    READ_RAW = "SELECT substring(raw FROM ? FOR ?) FROM message_raw WHERE message_id = ?"
    READ_DOCUMENT = "SELECT substring(content FROM ? FOR ?), length(content) FROM documents WHERE id = ?"


def migration_scripts() -> list[tuple[int, str]]:
    """The numbered scripts, in order."""
    return numbered_scripts("gateway.store.postgres.migrations")


def schema_version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any], upto: int | None = None) -> int:
    """Apply the migrations not yet applied (up to ``upto``) in one transaction, under an
    advisory lock; returns the schema version. ``conn`` is in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = schema_version(conn)
        if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (0,):
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for number, script in migration_scripts():
            if number <= version or (upto is not None and number > upto):
                continue
            conn.execute(script.encode())  # several statements: no parameters
            conn.execute("UPDATE schema_version SET version = %s", (number,))
            version = number
    return version


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresTx:
    """A pooled connection in a transaction, as ``gateway.store.ops`` uses it."""

    q = PostgresQueries()
    inline_limit: int | None = None  # bytea parameters are bound as they are

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    pipelined = True

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        with self.conn.pipeline():
            yield

    def put_large(self, table: str, key: tuple[Any, ...], data: bytes) -> None:
        raise NotImplementedError("PostgreSQL binds every size in place")

    def read_raw(self, message_id: str, offset: int, size: int) -> bytes:
        row = self.conn.execute(self.q.READ_RAW, (offset + 1, size, message_id)).fetchone()
        if row is None:
            from gateway.store.base import StoreError

            raise StoreError("the raw mail this document lies in is missing")
        return bytes(row[0])

    def read_document(self, document_id: int, offset: int, size: int) -> tuple[bytes, int]:
        row = self.conn.execute(self.q.READ_DOCUMENT, (offset + 1, size, document_id)).fetchone()
        return (b"", 0) if row is None else (bytes(row[0]), int(row[1]))


class PostgresBackend:
    """One PostgreSQL database: a pool for work, a connection of its own for LISTEN."""

    name = "postgresql"
    shared = True
    readers = 4
    errors: tuple[type[BaseException], ...] = (psycopg.Error, psycopg_pool.PoolTimeout)

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._writer: psycopg.Connection[Any] | None = None  # used by the writer thread only

    def describe(self) -> str:
        return without_password(self.url)

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": _CONNECT_TIMEOUT_S,
            "application_name": "fax-gateway",
            "options": "-c synchronous_commit=on",
        }

    def start(self) -> None:
        with psycopg.connect(self.url, **self._connect_kwargs()) as conn:
            migrate(conn)
        self._pool = psycopg_pool.ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.readers + 2,
            kwargs=self._connect_kwargs(),
            timeout=_POOL_TIMEOUT_S,
            check=None,  # no round trip per read: a stale connection's read is tried again
            reconnect_timeout=0,  # keep trying for ever: the server may come back
            open=False,
            name="fax-gateway",
        )
        self._pool.open(wait=True, timeout=_POOL_TIMEOUT_S * 2)

    def inspect(self) -> tuple[int, str]:
        """For ``check``: (0 ok | 1 unreachable | 2 refused or wrong, a sentence); changes nothing."""
        where = self.describe()
        try:
            with psycopg.connect(self.url, **self._connect_kwargs()) as conn:
                version = schema_version(conn)
        except psycopg.OperationalError as err:
            state = getattr(err, "sqlstate", None)
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            if state == "28P01" or "password authentication failed" in text:
                return 2, f"database: {where} refused the user name and password"
            if state == "3D000" or "does not exist" in text:
                return 2, f"database: {where}: the database does not exist (create it: createdb)"
            return 1, f"database: cannot reach {where}: {text}"
        latest = migration_scripts()[-1][0]
        if version > latest:
            return 2, f"database: {where} has schema version {version}, newer than this gateway's {latest}"
        if version < latest:
            return 0, f"database: {where} answers; schema version {version}, serve brings it to {latest}"
        return 0, f"database: {where} answers; schema version {version} is current"

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        if self._writer is not None:
            with contextlib.suppress(psycopg.Error):
                self._writer.close()
            self._writer = None
        if self._pool is not None:
            self._pool.close(timeout=5)
            self._pool = None

    def _conn(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        if self._pool is None:
            from gateway.store.base import StoreError

            raise StoreError("the store is closed")
        return self._pool.connection()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        """On the writer's own connection (the store's one writer thread): no pool check
        and hand-over per commit; a broken one is replaced at the next transaction."""
        conn = self._writer
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            conn = self._writer = psycopg.connect(self.url, **self._connect_kwargs())
        with conn.transaction():
            yield PostgresTx(conn)

    @contextlib.contextmanager
    def reading(self) -> Iterator[PostgresTx]:
        with self._conn() as conn:
            yield PostgresTx(conn)

    def stale(self, err: BaseException) -> bool:
        # The pool does not check a connection before handing it out (a round trip per
        # read): after a server restart, an idle one fails its first use and is discarded;
        # the others left idle are checked now, once, so the next try gets a live one.
        if not isinstance(err, psycopg.OperationalError) or isinstance(err, psycopg.errors.QueryCanceled):
            return False
        if self._pool is not None:
            with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                self._pool.check()
        return True

    def is_outage(self, err: BaseException) -> bool:
        return isinstance(err, psycopg.OperationalError | psycopg_pool.PoolTimeout)

    # -- wake-ups across instances -----------------------------------------------------------
    def listen(self, wake: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()

        def heard(kind: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while stopping
                loop.call_soon_threadsafe(wake, kind)

        self._listener = threading.Thread(
            target=self._listen, args=(heard,), name="store-listen", daemon=True
        )
        self._listener.start()

    def _listen(self, heard: Callable[[str], None]) -> None:
        delay = 1.0
        lost = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, **self._connect_kwargs()) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if lost:
                        log.info("listening for other instances' jobs again", extra=event("listen"))
                    lost, delay = False, 1.0
                    for kind in ("dispatch", "track", "report", "deliver", "partial"):
                        heard(kind)  # whatever was queued while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            heard(note.payload)
            except psycopg.Error as err:
                if not lost:
                    log.warning(
                        "cannot listen for other instances' jobs (polling meanwhile): %s",
                        err,
                        extra=event("listen lost"),
                    )
                lost = True
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

"""SQLite, the embedded default store: WAL mode, ``synchronous=FULL``, one writer.

Everything SQLite-only lives here: the pragmas, ``user_version`` as the schema version,
the migrations in ``migrations/``, incremental BLOB I/O for big raw mails and documents
(written and read a chunk at a time, so SQLite never holds extra copies), and reader
connections kept per thread (WAL readers never block the writer). The group commit
itself is the shared one in ``gateway.store.engine``.

Only one gateway process may use a SQLite file: ``shared`` is False.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.store.base import StoreError
from gateway.store.queries import Queries, numbered_scripts

_CHUNK = 1 << 20
_IN_PLACE = 1 << 20  # bigger raw mails and documents are written a chunk at a time


class SQLiteQueries(Queries):
    paramstyle = "qmark"
    SIZE_RAW = "UPDATE message_raw SET raw = zeroblob(?) WHERE message_id = ? RETURNING rowid"
    SIZE_DOCUMENT = "UPDATE documents SET content = zeroblob(?) WHERE message_id = ? AND seq = ? RETURNING id"
    RAW_ROW = "SELECT rowid FROM message_raw WHERE message_id = ?"


def migration_scripts() -> list[tuple[int, str]]:
    """The numbered scripts, in order."""
    return numbered_scripts("gateway.store.sqlite.migrations")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the numbered migrations not yet applied (up to ``upto``); returns the schema version."""
    version = schema_version(conn)
    for number, script in migration_scripts():
        if number <= version or (upto is not None and number > upto):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = number
    return version


class SQLiteTx:
    """A connection in a transaction, as ``gateway.store.ops`` uses it."""

    q = SQLiteQueries()
    inline_limit: int | None = _IN_PLACE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    pipelined = False

    def together(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # in-process: nothing to wait for

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self.conn.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO item")
            self.conn.execute("RELEASE item")
            raise
        self.conn.execute("RELEASE item")

    def put_large(self, table: str, key: tuple[Any, ...], data: bytes) -> None:
        """Size the blob, then write ``data`` into it a chunk at a time."""
        size, column = (
            (self.q.SIZE_RAW, "raw") if table == "message_raw" else (self.q.SIZE_DOCUMENT, "content")
        )
        (row,) = self.conn.execute(size, (len(data), *key)).fetchone()
        view = memoryview(data)
        with self.conn.blobopen(table, column, row) as blob:
            for at in range(0, len(data), _CHUNK):
                blob.write(view[at : at + _CHUNK])

    def read_raw(self, message_id: str, offset: int, size: int) -> bytes:
        row = self.conn.execute(self.q.RAW_ROW, (message_id,)).fetchone()
        if row is None:
            raise StoreError("the raw mail this document lies in is missing")
        with self.conn.blobopen("message_raw", "raw", row[0], readonly=True) as blob:
            blob.seek(offset)
            return blob.read(size)

    def read_document(self, document_id: int, offset: int, size: int) -> tuple[bytes, int]:
        with self.conn.blobopen("documents", "content", document_id, readonly=True) as blob:
            blob.seek(offset)
            return blob.read(size), len(blob)


class SQLiteBackend:
    """One SQLite file: a writer connection, and one reader connection per reader thread."""

    name = "sqlite"
    shared = False
    readers = 3
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def describe(self) -> str:
        return str(self.path)

    def start(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Readable by the gateway's user only: it holds every document faxed. SQLite
            # gives its -wal and -shm files the database file's permissions.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as err:
            raise sqlite3.OperationalError(f"cannot make its file: {err.strerror}") from err
        conn = connect(self.path)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        if mode != "wal" or sync != 2:
            conn.close()
            raise StoreError(
                f"{self.path}: SQLite would not enter WAL mode with synchronous=FULL "
                f"(journal_mode={mode}, synchronous={sync})"
            )
        migrate(conn)
        self._writer = conn

    def inspect(self) -> tuple[int, str]:
        """For ``check``: (0 ok | 2 wrong, a sentence); changes nothing."""
        if not self.path.exists():
            return 0, f"database: {self.path} does not exist yet; serve creates it"
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                version = schema_version(conn)
            finally:
                conn.close()
        except sqlite3.Error as err:
            return 2, f"database: {self.path} cannot be read as SQLite: {err}"
        latest = migration_scripts()[-1][0]
        if version > latest:
            return (
                2,
                f"database: {self.path} has schema version {version}, newer than this gateway's {latest}",
            )
        return 0, f"database: {self.path}, schema version {version}" + (
            " (current)" if version == latest else f", serve brings it to {latest}"
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SQLiteTx]:
        conn = self._writer
        if conn is None:
            raise StoreError("the store is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SQLiteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[SQLiteTx]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        yield SQLiteTx(conn)

    def stale(self, err: BaseException) -> bool:
        return False  # a file does not go away between reads

    def is_outage(self, err: BaseException) -> bool:
        return False  # disk full or locked: replaying item by item is cheap and says which

    def listen(self, wake: Callable[[str], None]) -> None:
        """One process per file: its own workers are nudged in-process."""

"""SQLite backend: WAL mode, ``synchronous=FULL``, group commit.

Writes from every coroutine are queued to one writer thread, which applies everything
pending in one transaction and commits once: one fsync serves many SMTP sessions, and
each caller's future resolves only after that commit returned. Accepted mails of a batch
go in with one multi-row statement per table; when an item fails, the batch is replayed
with each item in its own SAVEPOINT, so one failing item does not take the others down.
Reads run on reader connections in their own threads; WAL lets them proceed while the
writer writes.

A PDF that arrived as clean base64 is kept once, inside the raw mail: its document row
holds where the text lies (``raw_start``, ``raw_end``) and ``document_chunks`` decodes it
from there. Large documents and raw mails are read back with incremental BLOB I/O, a
chunk at a time.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from gateway.store import queries as q
from gateway.store.base import (
    Event,
    FaxRecord,
    Job,
    JobKind,
    JobState,
    NewDocument,
    NewJob,
    NewMessage,
    PollRecord,
    ReceivedRecord,
    Recipient,
    StoredDocument,
    StoredMessage,
    StoreError,
    Usage,
    dumps,
)

T = TypeVar("T")
_MAX_BATCH = 256
_READERS = 3  # reader threads, each with its own connection (WAL readers never block)


def _migrations() -> list[tuple[int, str]]:
    found = []
    for item in resources.files("gateway.store.migrations").iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), item.read_text(encoding="utf-8")))
    return sorted(found)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the numbered migrations not yet applied (up to ``upto``); returns the schema version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, script in _migrations():
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


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        kind=JobKind(row[1]),
        ref=row[2],
        state=JobState(row[3]),
        payload=json.loads(row[4]),
        attempts=row[5],
        run_after=row[6],
        created_at=row[7],
        last_error=row[8],
        lease_owner=row[9],
    )


_IN_PLACE = 1 << 20  # bigger raw mails and documents are written a chunk at a time
_CHUNK = 1 << 20
_ROWS_PER_INSERT = 64  # x 14 columns stays far below SQLite's 32,766 parameters


@dataclass(frozen=True)
class _Accepted:
    """A write item for one accepted mail; the writer inserts a batch's together."""

    message: NewMessage

    def __call__(self, conn: sqlite3.Connection) -> None:  # alone, when its batch is replayed
        _insert_accepted(conn, [self.message])


def _insert_accepted(conn: sqlite3.Connection, messages: list[NewMessage]) -> None:
    """Accepted mails, all at once: one multi-row statement per table.

    A raw mail or document over ``_IN_PLACE`` goes in empty and is then written a chunk
    at a time through incremental BLOB I/O: bound as a parameter, SQLite would hold two
    more copies of it while inserting.
    """
    if not messages:
        return
    documents = [_document_row(m, seq, doc) for m in messages for seq, doc in enumerate(m.documents)]
    jobs = [(JobKind.DISPATCH, m.id, "{}", m.received_at, m.received_at, m.received_at) for m in messages]
    for sql, rows in (
        (q.INSERT_MESSAGE, [_message_row(m) for m in messages]),
        (q.INSERT_RAW, [(m.id, b"" if len(m.raw) > _IN_PLACE else m.raw) for m in messages]),
        (q.INSERT_DOCUMENT, documents),
        (q.INSERT_JOB, jobs),
        (q.INSERT_EVENT, [(m.received_at, m.id, None, "accepted", m.auth) for m in messages]),
    ):
        for at in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[at : at + _ROWS_PER_INSERT]
            conn.execute(q.many_rows(sql, len(part)), [value for row in part for value in row])
    for m in messages:
        if len(m.raw) > _IN_PLACE:
            _write_blob(conn, q.SIZE_RAW, (len(m.raw), m.id), "message_raw", "raw", m.raw)
        for seq, doc in enumerate(m.documents):
            if _written_apart(doc):
                args = (len(doc.content), m.id, seq)
                _write_blob(conn, q.SIZE_DOCUMENT, args, "documents", "content", doc.content)


def _message_row(message: NewMessage) -> tuple[Any, ...]:
    recipients = [{"number": r.number, "pretty": r.pretty, "name": r.name} for r in message.recipients]
    return (
        message.id,
        message.received_at,
        message.mailbox_user_id,
        message.envelope_from,
        message.header_from,
        message.report_to,
        message.auth,
        message.message_id,
        message.subject,
        dumps(recipients),
        dumps(message.options),
        message.envelope_from.lower(),
        len(message.recipients),
        len(message.recipients) * sum(d.pages for d in message.documents),
    )


def _written_apart(doc: NewDocument) -> bool:
    return doc.raw_span is None and len(doc.content) > _IN_PLACE


def _document_row(message: NewMessage, seq: int, doc: NewDocument) -> tuple[Any, ...]:
    """A document row; one found as clean base64 in the raw mail keeps only where it is."""
    start, end = doc.raw_span if doc.raw_span is not None else (None, None)
    content = b"" if doc.raw_span is not None or _written_apart(doc) else doc.content
    return (message.id, seq, doc.filename, doc.document_type, doc.detected, doc.pages, doc.size,
            content, start, end)  # fmt: skip


def _write_blob(
    conn: sqlite3.Connection, size: str, args: tuple[Any, ...], table: str, column: str, data: bytes
) -> None:
    """Size the blob (``size`` returns its row), then write ``data`` into it a chunk at a time."""
    (row,) = conn.execute(size, args).fetchone()
    view = memoryview(data)
    with conn.blobopen(table, column, row) as blob:
        for at in range(0, len(data), _CHUNK):
            blob.write(view[at : at + _CHUNK])


class SQLiteStore:
    """See the module docstring. Open with ``await SQLiteStore.open(path)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self._read_pool = ThreadPoolExecutor(_READERS, thread_name_prefix="store-read")
        self._local = threading.local()  # each reader thread keeps its own connection
        self._reader_conns: list[sqlite3.Connection] = []
        self._closed = False
        self._writer_conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self.commits = 0  # physical commits, for the group-commit benchmark

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        store = cls(path)
        await store._start()
        return store

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def setup() -> sqlite3.Connection:
            conn = _connect(self.path)
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            if mode != "wal" or sync != 2:
                raise StoreError(
                    f"{self.path}: SQLite would not enter WAL mode with synchronous=FULL "
                    f"(journal_mode={mode}, synchronous={sync})"
                )
            migrate(conn)
            return conn

        try:
            self._writer_conn = await loop.run_in_executor(self._write_pool, setup)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the database {self.path}: {err}") from err
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        if self._writer_task is not None:
            with contextlib.suppress(StoreError):  # a barrier: everything before it is committed
                await self._write(lambda conn: None)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        loop = asyncio.get_running_loop()
        if self._writer_conn is not None:
            await loop.run_in_executor(self._write_pool, self._writer_conn.close)
        self._closed = True
        self._read_pool.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._write_pool.shutdown(wait=True)

    # -- plumbing --------------------------------------------------------------
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer_task is None:
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                try:
                    results = await loop.run_in_executor(self._write_pool, self._apply, batch)
                except sqlite3.Error as err:
                    failure = StoreError(f"the database could not commit: {err}")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    def _apply(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        """One transaction for the batch; an item that raises is left out, not the others.

        Accepted mails of the batch go in together (``_insert_accepted``), then the other
        items run straight after one another. Only when something raises is the
        transaction rolled back and the batch run again item by item, each within a
        savepoint (so an item may run twice: items only touch the database).
        """
        conn = self._writer_conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _insert_accepted(conn, [fn.message for fn, _ in batch if isinstance(fn, _Accepted)])
                results: list[tuple[bool, Any]] = [
                    (True, None if isinstance(fn, _Accepted) else fn(conn)) for fn, _ in batch
                ]
            except Exception:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                results = [self._apply_one(conn, fn) for fn, _ in batch]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    @staticmethod
    def _apply_one(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
        conn.execute("SAVEPOINT item")
        try:
            value = fn(conn)
        except Exception as err:
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            return False, (err if not isinstance(err, sqlite3.Error) else StoreError(str(err)))
        conn.execute("RELEASE item")
        return True, value

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._read_pool, lambda: fn(self._reader())
            )
        except sqlite3.Error as err:
            raise StoreError(f"the database could not be read: {err}") from err

    # -- intake ----------------------------------------------------------------
    async def accept_message(self, message: NewMessage) -> None:
        """One transaction: the message, its documents, its dispatch job, its first event.

        The accepted mails of a commit batch go in together, one multi-row statement per
        table (``_insert_accepted``): each statement costs the writer thread the GIL once
        more when it returns, and the event loop holds the GIL most of the time under
        load, so five statements a batch instead of five a mail keeps a commit short.
        The raw mail has a table of its own (migration 0007), so its row holds nothing else.
        """
        await self._write(_Accepted(message))

    # -- jobs ------------------------------------------------------------------
    async def enqueue(
        self,
        kind: JobKind,
        ref: str,
        payload: dict[str, Any],
        *,
        now: float,
        run_after: float | None = None,
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(q.INSERT_JOB, (kind, ref, dumps(payload), run_after or now, now, now))
            return cur.rowcount == 1

        return await self._write(apply)

    async def claim(self, kind: JobKind, *, owner: str, now: float, lease_s: float) -> Job | None:
        def apply(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(q.CLAIM_JOB, (owner, now + lease_s, now, kind, now, now)).fetchone()
            return None if row is None else _job(row)

        return await self._write(apply)

    async def defer(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        run_after: float,
        error: str,
        payload: dict[str, Any] | None = None,
    ) -> bool:
        encoded = None if payload is None else dumps(payload)

        def apply(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(q.DEFER_JOB, (run_after, error, encoded, now, job.id, owner))
            return cur.rowcount == 1

        return await self._write(apply)

    async def finish(
        self, job: Job, *, owner: str, now: float, state: JobState, error: str | None = None
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            return conn.execute(q.FINISH_JOB, (state, error, now, job.id, owner)).rowcount == 1

        return await self._write(apply)

    async def release(self, *, owner: str, now: float) -> int:
        return await self._write(lambda conn: conn.execute(q.RELEASE_JOBS, (now, owner)).rowcount)

    async def set_job_state(
        self, job_id: int, state: JobState, *, now: float, run_after: float | None = None
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            return conn.execute(q.SET_JOB_STATE, (state, run_after, now, job_id)).rowcount == 1

        return await self._write(apply)

    async def jobs(
        self,
        *,
        kind: JobKind | None = None,
        state: JobState | None = None,
        older_than: float | None = None,
        limit: int = 100,
    ) -> list[Job]:
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(str(kind))
        if state is not None:
            where.append("state = ?")
            args.append(str(state))
        if older_than is not None:
            where.append("created_at < ?")
            args.append(older_than)  # type: ignore[arg-type]
        sql = q.SELECT_JOB_COLUMNS + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        return await self._read(lambda conn: [_job(r) for r in conn.execute(sql, (*args, limit)).fetchall()])

    async def job(self, job_id: int) -> Job | None:
        def read(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(q.SELECT_JOB_COLUMNS + " WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else _job(row)

        return await self._read(read)

    async def find_job(self, kind: JobKind, ref: str) -> Job | None:
        def read(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(q.SELECT_JOB_COLUMNS + " WHERE kind = ? AND ref = ?", (kind, ref)).fetchone()
            return None if row is None else _job(row)

        return await self._read(read)

    async def count_jobs(self) -> dict[tuple[str, str], int]:
        return await self._read(lambda conn: {(k, s): n for k, s, n in conn.execute(q.COUNT_JOBS).fetchall()})

    # -- messages and faxes -----------------------------------------------------
    async def message(self, message_id: str) -> StoredMessage | None:
        def read(conn: sqlite3.Connection) -> StoredMessage | None:
            row = conn.execute(q.SELECT_MESSAGE, (message_id,)).fetchone()
            if row is None:
                return None
            docs = tuple(StoredDocument(*d) for d in conn.execute(q.SELECT_DOCUMENTS, (message_id,)))
            return StoredMessage(
                id=row[0],
                received_at=row[1],
                mailbox_user_id=row[2],
                envelope_from=row[3],
                header_from=row[4],
                report_to=row[5],
                auth=row[6],
                message_id=row[7],
                subject=row[8],
                recipients=tuple(Recipient(**r) for r in json.loads(row[9])),
                options=json.loads(row[10]),
                submit_state=row[11],
                documents=docs,
                purged_at=row[12],
            )

        return await self._read(read)

    async def raw_message(self, message_id: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(q.SELECT_RAW, (message_id,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(read)

    async def document_chunks(self, document_id: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        source = await self._read(
            lambda conn: conn.execute(q.SELECT_DOCUMENT_SOURCE, (document_id,)).fetchone()
        )
        if source is not None and source[0] is not None:  # base64 within the raw mail
            async for chunk in self._decoded_from_raw(*source, chunk_size=chunk_size):
                yield chunk
            return
        offset = 0
        while True:

            def read(conn: sqlite3.Connection, offset: int = offset) -> tuple[bytes, int]:
                with conn.blobopen("documents", "content", document_id, readonly=True) as blob:
                    blob.seek(offset)
                    return blob.read(chunk_size), len(blob)

            chunk, size = await self._read(read)
            if chunk:
                offset += len(chunk)
                yield chunk
            if not chunk or offset >= size:  # the last chunk says so: no read just to see the end
                return

    async def _decoded_from_raw(
        self, start: int, end: int, raw_row: int | None, *, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Decode base64 text at raw[start:end] a chunk at a time (line breaks skipped)."""
        if raw_row is None:
            raise StoreError("the raw mail this document lies in is missing")
        step = (chunk_size // 3) * 4  # about chunk_size bytes decoded per read
        carry = b""
        at = start
        while at < end:

            def read(conn: sqlite3.Connection, at: int = at) -> bytes:
                with conn.blobopen("message_raw", "raw", raw_row, readonly=True) as blob:
                    blob.seek(at)
                    return blob.read(min(step, end - at))

            text = await self._read(read)
            if not text:
                raise StoreError("the raw mail ends before the document it holds")
            at += len(text)
            text = carry + text.replace(b"\r", b"").replace(b"\n", b"")
            whole = len(text) - len(text) % 4
            carry = text[whole:]
            if whole:
                yield binascii.a2b_base64(text[:whole])
        if carry:
            yield binascii.a2b_base64(carry)

    async def set_submit_state(self, message_id: str, state: str, *, now: float) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute(q.SET_SUBMIT_STATE, (state, message_id))
            conn.execute(q.INSERT_EVENT, (now, message_id, None, state, ""))

        await self._write(apply)

    async def record_submission(
        self, job: Job, *, owner: str, now: float, faxes: Sequence[tuple[str, str]], note: str
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            done = conn.execute(q.FINISH_JOB, (JobState.DONE, None, now, job.id, owner))
            if done.rowcount != 1:
                return False  # our lease was taken over: the new owner records it
            conn.execute(q.SET_SUBMIT_STATE, ("submitted", job.ref))
            for fax_id, destination in faxes:
                conn.execute(q.INSERT_FAX, (fax_id, job.ref, destination, now))
                conn.execute(q.INSERT_JOB, (JobKind.TRACK, fax_id, "{}", now, now, now))
                conn.execute(q.INSERT_EVENT, (now, job.ref, fax_id, "submitted", destination))
            conn.execute(q.INSERT_EVENT, (now, job.ref, None, "handed to eFax", note))
            return True

        return await self._write(apply)

    async def faxes(self, message_id: str) -> list[FaxRecord]:
        def read(conn: sqlite3.Connection) -> list[FaxRecord]:
            rows = conn.execute(q.SELECT_FAXES, (message_id,)).fetchall()
            return [FaxRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

        return await self._read(read)

    async def add_event(
        self,
        action: str,
        *,
        now: float,
        message_id: str | None = None,
        fax_id: str | None = None,
        detail: str = "",
    ) -> None:
        await self._write(
            lambda conn: conn.execute(q.INSERT_EVENT, (now, message_id, fax_id, action, detail))
        )

    async def events(self, message_id: str) -> list[Event]:
        return await self._read(
            lambda conn: [Event(*r) for r in conn.execute(q.SELECT_EVENTS, (message_id, message_id))]
        )

    async def fax(self, fax_id: str) -> FaxRecord | None:
        def read(conn: sqlite3.Connection) -> FaxRecord | None:
            r = conn.execute(q.SELECT_FAX, (fax_id,)).fetchone()
            return None if r is None else FaxRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5])

        return await self._read(read)

    async def update_fax(self, fax_id: str, *, status: str, detail: dict[str, Any], now: float) -> None:
        await self._write(lambda conn: conn.execute(q.UPDATE_FAX, (status, dumps(detail), now, fax_id)))

    async def finish_and_enqueue(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        state: JobState,
        error: str | None = None,
        enqueue: Sequence[NewJob] = (),
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            if conn.execute(q.FINISH_JOB, (state, error, now, job.id, owner)).rowcount != 1:
                return False
            for new in enqueue:
                conn.execute(
                    q.INSERT_JOB,
                    (new.kind, new.ref, dumps(new.payload), new.run_after or now, now, now),
                )
            return True

        return await self._write(apply)

    async def expedite(self, kind: JobKind, ref: str, *, now: float) -> bool:
        return await self._write(
            lambda conn: conn.execute(q.EXPEDITE_JOB, (now, now, kind, ref)).rowcount == 1
        )

    # -- received faxes ------------------------------------------------------------
    async def record_received(
        self, *, user_id: str, fax_id: str, metadata: dict[str, Any], now: float
    ) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(q.INSERT_RECEIVED, (fax_id, user_id, now, dumps(metadata), now))
            if cur.rowcount != 1:
                return False
            conn.execute(q.INSERT_JOB, (JobKind.DELIVER, fax_id, "{}", now, now, now))
            conn.execute(q.INSERT_EVENT, (now, None, fax_id, "received", user_id))
            return True

        return await self._write(apply)

    async def received(self, fax_id: str) -> ReceivedRecord | None:
        def read(conn: sqlite3.Connection) -> ReceivedRecord | None:
            r = conn.execute(q.SELECT_RECEIVED, (fax_id,)).fetchone()
            if r is None:
                return None
            return ReceivedRecord(
                fax_id=r[0],
                user_id=r[1],
                seen_at=r[2],
                metadata=json.loads(r[3]),
                state=r[4],
                delivered_to=tuple(json.loads(r[5])),
                updated_at=r[6],
                has_image=bool(r[7]),
            )

        return await self._read(read)

    async def received_image(self, fax_id: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            r = conn.execute(q.SELECT_RECEIVED_IMAGE, (fax_id,)).fetchone()
            return None if r is None or r[0] is None else bytes(r[0])

        return await self._read(read)

    async def store_received_image(self, fax_id: str, image: bytes, *, now: float) -> None:
        await self._write(lambda conn: conn.execute(q.STORE_RECEIVED_IMAGE, (image, now, fax_id)))

    async def update_received(
        self,
        fax_id: str,
        *,
        now: float,
        state: str | None = None,
        delivered_to: Sequence[str] | None = None,
    ) -> None:
        encoded = None if delivered_to is None else dumps(sorted(set(delivered_to)))
        await self._write(lambda conn: conn.execute(q.UPDATE_RECEIVED, (state, encoded, now, fax_id)))

    async def record_poll(self, user_id: str, *, now: float, ok: bool, error: str | None = None) -> None:
        await self._write(
            lambda conn: conn.execute(q.UPSERT_POLL, (user_id, now, now if ok else None, error))
        )

    async def polls(self) -> list[PollRecord]:
        return await self._read(
            lambda conn: [PollRecord(*r) for r in conn.execute(q.SELECT_POLLS).fetchall()]
        )

    # -- tracking --------------------------------------------------------------------
    async def finish_fax(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        status: str,
        detail: dict[str, Any],
        note: str,
        final_statuses: Sequence[str],
        report: NewJob | None = None,
    ) -> tuple[bool, bool]:
        finals = dumps(list(final_statuses))

        def apply(conn: sqlite3.Connection) -> tuple[bool, bool]:
            if conn.execute(q.FINISH_JOB, (JobState.DONE, None, now, job.id, owner)).rowcount != 1:
                return False, False
            conn.execute(q.UPDATE_FAX, (status, dumps(detail), now, job.ref))
            row = conn.execute(q.SELECT_FAX, (job.ref,)).fetchone()
            conn.execute(q.INSERT_EVENT, (now, row[1] if row else None, job.ref, status, note))
            if report is None:
                return True, False
            unfinished = conn.execute(q.COUNT_UNFINISHED_FAXES, (job.ref, finals)).fetchone()[0]
            if unfinished:
                return True, False
            cur = conn.execute(
                q.INSERT_JOB,
                (report.kind, report.ref, dumps(report.payload), report.run_after or now, now, now),
            )
            return True, cur.rowcount == 1

        return await self._write(apply)

    # -- retention (database.keep_days) -----------------------------------------------
    async def purge(self, *, before: float, now: float, limit: int = 200) -> tuple[int, int]:
        def apply(conn: sqlite3.Connection) -> tuple[int, int]:
            ids = [(row[0],) for row in conn.execute(q.SELECT_PURGEABLE, (before, limit))]
            conn.executemany(q.PURGE_RAW, ids)
            conn.executemany(q.PURGE_DOCUMENTS, ids)
            conn.executemany(q.MARK_PURGED, [(now, i) for (i,) in ids])
            received = conn.execute(q.PURGE_RECEIVED_IMAGES, (before, limit)).rowcount
            return len(ids), received

        return await self._write(apply)

    # -- health ------------------------------------------------------------------------
    async def touch(self, *, now: float) -> None:
        await self._write(lambda conn: conn.execute(q.TOUCH_HEALTH, (now,)))

    # -- sending limits ----------------------------------------------------------------
    async def sender_usage(self, sender: str, *, since: float) -> list[Usage]:
        rows = await self._read(lambda conn: conn.execute(q.SENDER_USAGE, (sender, since)).fetchall())
        return [Usage(*r) for r in rows]

    async def mailbox_usage(self, mailbox_user_id: str, *, since: float) -> list[Usage]:
        args = (mailbox_user_id, since)
        rows = await self._read(lambda conn: conn.execute(q.MAILBOX_USAGE, args).fetchall())
        return [Usage(*r) for r in rows]

    # -- message/partial pieces -------------------------------------------------------------
    async def add_partial(
        self,
        *,
        sender_key: str,
        partial_id: str,
        number: int,
        total: int | None,
        raw: bytes,
        now: float,
        expire_at: float,
        payload: dict[str, Any],
    ) -> list[bytes] | None:
        key = (sender_key, partial_id)

        def apply(conn: sqlite3.Connection) -> list[bytes] | None:
            first = not conn.execute(q.SELECT_PARTIAL_NUMBERS, key).fetchone()
            conn.execute(q.INSERT_PARTIAL, (*key, number, total, now, raw))
            if first:
                ref = f"{sender_key} {partial_id}"
                conn.execute(q.INSERT_JOB, (JobKind.PARTIAL, ref, dumps(payload), expire_at, now, now))
            rows = conn.execute(q.SELECT_PARTIAL_NUMBERS, key).fetchall()
            totals = {t for _, t in rows if t is not None}
            if len(totals) != 1 or {n for n, _ in rows} != set(range(1, totals.pop() + 1)):
                return None
            return [bytes(r[0]) for r in conn.execute(q.SELECT_PARTIAL_RAW, key)]

        return await self._write(apply)

    async def partial_pieces(self, *, sender_key: str, partial_id: str) -> list[tuple[int, int | None]]:
        return await self._read(
            lambda conn: [(n, t) for n, t in conn.execute(q.SELECT_PARTIAL_NUMBERS, (sender_key, partial_id))]
        )

    async def drop_partial(self, *, sender_key: str, partial_id: str) -> None:
        await self._write(lambda conn: conn.execute(q.DELETE_PARTIAL, (sender_key, partial_id)))

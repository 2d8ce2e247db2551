"""``SqlStore``: the ``Store`` protocol over a backend, with group commit, written once.

Writes from every coroutine are queued to one writer thread, which applies everything
pending in one transaction and commits once: one commit (one fsync) serves many SMTP
sessions, and each caller's future resolves only after that commit returned. Accepted
mails of a batch go in with one multi-row statement per table. When an item fails, the
batch is replayed with each item in its own savepoint, so one failing item does not
take the others down. Reads run on reader threads, each with its own connection.

A backend (``gateway.store.sqlite``, ``gateway.store.postgres``) says how to open a
write transaction and a read connection, which of its errors mean "the database is not
there", and, when several processes may share it, how to hear their wake-ups.

An outage (the database unreachable, the disk full) is logged once when it starts and
once when it ends; every call meanwhile raises ``StoreError``, which the SMTP side turns
into ``451 4.3.0`` and the workers into a pause. While the backend says the database is
unreachable, calls fail at once but for one probe each ``OUTAGE_PROBE_S``, so that
neither a client nor ``/readyz`` waits on connection timeouts, and the first probe that
gets through ends the outage.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.logs import event
from gateway.store import ops
from gateway.store.base import (
    Event,
    FaxRecord,
    Job,
    JobKind,
    JobState,
    NewJob,
    NewMessage,
    OverLimit,
    PollRecord,
    ReceivedRecord,
    Recipient,
    ReplyToken,
    StoredMessage,
    StoreError,
    Usage,
    UsageLimit,
)
from gateway.store.ops import Tx

T = TypeVar("T")
log = logging.getLogger("gateway.store")
_MAX_BATCH = 256
OUTAGE_PROBE_S = 1.0
_READ_ATTEMPTS = 3  # a read on connections the server dropped: tried this often in all


class Backend(Protocol):
    """What a database offers ``SqlStore``; every method but ``start``/``close``/``listen``
    runs in a thread of the store's own."""

    name: str  # "sqlite" | "postgresql"
    shared: bool  # several gateway processes may use it at once
    readers: int  # reader threads
    errors: tuple[type[BaseException], ...]  # the driver's errors

    def start(self) -> None:
        """Connect and bring the schema up to date (in the writer thread)."""

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction: commits when the block ends, rolls back when it raises."""

    def reading(self) -> AbstractContextManager[Tx]:
        """A connection for reads (each reader thread may keep its own)."""

    def stale(self, err: BaseException) -> bool:
        """A read failed on a connection that had gone (the server restarted): worth
        another try on another connection. The backend checks its other idle connections
        meanwhile (they went with it)."""

    def is_outage(self, err: BaseException) -> bool:
        """Is this the database being unreachable (not worth replaying item by item)?"""

    def listen(self, wake: Callable[[str], None]) -> None:
        """Start hearing other processes' new jobs (``wake(kind)``); no-op when not shared."""

    def describe(self) -> str:
        """Where the database is, without any password."""

    def inspect(self) -> tuple[int, str]:
        """For ``check``: reachable, credentials, schema version; a status and a sentence."""


@dataclass(frozen=True)
class _Accepted:
    """A write item for one accepted mail; the writer inserts a batch's together."""

    message: NewMessage
    limit: UsageLimit | None = None

    def __call__(self, tx: Tx) -> None:  # alone, when its batch is replayed (in a savepoint)
        try:
            ops.accept_within_limits(tx, [(self.message, self.limit)])
        except ops.Refit as refit:
            raise OverLimit(refit.refused[self.message.id]) from None


class SqlStore:
    """The store over one backend. ``await SqlStore.open(backend)``; ``await close()``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self._read_pool = ThreadPoolExecutor(backend.readers, thread_name_prefix="store-read")
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._down: str | None = None  # what the current outage said, while it lasts
        self._down_at = 0.0  # monotonic: when it was noticed
        self._unreachable_until = 0.0  # monotonic: until then, fail at once (no probe)
        self.commits = 0  # physical commits, for the group-commit benchmark

    @classmethod
    async def open(cls, backend: Backend) -> SqlStore:
        store = cls(backend)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(store._write_pool, backend.start)
        except backend.errors as err:
            store._shutdown_pools()
            raise StoreError(f"cannot open the database {backend.describe()}: {err}") from err
        except BaseException:
            store._shutdown_pools()
            raise
        store._writer_task = asyncio.create_task(store._write_loop(), name="store-writer")
        return store

    @property
    def shared(self) -> bool:
        return self.backend.shared

    def listen(self, wake: Callable[[JobKind], None]) -> None:
        """Call ``wake(kind)`` when another process sharing the database queued a job."""

        def heard(kind: str) -> None:
            with contextlib.suppress(ValueError):
                wake(JobKind(kind))

        self.backend.listen(heard)

    async def close(self) -> None:
        if self._writer_task is not None:
            with contextlib.suppress(StoreError):  # a barrier: everything before it is committed
                await self._write(lambda tx: None)
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._write_pool, self.backend.close)
        self._shutdown_pools()

    def _shutdown_pools(self) -> None:
        self._read_pool.shutdown(wait=True)
        self._write_pool.shutdown(wait=True)

    # -- outages -------------------------------------------------------------------------
    def _failed(self, err: BaseException, doing: str) -> StoreError:
        text = f"the database could not {doing}: {err}".strip()
        if self.backend.is_outage(err):
            self._unreachable_until = time.monotonic() + OUTAGE_PROBE_S
        if self._down is None:
            self._down, self._down_at = text, time.monotonic()
            log.error("%s", text, extra=event("store down", backend=self.backend.name))
        return StoreError(text)

    def _fail_fast(self) -> None:
        if self._down is not None and time.monotonic() < self._unreachable_until:
            raise StoreError(self._down)

    def _worked(self, started: float) -> None:
        """Something ``started`` (monotonic) worked. Begun before the outage was noticed,
        it says nothing of the database now (it may have finished just before it went)."""
        if self._down is not None and started < self._down_at:
            return
        self._unreachable_until = 0.0
        if self._down is not None:
            self._down = None
            log.warning("the database works again", extra=event("store up", backend=self.backend.name))

    # -- plumbing --------------------------------------------------------------------------
    async def _write(self, fn: Callable[[Tx], T]) -> T:
        if self._writer_task is None:
            raise StoreError("the store is closed")
        self._fail_fast()
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
                started = time.monotonic()
                try:
                    results = await loop.run_in_executor(self._write_pool, self._apply, batch)
                except Exception as err:
                    failure = (
                        self._failed(err, "commit")
                        if isinstance(err, self.backend.errors)
                        else StoreError(f"the database could not commit: {err}")
                    )
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                self._worked(started)
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)

    def _apply(self, batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        """One transaction for the batch; an item that raises is left out, not the others.

        Accepted mails of the batch go in together, then the other items run straight
        after one another. Mails found over their sending limits (``ops.Refit``, rare:
        another gateway's mail came first) roll the transaction back, and the batch runs
        again without them, refused with ``OverLimit``. Only when something else raises is
        the transaction rolled back and the batch run again item by item, each within a
        savepoint (so an item may run twice: items only touch the database). An outage is
        not replayed.
        """
        accepted = [(fn.message, fn.limit) for fn, _ in batch if isinstance(fn, _Accepted)]
        over: dict[str, str] = {}  # mails that did not fit their limits: left out
        try:
            while True:
                try:
                    results = self._apply_all(
                        batch, [(m, lim) for m, lim in accepted if m.id not in over], over
                    )
                    break
                except ops.Refit as refit:  # rolled back: again without them (each time fewer)
                    over.update(refit.refused)
        except Exception as err:
            if self.backend.is_outage(err):
                raise
            with self.backend.transaction() as tx:
                results = [self._apply_one(tx, fn) for fn, _ in batch]
        self.commits += 1
        return results

    def _apply_all(
        self,
        batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]],
        accepted: list[tuple[NewMessage, UsageLimit | None]],
        over: dict[str, str],
    ) -> list[tuple[bool, Any]]:
        with self.backend.transaction() as tx:
            ops.accept_within_limits(tx, accepted)
            results: list[tuple[bool, Any]] = []
            for fn, _ in batch:
                if not isinstance(fn, _Accepted):
                    results.append((True, fn(tx)))
                elif fn.message.id in over:
                    results.append((False, OverLimit(over[fn.message.id])))
                else:
                    results.append((True, None))
            return results

    def _apply_one(self, tx: Tx, fn: Callable[[Tx], Any]) -> tuple[bool, Any]:
        try:
            with tx.savepoint():
                return True, fn(tx)
        except Exception as err:
            if isinstance(err, self.backend.errors):
                return False, StoreError(str(err))
            return False, err

    def _read_in_thread(self, fn: Callable[[Tx], T]) -> T:
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                with self.backend.reading() as tx:
                    return fn(tx)
            except self.backend.errors as err:
                # Reads change nothing: again, on another connection (the backend has had
                # its idle ones checked), unless the failure was not a dropped connection.
                if attempt == _READ_ATTEMPTS or not self.backend.stale(err):
                    raise
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        self._fail_fast()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            value = await loop.run_in_executor(self._read_pool, self._read_in_thread, fn)
        except self.backend.errors as err:
            raise self._failed(err, "be read") from err
        self._worked(started)
        return value

    # -- intake ------------------------------------------------------------------------------
    async def accept_message(self, message: NewMessage, *, limit: UsageLimit | None = None) -> None:
        """One transaction: the message, its documents, its dispatch job, its first event.

        The accepted mails of a commit batch go in together, one multi-row statement per
        table: each statement costs the writer thread the GIL once more when it returns,
        and the event loop holds the GIL most of the time under load, so five statements a
        batch instead of five a mail keeps a commit short. Mails with a ``limit`` are
        judged together first (``ops.accept_within_limits``: two statements a batch).
        """
        await self._write(_Accepted(message, limit))

    # -- jobs --------------------------------------------------------------------------------
    async def enqueue(
        self, kind: JobKind, ref: str, payload: dict[str, Any], *, now: float, run_after: float | None = None
    ) -> bool:
        return await self._write(lambda tx: ops.enqueue(tx, kind, ref, payload, now, run_after))

    async def claim(self, kind: JobKind, *, owner: str, now: float, lease_s: float) -> Job | None:
        return await self._write(lambda tx: ops.claim(tx, kind, owner, now, lease_s))

    async def renew(
        self, leases: Sequence[tuple[int, str]], *, owners: Sequence[str] = (), now: float, lease_s: float
    ) -> int:
        return await self._write(lambda tx: ops.renew(tx, leases, owners, now, now + lease_s))

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
        return await self._write(lambda tx: ops.defer(tx, job, owner, now, run_after, error, payload))

    async def finish(
        self, job: Job, *, owner: str, now: float, state: JobState, error: str | None = None
    ) -> bool:
        return await self._write(lambda tx: ops.finish(tx, job, owner, now, state, error))

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
        return await self._write(
            lambda tx: ops.finish_and_enqueue(tx, job, owner, now, state, error, enqueue)
        )

    async def release(self, *, owner: str, now: float) -> int:
        return await self._write(lambda tx: ops.release(tx, owner, now))

    async def set_job_state(
        self,
        job_id: int,
        state: JobState,
        *,
        now: float,
        run_after: float | None = None,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        return await self._write(
            lambda tx: ops.set_job_state(tx, job_id, state, now, run_after, payload, error)
        )

    async def expedite(self, kind: JobKind, ref: str, *, now: float) -> bool:
        return await self._write(lambda tx: ops.expedite(tx, kind, ref, now))

    async def jobs(
        self,
        *,
        kind: JobKind | None = None,
        state: JobState | None = None,
        older_than: float | None = None,
        limit: int = 100,
    ) -> list[Job]:
        return await self._read(lambda tx: ops.jobs(tx, kind, state, older_than, limit))

    async def job(self, job_id: int) -> Job | None:
        return await self._read(lambda tx: ops.job(tx, job_id))

    async def find_job(self, kind: JobKind, ref: str) -> Job | None:
        return await self._read(lambda tx: ops.find_job(tx, kind, ref))

    async def count_jobs(self) -> dict[tuple[str, str], int]:
        return await self._read(ops.count_jobs)

    # -- locks -----------------------------------------------------------------------------------
    async def take_lock(self, name: str, *, owner: str, now: float, lease_s: float) -> bool:
        return await self._write(lambda tx: ops.take_lock(tx, name, owner, now, now + lease_s))

    # -- messages and faxes ------------------------------------------------------------------------
    async def message(self, message_id: str) -> StoredMessage | None:
        return await self._read(lambda tx: ops.message(tx, message_id))

    async def deliveries_of(self, message: StoredMessage, *, within_s: float) -> list[StoredMessage]:
        return await self._read(lambda tx: ops.deliveries_of(tx, message, within_s))

    async def raw_message(self, message_id: str) -> bytes | None:
        return await self._read(lambda tx: ops.raw_message(tx, message_id))

    async def document_chunks(self, document_id: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        source = await self._read(lambda tx: ops.document_source(tx, document_id))
        if source is not None and source[0] is not None and source[1] is not None:
            async for chunk in self._decoded_from_raw(source[2], source[0], source[1], chunk_size=chunk_size):
                yield chunk
            return
        offset = 0
        while True:
            chunk, size = await self._read(
                lambda tx, at=offset: tx.read_document(document_id, at, chunk_size)  # type: ignore[misc]
            )
            if chunk:
                offset += len(chunk)
                yield chunk
            if not chunk or offset >= size:  # the last chunk says so: no read just to see the end
                return

    async def _decoded_from_raw(
        self, message_id: str, start: int, end: int, *, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Decode base64 text at raw[start:end] a chunk at a time (line breaks skipped)."""
        step = (chunk_size // 3) * 4  # about chunk_size bytes decoded per read
        carry = b""
        at = start
        while at < end:
            text = await self._read(
                lambda tx, at=at: tx.read_raw(message_id, at, min(step, end - at))  # type: ignore[misc]
            )
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

    async def mark_submitting(self, job: Job, *, owner: str, now: float) -> bool:
        return await self._write(lambda tx: ops.mark_submitting(tx, job, owner, now))

    async def unmark_submitting(self, job: Job, *, owner: str, now: float) -> bool:
        return await self._write(lambda tx: ops.unmark_submitting(tx, job, owner, now))

    async def set_submit_state(self, message_id: str, state: str, *, now: float) -> None:
        await self._write(lambda tx: ops.set_submit_state(tx, message_id, state, now))

    async def record_submission(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        faxes: Sequence[tuple[str, str]],
        note: str,
        hashes: Sequence[tuple[int, str]] = (),
    ) -> bool:
        return await self._write(lambda tx: ops.record_submission(tx, job, owner, now, faxes, note, hashes))

    async def faxes(self, message_id: str) -> list[FaxRecord]:
        return await self._read(lambda tx: ops.faxes(tx, message_id))

    async def fax(self, fax_id: str) -> FaxRecord | None:
        return await self._read(lambda tx: ops.fax(tx, fax_id))

    async def update_fax(self, fax_id: str, *, status: str, detail: dict[str, Any], now: float) -> None:
        await self._write(lambda tx: ops.update_fax(tx, fax_id, status, detail, now))

    async def add_event(
        self,
        action: str,
        *,
        now: float,
        message_id: str | None = None,
        fax_id: str | None = None,
        detail: str = "",
    ) -> None:
        await self._write(lambda tx: ops.add_event(tx, action, now, message_id, fax_id, detail))

    async def events(self, message_id: str) -> list[Event]:
        return await self._read(lambda tx: ops.events(tx, message_id))

    async def finish_fax(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        status: str,
        detail: dict[str, Any],
        note: str,
        report: NewJob | None = None,
    ) -> tuple[bool, bool]:
        return await self._write(lambda tx: ops.finish_fax(tx, job, owner, now, status, detail, note, report))

    # -- received faxes ------------------------------------------------------------------------------
    async def record_received(
        self, *, user_id: str, fax_id: str, metadata: dict[str, Any], now: float
    ) -> bool:
        return await self._write(lambda tx: ops.record_received(tx, user_id, fax_id, metadata, now))

    async def received(self, fax_id: str) -> ReceivedRecord | None:
        return await self._read(lambda tx: ops.received(tx, fax_id))

    async def received_image(self, fax_id: str) -> bytes | None:
        return await self._read(lambda tx: ops.received_image(tx, fax_id))

    async def store_received_image(self, fax_id: str, image: bytes, *, now: float) -> None:
        await self._write(lambda tx: ops.store_received_image(tx, fax_id, image, now))

    async def update_received(
        self,
        fax_id: str,
        *,
        now: float,
        state: str | None = None,
        delivered_to: Sequence[str] | None = None,
    ) -> None:
        await self._write(lambda tx: ops.update_received(tx, fax_id, now, state, delivered_to))

    async def record_poll(self, user_id: str, *, now: float, ok: bool, error: str | None = None) -> None:
        await self._write(lambda tx: ops.record_poll(tx, user_id, now, ok, error))

    async def polls(self) -> list[PollRecord]:
        return await self._read(ops.polls)

    # -- the watchdog ------------------------------------------------------------------------------------
    async def mailbox_outcomes(self, mailbox_user_id: str, *, limit: int) -> list[tuple[str, str | None]]:
        return await self._read(lambda tx: ops.mailbox_outcomes(tx, mailbox_user_id, limit))

    async def mailbox_day(self, user_id: str, *, since: float, until: float) -> list[tuple[str, str | None]]:
        return await self._read(lambda tx: ops.mailbox_day(tx, user_id, since, until))

    async def count_held(self, user_id: str) -> int:
        return await self._read(lambda tx: ops.count_held(tx, user_id))

    async def mark_once(self, key: str, *, action: str, now: float) -> bool:
        return await self._write(lambda tx: ops.mark_once(tx, key, action, now))

    async def count_received(self, user_id: str, *, since: float, until: float) -> int:
        return await self._read(lambda tx: ops.count_received(tx, user_id, since, until))

    async def incident_open(self, key: str) -> bool:
        return await self._read(lambda tx: ops.incident_open(tx, key))

    async def set_incident(self, key: str, *, opened: bool, now: float) -> bool:
        return await self._write(lambda tx: ops.set_incident(tx, key, opened, now))

    # -- retention, health, limits ----------------------------------------------------------------------
    async def add_reply_token(
        self, *, token_hash: str, message_id: str, report_ref: str, now: float, expires_at: float
    ) -> None:
        await self._write(
            lambda tx: ops.add_reply_token(tx, token_hash, message_id, report_ref, now, expires_at)
        )

    async def reply_token(self, token_hash: str) -> ReplyToken | None:
        return await self._read(lambda tx: ops.reply_token(tx, token_hash))

    async def use_reply_token(
        self, token_hash: str, *, now: float, used_for: str, job: NewJob, detail: str
    ) -> bool:
        return await self._write(lambda tx: ops.use_reply_token(tx, token_hash, now, used_for, job, detail))

    async def copy_message(
        self,
        message_id: str,
        *,
        new_id: str,
        recipients: Sequence[Recipient],
        auth: str,
        now: float,
        detail: str,
    ) -> bool:
        return await self._write(
            lambda tx: ops.copy_message(tx, message_id, new_id, recipients, auth, now, detail)
        )

    async def purge(self, *, before: float, now: float, limit: int = 200) -> tuple[int, int]:
        return await self._write(lambda tx: ops.purge(tx, before, now, limit))

    async def touch(self, *, now: float) -> None:
        await self._write(lambda tx: ops.touch(tx, now))

    async def sender_usage(self, sender: str, *, since: float) -> list[Usage]:
        return await self._read(lambda tx: ops.sender_usage(tx, sender, since))

    async def mailbox_usage(self, mailbox_user_id: str, *, since: float) -> list[Usage]:
        return await self._read(lambda tx: ops.mailbox_usage(tx, mailbox_user_id, since))

    # -- message/partial pieces ------------------------------------------------------------------------
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
        max_pieces: int = 0,
        max_bytes: int = 0,
        max_open: int = 0,
    ) -> list[bytes] | None:
        return await self._write(
            lambda tx: ops.add_partial(
                tx,
                sender_key,
                partial_id,
                number,
                total,
                raw,
                now,
                expire_at,
                payload,
                max_pieces,
                max_bytes,
                max_open,
            )
        )

    async def partial_pieces(self, *, sender_key: str, partial_id: str) -> list[tuple[int, int | None]]:
        return await self._read(lambda tx: ops.partial_pieces(tx, sender_key, partial_id))

    async def drop_partial(self, *, sender_key: str, partial_id: str) -> None:
        await self._write(lambda tx: ops.drop_partial(tx, sender_key, partial_id))

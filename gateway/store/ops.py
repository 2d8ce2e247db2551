"""The store's transaction logic, written once for every backend.

Each function here is one unit of work inside a transaction the backend opened: it
takes a ``Tx`` (a connection in a transaction, with the backend's named statements as
``tx.q``) and returns a value. The backend decides how transactions are run (SQLite:
one writer thread grouping many units into one commit; PostgreSQL: the same, over a
pooled connection, with row locks and ``SKIP LOCKED`` where several processes meet).

Fencing: every change to a claimed job names its lease owner; a worker whose lease was
taken over changes nothing (the function returns False).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from gateway.store.base import (
    Event,
    FaxRecord,
    Job,
    JobKind,
    JobState,
    MessageOptions,
    NewDocument,
    NewJob,
    NewMessage,
    PartialTooBig,
    PollRecord,
    ReceivedRecord,
    Recipient,
    ReplyToken,
    StoredDocument,
    StoredMessage,
    TooManySplitMails,
    Usage,
    UsageLimit,
    dumps,
)
from gateway.store.queries import Queries, in_list, many_rows


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """A connection inside a transaction, as a backend hands it to the logic below."""

    @property
    def q(self) -> Queries:
        """The backend's statements, by name."""

    @property
    def inline_limit(self) -> int | None:
        """Raw mails and documents bigger than this are written with ``put_large`` after
        their row (SQLite writes them a chunk at a time); None: always bound in place."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]: ...

    @property
    def pipelined(self) -> bool:
        """Statements in ``together`` are sent without waiting (their rows come later)."""

    def together(self) -> AbstractContextManager[None]:
        """Statements sent one after another without waiting for each answer (PostgreSQL's
        pipeline mode: one round trip for them all); an error is raised by the block's end
        at the latest. Only for statements whose row counts are not looked at."""

    def put_large(self, table: str, key: tuple[Any, ...], data: bytes) -> None:
        """Write ``data`` into the raw mail (``message_raw``, key (message id,)) or
        document (``documents``, key (message id, seq)) whose row exists already."""

    def read_raw(self, message_id: str, offset: int, size: int) -> bytes:
        """Bytes ``offset`` to ``offset + size`` of a stored raw mail."""

    def read_document(self, document_id: int, offset: int, size: int) -> tuple[bytes, int]:
        """A slice of a document's own content, and the content's whole size."""


_ROWS_PER_INSERT = 64  # x 14 columns stays far below SQLite's 32,766 parameters


# -- rows -------------------------------------------------------------------------------------
def job_from_row(row: Sequence[Any]) -> Job:
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


def _fax(row: Sequence[Any]) -> FaxRecord:
    return FaxRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])


class Refit(Exception):
    """``accept_within_limits``: these mails (id -> refusal) do not fit their limits; the
    transaction is to be rolled back and the batch committed again without them."""

    def __init__(self, refused: dict[str, str]) -> None:
        super().__init__(f"{len(refused)} mails over their sending limits")
        self.refused = refused


def accept_within_limits(tx: Tx, items: Sequence[tuple[NewMessage, UsageLimit | None]]) -> None:
    """Accepted mails, if each fits its limit (``UsageLimit``); else raises ``Refit``.

    The batch's senders and mailboxes are locked (``LOCK_USAGE``) and their last day of
    use read; each mail is judged in order, with the batch's earlier mails counted. The
    mails are inserted before the verdict, as most fit: where statements are pipelined
    (PostgreSQL), lock, read and inserts then cost one round trip. When some do not fit,
    ``Refit`` names them: the caller rolls back and calls again without them.
    """
    messages = [m for m, _ in items]
    limited = [(m, limit) for m, limit in items if limit is not None]
    if not limited:
        insert_accepted(tx, messages)
        return
    with tx.together():
        usage = _read_usage(tx, limited)
        rows: list[Any] = []
        if usage is not None and not tx.pipelined:
            rows = usage.fetchall()  # SQLite: read before writing (rows come as they are read)
        _insert_rows(tx, messages)
        if usage is not None and tx.pipelined:
            rows = usage.fetchall()  # the lock and the read ran before the inserts
    refused = _over_limits(limited, rows)
    if refused:
        raise Refit(refused)


def _keys(limited: Sequence[tuple[NewMessage, UsageLimit]]) -> tuple[list[str], list[str]]:
    senders = sorted({limit.sender.lower() for _, limit in limited if limit.sender is not None})
    mailboxes = sorted({limit.mailbox for _, limit in limited if limit.mailbox is not None})
    return senders, mailboxes


def _read_usage(tx: Tx, limited: Sequence[tuple[NewMessage, UsageLimit]]) -> Cursor | None:
    """Lock the senders and mailboxes, then read their use (one row per key and minute);
    None for limits that count neither."""
    q = tx.q
    senders, mailboxes = _keys(limited)
    since = min(limit.since for _, limit in limited)
    parts: list[str] = []
    params: list[Any] = []
    for statement, keys in ((q.USAGE_OF_SENDERS, senders), (q.USAGE_OF_MAILBOXES, mailboxes)):
        if keys:
            parts.append(statement.replace("{keys}", in_list(len(keys), q.mark)))
            params += [*keys, since]
    if not parts:
        return None
    if q.LOCK_USAGE:
        tx.execute(q.LOCK_USAGE, ([f"s {s}" for s in senders] + [f"m {m}" for m in mailboxes],))
    return tx.execute(" UNION ALL ".join(parts), params)


def _over_limits(limited: Sequence[tuple[NewMessage, UsageLimit]], rows: list[Any]) -> dict[str, str]:
    senders, mailboxes = _keys(limited)
    uses: dict[tuple[str, str], list[Usage]] = {("s", s): [] for s in senders}
    uses.update({("m", m): [] for m in mailboxes})
    for kind, key, at, faxes, pages in rows:  # the read asked for these keys only
        uses[(str(kind), str(key))].append(Usage(float(at), int(faxes), int(pages)))
    for found in uses.values():
        found.sort(key=lambda u: u.at)
    refused: dict[str, str] = {}
    for message, limit in limited:
        of_sender = uses[("s", limit.sender.lower())] if limit.sender is not None else []
        of_mailbox = uses[("m", limit.mailbox)] if limit.mailbox is not None else []
        reply = limit.judge(
            [u for u in of_sender if u.at >= limit.since], [u for u in of_mailbox if u.at >= limit.since]
        )
        if reply is not None:
            refused[message.id] = reply
            continue
        use = _usage_of(message)
        for counted, found in ((limit.sender, of_sender), (limit.mailbox, of_mailbox)):
            if counted is not None:
                found.append(use)
    return refused


def _usage_of(message: NewMessage) -> Usage:
    faxes = len(message.recipients)
    return Usage(message.received_at, faxes, faxes * sum(d.pages for d in message.documents))


def _message_row(message: NewMessage) -> tuple[Any, ...]:
    recipients = [{"number": r.number, "pretty": r.pretty, "name": r.name} for r in message.recipients]
    use = _usage_of(message)
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
        message.options.to_json(),
        message.envelope_from.lower(),
        use.faxes,  # fax_count
        use.pages,  # fax_pages
    )


def _apart(tx: Tx, data: bytes) -> bool:
    return tx.inline_limit is not None and len(data) > tx.inline_limit


def _document_row(tx: Tx, message: NewMessage, seq: int, doc: NewDocument) -> tuple[Any, ...]:
    """A document row; one found as clean base64 in the raw mail keeps only where it is."""
    start, end = doc.raw_span if doc.raw_span is not None else (None, None)
    content = b"" if doc.raw_span is not None or _apart(tx, doc.content) else doc.content
    return (message.id, seq, doc.filename, doc.document_type, doc.detected, doc.pages, doc.size,
            content, start, end)  # fmt: skip


# -- intake ------------------------------------------------------------------------------------
def insert_accepted(tx: Tx, messages: Sequence[NewMessage]) -> None:
    """Accepted mails, all at once: one multi-row statement per table.

    A raw mail or document over ``tx.inline_limit`` goes in empty and is then written by
    ``tx.put_large`` (bound as a parameter, SQLite would hold two more copies of it).
    """
    with tx.together():
        _insert_rows(tx, messages)


def _insert_rows(tx: Tx, messages: Sequence[NewMessage]) -> None:
    if not messages:
        return
    q = tx.q
    documents = [_document_row(tx, m, seq, doc) for m in messages for seq, doc in enumerate(m.documents)]
    jobs = [
        (str(JobKind.DISPATCH), m.id, "{}", m.received_at, m.received_at, m.received_at) for m in messages
    ]
    for sql, rows in (
        (q.INSERT_MESSAGE, [_message_row(m) for m in messages]),
        (q.INSERT_RAW, [(m.id, b"" if _apart(tx, m.raw) else m.raw) for m in messages]),
        (q.INSERT_DOCUMENT, documents),
        (q.INSERT_JOB, jobs),
        (q.INSERT_EVENT, [(m.received_at, m.id, None, "accepted", m.auth) for m in messages]),
    ):
        for at in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[at : at + _ROWS_PER_INSERT]
            tx.execute(many_rows(sql, len(part)), [value for row in part for value in row])
    for m in messages:
        if _apart(tx, m.raw):
            tx.put_large("message_raw", (m.id,), m.raw)
        for seq, doc in enumerate(m.documents):
            if doc.raw_span is None and _apart(tx, doc.content):
                tx.put_large("documents", (m.id, seq), doc.content)


# -- jobs --------------------------------------------------------------------------------------
def _insert_job(
    tx: Tx, kind: JobKind, ref: str, payload: dict[str, Any], run_after: float, now: float
) -> bool:
    return tx.execute(tx.q.INSERT_JOB, (str(kind), ref, dumps(payload), run_after, now, now)).rowcount == 1


def enqueue(
    tx: Tx, kind: JobKind, ref: str, payload: dict[str, Any], now: float, run_after: float | None
) -> bool:
    return _insert_job(tx, kind, ref, payload, run_after or now, now)


def claim(tx: Tx, kind: JobKind, owner: str, now: float, lease_s: float) -> Job | None:
    row = tx.execute(tx.q.CLAIM_JOB, (owner, now + lease_s, now, str(kind), now, now)).fetchone()
    return None if row is None else job_from_row(row)


def renew(tx: Tx, leases: Sequence[tuple[int, str]], owners: Sequence[str], now: float, until: float) -> int:
    """Extend the leases of the jobs in hand, (job id, owner), and the owners' locks, where
    they have not run out; how many leases were extended."""
    renewed = sum(
        tx.execute(tx.q.RENEW_LEASE, (until, job_id, owner, now)).rowcount for job_id, owner in leases
    )
    if owners:
        tx.execute(tx.q.RENEW_LOCKS + in_list(len(owners), tx.q.mark), (until, now, *owners))
    return renewed


def holds_lease(tx: Tx, job: Job, owner: str, now: float) -> bool:
    return tx.execute(tx.q.HOLDS_LEASE, (job.id, owner, now)).fetchone() is not None


def defer(
    tx: Tx, job: Job, owner: str, now: float, run_after: float, error: str, payload: dict[str, Any] | None
) -> bool:
    encoded = None if payload is None else dumps(payload)
    return tx.execute(tx.q.DEFER_JOB, (run_after, error, encoded, now, job.id, owner)).rowcount == 1


def finish(tx: Tx, job: Job, owner: str, now: float, state: JobState, error: str | None) -> bool:
    return tx.execute(tx.q.FINISH_JOB, (str(state), error, now, job.id, owner)).rowcount == 1


def finish_and_enqueue(
    tx: Tx, job: Job, owner: str, now: float, state: JobState, error: str | None, enqueue: Sequence[NewJob]
) -> bool:
    if not finish(tx, job, owner, now, state, error):
        return False
    for new in enqueue:
        _insert_job(tx, new.kind, new.ref, new.payload, new.run_after or now, now)
    return True


def release(tx: Tx, owner: str, now: float) -> int:
    count = tx.execute(tx.q.RELEASE_JOBS, (now, owner)).rowcount
    tx.execute(tx.q.RELEASE_LOCKS + in_list(1, tx.q.mark), (owner,))
    return count


def set_job_state(
    tx: Tx,
    job_id: int,
    state: JobState,
    now: float,
    run_after: float | None,
    payload: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    encoded = None if payload is None else dumps(payload)
    args = (str(state), run_after, encoded, error, now, job_id)
    return tx.execute(tx.q.SET_JOB_STATE, args).rowcount == 1


def expedite(tx: Tx, kind: JobKind, ref: str, now: float) -> bool:
    return tx.execute(tx.q.EXPEDITE_JOB, (now, now, str(kind), ref)).rowcount == 1


def jobs(
    tx: Tx, kind: JobKind | None, state: JobState | None, older_than: float | None, limit: int
) -> list[Job]:
    mark = tx.q.mark
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("kind = ", kind), ("state = ", state), ("created_at < ", older_than)):
        if value is not None:
            where.append(column + mark)
            args.append(str(value) if isinstance(value, str) else value)
    sql = tx.q.SELECT_JOB_COLUMNS + (" WHERE " + " AND ".join(where) if where else "")
    sql += f" ORDER BY id DESC LIMIT {mark}"
    return [job_from_row(r) for r in tx.execute(sql, (*args, limit)).fetchall()]


def job(tx: Tx, job_id: int) -> Job | None:
    row = tx.execute(tx.q.SELECT_JOB_COLUMNS + f" WHERE id = {tx.q.mark}", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def find_job(tx: Tx, kind: JobKind, ref: str) -> Job | None:
    mark = tx.q.mark
    sql = tx.q.SELECT_JOB_COLUMNS + f" WHERE kind = {mark} AND ref = {mark}"
    row = tx.execute(sql, (str(kind), ref)).fetchone()
    return None if row is None else job_from_row(row)


def count_jobs(tx: Tx) -> dict[tuple[str, str], int]:
    return {(k, s): int(n) for k, s, n in tx.execute(tx.q.COUNT_JOBS).fetchall()}


# -- messages and faxes --------------------------------------------------------------------------
def message(tx: Tx, message_id: str) -> StoredMessage | None:
    row = tx.execute(tx.q.SELECT_MESSAGE, (message_id,)).fetchone()
    if row is None:
        return None
    docs = tuple(StoredDocument(*d) for d in tx.execute(tx.q.SELECT_DOCUMENTS, (message_id,)).fetchall())
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
        options=MessageOptions.from_json(row[10]),
        submit_state=row[11],
        documents=docs,
        purged_at=row[12],
    )


def deliveries_of(tx: Tx, mail: StoredMessage, within_s: float) -> list[StoredMessage]:
    """Through the sender's index (sender_key, received_at): a handful of rows at most."""
    args = (
        mail.envelope_from,
        mail.received_at - within_s,
        mail.received_at + within_s,
        mail.message_id,
        mail.id,
    )
    ids = [row[0] for row in tx.execute(tx.q.SELECT_SAME_MAIL, args).fetchall()]
    found = (message(tx, i) for i in ids)
    return [m for m in found if m is not None]


def raw_message(tx: Tx, message_id: str) -> bytes | None:
    row = tx.execute(tx.q.SELECT_RAW, (message_id,)).fetchone()
    return None if row is None else bytes(row[0])


def document_source(tx: Tx, document_id: int) -> tuple[int | None, int | None, str] | None:
    """(raw_start, raw_end, message id) of a document; starts None when it has its own bytes."""
    row = tx.execute(tx.q.SELECT_DOCUMENT_SOURCE, (document_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def mark_submitting(tx: Tx, job: Job, owner: str, now: float) -> bool:
    """The mail is about to go to eFax: only while ``owner`` still holds the job's lease."""
    if not holds_lease(tx, job, owner, now):
        return False
    set_submit_state(tx, job.ref, "submitting", now)
    return True


def unmark_submitting(tx: Tx, job: Job, owner: str, now: float) -> bool:
    """The attempt never went out whole: back to not submitted, while ``owner`` holds the job."""
    if not holds_lease(tx, job, owner, now):
        return False
    set_submit_state(tx, job.ref, "none", now)
    return True


def set_submit_state(tx: Tx, message_id: str, state: str, now: float) -> None:
    tx.execute(tx.q.SET_SUBMIT_STATE, (state, message_id))
    add_event(tx, state, now, message_id, None, "")


def record_submission(
    tx: Tx,
    job: Job,
    owner: str,
    now: float,
    faxes: Sequence[tuple[str, str]],
    note: str,
    hashes: Sequence[tuple[int, str]] = (),
) -> bool:
    if not finish(tx, job, owner, now, JobState.DONE, None):
        return False  # our lease was taken over: the new owner records it
    tx.execute(tx.q.SET_SUBMIT_STATE, ("submitted", job.ref))
    for document_id, digest in hashes:
        tx.execute(tx.q.SET_DOCUMENT_SHA256, (digest, document_id, job.ref))
    for fax_id, destination in faxes:
        tx.execute(tx.q.INSERT_FAX, (fax_id, job.ref, destination, now))
        _insert_job(tx, JobKind.TRACK, fax_id, {}, now, now)
        add_event(tx, "submitted", now, job.ref, fax_id, destination)
    add_event(tx, "handed to eFax", now, job.ref, None, note)
    return True


def faxes(tx: Tx, message_id: str) -> list[FaxRecord]:
    return [_fax(r) for r in tx.execute(tx.q.SELECT_FAXES, (message_id,)).fetchall()]


def fax(tx: Tx, fax_id: str) -> FaxRecord | None:
    row = tx.execute(tx.q.SELECT_FAX, (fax_id,)).fetchone()
    return None if row is None else _fax(row)


def update_fax(tx: Tx, fax_id: str, status: str, detail: dict[str, Any], now: float) -> None:
    tx.execute(tx.q.UPDATE_FAX, (status, dumps(detail), now, fax_id))


def add_event(
    tx: Tx, action: str, now: float, message_id: str | None, fax_id: str | None, detail: str
) -> None:
    tx.execute(tx.q.INSERT_EVENT, (now, message_id, fax_id, action, detail))


def events(tx: Tx, message_id: str) -> list[Event]:
    return [Event(*r) for r in tx.execute(tx.q.SELECT_EVENTS, (message_id, message_id)).fetchall()]


def finish_fax(
    tx: Tx,
    job: Job,
    owner: str,
    now: float,
    status: str,
    detail: dict[str, Any],
    note: str,
    report: NewJob | None,
) -> tuple[bool, bool]:
    """The track job done, the fax's final status and its event, and the report enqueued
    when no other fax of the same mail is still being tracked."""
    record = fax(tx, job.ref)
    message_id = record.message_id if record is not None else None
    if message_id is not None:
        tx.execute(tx.q.LOCK_MESSAGE, (message_id,))  # two faxes of one mail ending at once
    if not finish(tx, job, owner, now, JobState.DONE, None):
        return False, False
    update_fax(tx, job.ref, status, detail, now)
    add_event(tx, status, now, message_id, job.ref, note)
    if report is None or message_id is None:
        return True, False
    if tx.execute(tx.q.COUNT_OPEN_FAXES, (message_id, job.ref)).fetchone()[0]:
        return True, False
    return True, _insert_job(tx, report.kind, report.ref, report.payload, report.run_after or now, now)


# -- received faxes --------------------------------------------------------------------------------
def record_received(tx: Tx, user_id: str, fax_id: str, metadata: dict[str, Any], now: float) -> bool:
    if tx.execute(tx.q.INSERT_RECEIVED, (fax_id, user_id, now, dumps(metadata), now)).rowcount != 1:
        return False
    _insert_job(tx, JobKind.DELIVER, fax_id, {}, now, now)
    add_event(tx, "received", now, None, fax_id, user_id)
    return True


def received(tx: Tx, fax_id: str) -> ReceivedRecord | None:
    r = tx.execute(tx.q.SELECT_RECEIVED, (fax_id,)).fetchone()
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


def received_image(tx: Tx, fax_id: str) -> bytes | None:
    r = tx.execute(tx.q.SELECT_RECEIVED_IMAGE, (fax_id,)).fetchone()
    return None if r is None or r[0] is None else bytes(r[0])


def store_received_image(tx: Tx, fax_id: str, image: bytes, now: float) -> None:
    tx.execute(tx.q.STORE_RECEIVED_IMAGE, (image, now, fax_id))


def update_received(
    tx: Tx, fax_id: str, now: float, state: str | None, delivered_to: Sequence[str] | None
) -> None:
    encoded = None if delivered_to is None else dumps(sorted(set(delivered_to)))
    tx.execute(tx.q.UPDATE_RECEIVED, (state, encoded, now, fax_id))


def record_poll(tx: Tx, user_id: str, now: float, ok: bool, error: str | None) -> None:
    tx.execute(tx.q.UPSERT_POLL, (user_id, now, now if ok else None, error))


def polls(tx: Tx) -> list[PollRecord]:
    return [PollRecord(*r) for r in tx.execute(tx.q.SELECT_POLLS).fetchall()]


# -- the watchdog ---------------------------------------------------------------------------------------
def mailbox_outcomes(tx: Tx, mailbox_user_id: str, limit: int) -> list[tuple[str, str | None]]:
    rows = tx.execute(tx.q.SELECT_MAILBOX_OUTCOMES, (mailbox_user_id, limit)).fetchall()
    outcomes: list[tuple[str, str | None]] = []
    for status, detail in rows:
        code = json.loads(detail or "{}").get("error_code") if status == "failed" else None
        outcomes.append((status, str(code) if code else None))
    return outcomes


def mailbox_day(tx: Tx, user_id: str, since: float, until: float) -> list[tuple[str, str | None]]:
    rows = tx.execute(tx.q.SELECT_MAILBOX_DAY, (user_id, since, until)).fetchall()
    outcomes: list[tuple[str, str | None]] = []
    for status, detail in rows:
        code = json.loads(detail or "{}").get("error_code") if status == "failed" else None
        outcomes.append((status, str(code) if code else None))
    return outcomes


def count_held(tx: Tx, user_id: str) -> int:
    return int(tx.execute(tx.q.COUNT_MAILBOX_HELD, (user_id,)).fetchone()[0])


def mark_once(tx: Tx, key: str, action: str, now: float) -> bool:
    """An event ``action`` for ``key`` outside any mail's story, unless there is one."""
    if tx.execute(tx.q.SELECT_MARK, (key, action)).fetchone() is not None:
        return False
    tx.execute(tx.q.INSERT_EVENT, (now, None, None, action, key))
    return True


def count_received(tx: Tx, user_id: str, since: float, until: float) -> int:
    return int(tx.execute(tx.q.COUNT_RECEIVED_BETWEEN, (user_id, since, until)).fetchone()[0])


def incident_open(tx: Tx, key: str) -> bool:
    row = tx.execute(tx.q.SELECT_INCIDENT, (key,)).fetchone()
    return row is not None and row[0] == "incident opened"


def set_incident(tx: Tx, key: str, opened: bool, now: float) -> bool:
    """Open or close the incident ``key``; False when it already stood so (someone told)."""
    if incident_open(tx, key) == opened:
        return False
    action = "incident opened" if opened else "incident closed"
    tx.execute(tx.q.INSERT_EVENT, (now, None, None, action, key))
    return True


# -- replies to reports ----------------------------------------------------------------------------------
def add_reply_token(
    tx: Tx, token_hash: str, message_id: str, report_ref: str, now: float, expires_at: float
) -> None:
    tx.execute(tx.q.INSERT_REPLY_TOKEN, (token_hash, message_id, report_ref, now, expires_at))


def reply_token(tx: Tx, token_hash: str) -> ReplyToken | None:
    row = tx.execute(tx.q.SELECT_REPLY_TOKEN, (token_hash,)).fetchone()
    return None if row is None else ReplyToken(*row)


def use_reply_token(tx: Tx, token_hash: str, now: float, used_for: str, job: NewJob, detail: str) -> bool:
    found = reply_token(tx, token_hash)
    if found is None or tx.execute(tx.q.USE_REPLY_TOKEN, (now, used_for, token_hash, now)).rowcount != 1:
        return False
    _insert_job(tx, job.kind, job.ref, job.payload, job.run_after or now, now)
    add_event(tx, "reply", now, found.message_id, None, detail)
    return True


def copy_message(
    tx: Tx,
    message_id: str,
    new_id: str,
    recipients: Sequence[Recipient],
    auth: str,
    now: float,
    detail: str,
) -> bool:
    old = message(tx, message_id)
    if old is None or old.purged_at is not None:
        return False
    listed = dumps([{"number": r.number, "pretty": r.pretty, "name": r.name} for r in recipients])
    options = dataclasses.replace(old.options, deferred=())  # a new attempt is not a split mail's part
    pages = len(recipients) * sum(d.pages for d in old.documents)
    args = (new_id, now, auth, listed, options.to_json(), len(recipients), pages, message_id)
    if tx.execute(tx.q.COPY_MESSAGE, args).rowcount != 1:
        return False
    tx.execute(tx.q.COPY_RAW, (new_id, message_id))
    tx.execute(tx.q.COPY_DOCUMENTS, (new_id, message_id))
    _insert_job(tx, JobKind.DISPATCH, new_id, {}, now, now)
    add_event(tx, "accepted", now, new_id, None, f"{auth}; a new attempt of {message_id}")
    add_event(tx, "new attempt", now, message_id, None, f"{new_id}: {detail}")
    return True


# -- locks ---------------------------------------------------------------------------------------------
def take_lock(tx: Tx, name: str, owner: str, now: float, until: float) -> bool:
    """Hold ``name`` until ``until`` unless someone else holds it and has not run out."""
    return tx.execute(tx.q.TAKE_LOCK, (name, owner, until, now)).fetchone() is not None


# -- retention ------------------------------------------------------------------------------------------
def purge(tx: Tx, before: float, now: float, limit: int) -> tuple[int, int]:
    ids = [(row[0],) for row in tx.execute(tx.q.SELECT_PURGEABLE, (before, limit)).fetchall()]
    if ids:
        tx.executemany(tx.q.PURGE_RAW, [(b"", i) for (i,) in ids])
        tx.executemany(tx.q.PURGE_DOCUMENTS, [(b"", i) for (i,) in ids])
        tx.executemany(tx.q.MARK_PURGED, [(now, i) for (i,) in ids])
    gone = tx.execute(tx.q.PURGE_RECEIVED_IMAGES, (before, limit)).rowcount
    return len(ids), gone


def touch(tx: Tx, now: float) -> None:
    tx.execute(tx.q.TOUCH_HEALTH, (now,))


# -- sending limits ---------------------------------------------------------------------------------------
def sender_usage(tx: Tx, sender: str, since: float) -> list[Usage]:
    return [Usage(float(a), int(f), int(p)) for a, f, p in tx.execute(tx.q.SENDER_USAGE, (sender, since))]


def mailbox_usage(tx: Tx, mailbox_user_id: str, since: float) -> list[Usage]:
    rows = tx.execute(tx.q.MAILBOX_USAGE, (mailbox_user_id, since))
    return [Usage(float(a), int(f), int(p)) for a, f, p in rows]


# -- message/partial pieces ---------------------------------------------------------------------------------
def add_partial(
    tx: Tx,
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
    key = (sender_key, partial_id)
    tx.execute(tx.q.LOCK_PARTIAL, (f"{sender_key} {partial_id}",))  # pieces arriving at two gateways
    if max_pieces or max_bytes:
        count, size = tx.execute(tx.q.PARTIAL_SIZE_WITHOUT, (*key, number)).fetchone()
        pieces, size = int(count) + 1, int(size) + len(raw)
        if (max_pieces and pieces > max_pieces) or (max_bytes and size > max_bytes):
            raise PartialTooBig(pieces, size)
    first = not tx.execute(tx.q.SELECT_PARTIAL_NUMBERS, key).fetchall()
    if first and max_open:
        (others,) = tx.execute(tx.q.OPEN_PARTIALS_OF_SENDER, (sender_key, partial_id)).fetchone()
        if int(others) >= max_open:
            raise TooManySplitMails(int(others))
    tx.execute(tx.q.INSERT_PARTIAL, (*key, number, total, now, raw))
    if first:
        _insert_job(tx, JobKind.PARTIAL, f"{sender_key} {partial_id}", payload, expire_at, now)
    rows = tx.execute(tx.q.SELECT_PARTIAL_NUMBERS, key).fetchall()
    totals = {t for _, t in rows if t is not None}
    if len(totals) != 1 or {n for n, _ in rows} != set(range(1, totals.pop() + 1)):
        return None
    return [bytes(r[0]) for r in tx.execute(tx.q.SELECT_PARTIAL_RAW, key).fetchall()]


def partial_pieces(tx: Tx, sender_key: str, partial_id: str) -> list[tuple[int, int | None]]:
    return [(n, t) for n, t in tx.execute(tx.q.SELECT_PARTIAL_NUMBERS, (sender_key, partial_id)).fetchall()]


def drop_partial(tx: Tx, sender_key: str, partial_id: str) -> None:
    tx.execute(tx.q.DELETE_PARTIAL, (sender_key, partial_id))

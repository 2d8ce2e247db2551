"""The store's interface: the protocol every backend offers, and its values.

Queue mechanics (``JobState``) are kept apart from the story told to the sender
(recorded as events). A job is claimed by one worker at a time with a lease, renewed
by its process's heartbeat (``renew``); a lease left silent by a dead process runs out
and any process sharing the store takes the job over. Every state change that matters
is fenced by the lease owner, so a worker that lost its lease cannot undo another's work.

Backends: ``sqlite`` (embedded default, one process) and ``postgresql`` (several
instances); both run ``gateway.store.ops`` and pass the same contract tests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol


class JobState(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    DEFERRED = "deferred"
    DONE = "done"
    FAILED = "failed"
    HELD = "held"
    DEAD = "dead"


class JobKind(StrEnum):
    DISPATCH = "dispatch"  # submit a message's faxes to eFax
    TRACK = "track"  # follow one fax to its final state
    REPORT = "report"  # mail the sender what happened
    DELIVER = "deliver"  # mail a received fax to its mapped inboxes
    PARTIAL = "partial"  # a split mail's pieces: tell the sender if they never all arrive
    REPLY = "reply"  # a sender's reply to a report: retry, cancel, or an answer listing the words


class StoreError(Exception):
    """The store could not do what was asked (disk full, locked, corrupt...)."""


class PartialTooBig(Exception):
    """``add_partial``: with this piece a split mail would be over its bounds; it was not kept.

    ``pieces`` and ``size`` (bytes) are what the split mail would come to with it."""

    def __init__(self, pieces: int, size: int) -> None:
        super().__init__(f"{pieces} pieces, {size} bytes")
        self.pieces = pieces
        self.size = size


class OverLimit(Exception):
    """``accept_message``: the mail did not fit its sending limits at the commit
    (``UsageLimit``); nothing of it was stored. ``reply`` is the judge's refusal."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class TooManySplitMails(Exception):
    """``add_partial``: the sender already has ``max_open`` other split mails waiting for
    pieces; the first piece of another was not kept."""

    def __init__(self, open_mails: int) -> None:
        super().__init__(f"{open_mails} split mails waiting")
        self.open_mails = open_mails


@dataclass(frozen=True)
class Job:
    id: int
    kind: JobKind
    ref: str
    state: JobState
    payload: dict[str, Any]
    attempts: int
    run_after: float
    created_at: float
    last_error: str | None = None
    lease_owner: str | None = None


@dataclass(frozen=True)
class NewDocument:
    filename: str
    document_type: str
    detected: str
    pages: int
    content: bytes
    # (start, end) of ``content`` as clean base64 within the message's raw bytes: the
    # store may keep that reference instead of the content (``document_chunks`` decodes).
    raw_span: tuple[int, int] | None = None
    # With ``raw_span``, ``content`` may be left out (b""): then this is its size.
    length: int | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.length is None else self.length

    def __post_init__(self) -> None:
        if self.length is not None and (self.raw_span is None or self.content):
            raise ValueError("a document's content may be left out only when raw_span says where it is")


@dataclass(frozen=True)
class Recipient:
    number: str  # wire form for eFax
    pretty: str
    name: str | None = None


@dataclass(frozen=True)
class LeftOut:
    """A part of the mail that was not faxed, and why (the report lists them)."""

    filename: str
    reason: str


@dataclass(frozen=True)
class MessageOptions:
    """What the mail asked for and what reading it found, as the later stages need it."""

    cover: bool | None = None  # [cover] / [nocover] in the subject; None: the mailbox decides
    resolution: str | None = None  # FINE | STANDARD from the subject; None: eFax's default
    cover_subject: str = ""
    cover_message: str = ""
    from_name: str = ""
    body_is_document: bool = False  # no attachment: the mail's text is the fax
    left_out: tuple[LeftOut, ...] = ()
    pages: int = 0  # as counted when the mail was read
    # numbers (as people write them) refused with 452 4.5.3 in the same transaction, over
    # smtp.max_recipients: the client's mail server delivers them in another transaction
    deferred: tuple[str, ...] = ()

    def to_json(self) -> str:
        value = asdict(self)
        value["left_out"] = [asdict(x) for x in self.left_out]
        return dumps(value)

    @classmethod
    def from_json(cls, text: str) -> MessageOptions:
        value = json.loads(text)
        known = {f.name for f in fields(cls)}
        value = {k: v for k, v in value.items() if k in known}  # a later version's extra keys
        value["left_out"] = tuple(
            LeftOut(str(x.get("filename", "")), str(x.get("reason", ""))) for x in value.get("left_out", [])
        )
        value["deferred"] = tuple(str(n) for n in value.get("deferred", []))
        return cls(**value)


@dataclass(frozen=True)
class UsageLimit:
    """Sending limits held by the commit itself, for a store other gateways share.

    In the commit's transaction, under a lock on the sender and the mailbox (so that two
    gateways committing mail of one sender take turns), the last day of their use is read,
    this commit's earlier mails included, and ``judge(sender_uses, mailbox_uses)`` says
    whether the mail fits: None, and it goes in; a refusal, and ``accept_message`` raises
    ``OverLimit`` with it. A limit checked this way cannot be doubled by sending through
    two gateways at once."""

    sender: str | None  # the envelope sender (any case) whose use counts; None: not counted
    mailbox: str | None  # the eFax user id whose use counts; None: not counted
    since: float  # unix seconds: older use does not count
    judge: Callable[[list[Usage], list[Usage]], str | None]


@dataclass(frozen=True)
class NewMessage:
    id: str
    received_at: float
    mailbox_user_id: str
    envelope_from: str
    header_from: str
    report_to: str
    auth: str
    message_id: str
    subject: str
    recipients: Sequence[Recipient]
    options: MessageOptions
    raw: bytes
    documents: Sequence[NewDocument]


@dataclass(frozen=True)
class StoredDocument:
    id: int
    seq: int
    filename: str
    document_type: str
    detected: str
    pages: int
    size: int
    sha256: str | None = None  # hex, of the bytes handed to eFax; None before dispatch


@dataclass(frozen=True)
class StoredMessage:
    id: str
    received_at: float
    mailbox_user_id: str
    envelope_from: str
    header_from: str
    report_to: str
    auth: str
    message_id: str
    subject: str
    recipients: tuple[Recipient, ...]
    options: MessageOptions
    submit_state: str
    documents: tuple[StoredDocument, ...] = field(default=())
    purged_at: float | None = None  # when its mail and documents were deleted (keep_days)


@dataclass(frozen=True)
class FaxRecord:
    fax_id: str
    message_id: str
    destination: str
    status: str
    detail: dict[str, Any]
    updated_at: float


@dataclass(frozen=True)
class ReceivedRecord:
    fax_id: str
    user_id: str
    seen_at: float
    metadata: dict[str, Any]
    state: str  # new | fetched | mailed | marked | done
    delivered_to: tuple[str, ...]
    updated_at: float
    has_image: bool


@dataclass(frozen=True)
class PollRecord:
    user_id: str
    last_try_at: float | None
    last_ok_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class ReplyToken:
    """A report's reply address token, as stored: only its hash."""

    token_hash: str
    message_id: str
    report_ref: str  # the report job whose mail carried it
    created_at: float
    expires_at: float
    used_at: float | None
    used_for: str | None

    def usable(self, now: float) -> bool:
        return self.used_at is None and now <= self.expires_at


@dataclass(frozen=True)
class NewJob:
    kind: JobKind
    ref: str
    payload: dict[str, Any] = field(default_factory=dict)
    run_after: float | None = None


@dataclass(frozen=True)
class Event:
    at: float
    message_id: str | None
    fax_id: str | None
    action: str
    detail: str


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Store(Protocol):
    """What every backend offers. All methods are coroutines; ``now`` is unix seconds."""

    @property
    def shared(self) -> bool:
        """Several gateway processes may use this store at once (PostgreSQL)."""

    def listen(self, wake: Callable[[JobKind], None]) -> None:
        """Call ``wake(kind)`` when another process queued a job of that kind (shared stores)."""

    async def close(self) -> None: ...

    # -- intake ----------------------------------------------------------------
    async def accept_message(self, message: NewMessage, *, limit: UsageLimit | None = None) -> None:
        """Commit the raw mail, its documents and its dispatch job in one durable transaction.

        ``limit``: only if the mail fits it, judged inside that transaction; else raises
        ``OverLimit`` and stores nothing."""

    # -- jobs ------------------------------------------------------------------
    async def enqueue(
        self, kind: JobKind, ref: str, payload: dict[str, Any], *, now: float, run_after: float | None = None
    ) -> bool:
        """Add a job unless one of that kind and ref exists; True when added."""

    async def claim(self, kind: JobKind, *, owner: str, now: float, lease_s: float) -> Job | None:
        """Take the most overdue job of a kind (queued, deferred and due, or lease expired)."""

    async def renew(
        self, leases: Sequence[tuple[int, str]], *, owners: Sequence[str] = (), now: float, lease_s: float
    ) -> int:
        """The heartbeat: the leases of the jobs in hand, (job id, owner), and the owners'
        locks, where not yet run out, last ``lease_s`` more; how many leases were renewed.
        A job a worker has let go of (left to its lease) is not named, so it runs out."""

    async def take_lock(self, name: str, *, owner: str, now: float, lease_s: float) -> bool:
        """Hold the named lock for ``lease_s`` (renewed by ``renew``) unless another holds it."""

    async def defer(
        self,
        job: Job,
        *,
        owner: str,
        now: float,
        run_after: float,
        error: str,
        payload: dict[str, Any] | None = None,
    ) -> bool: ...

    async def finish(
        self, job: Job, *, owner: str, now: float, state: JobState, error: str | None = None
    ) -> bool: ...

    async def release(self, *, owner: str, now: float) -> int:
        """Give back every job this owner holds (graceful shutdown)."""

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
        """Administrative change (queue retry/cancel, start-up recovery): not fenced by a
        lease. ``payload`` and ``error`` (the job's last error) replace theirs when given."""

    async def jobs(
        self,
        *,
        kind: JobKind | None = None,
        state: JobState | None = None,
        older_than: float | None = None,
        limit: int = 100,
    ) -> list[Job]: ...

    async def job(self, job_id: int) -> Job | None: ...

    async def find_job(self, kind: JobKind, ref: str) -> Job | None: ...

    async def count_jobs(self) -> dict[tuple[str, str], int]: ...

    # -- messages and faxes -----------------------------------------------------
    async def message(self, message_id: str) -> StoredMessage | None: ...

    async def deliveries_of(self, message: StoredMessage, *, within_s: float) -> list[StoredMessage]:
        """The other mails stored from the same envelope sender with the same Message-ID,
        received within ``within_s`` of this one, oldest first: the parts of one mail that
        a mail server delivered in several transactions (or a resend)."""

    async def raw_message(self, message_id: str) -> bytes | None:
        """The mail as it was received (b"" once purged)."""

    def document_chunks(self, document_id: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The document's bytes, read from the store a chunk at a time."""

    async def mark_submitting(self, job: Job, *, owner: str, now: float) -> bool:
        """Mark the job's mail ``submitting`` while ``owner`` still holds its lease; False if not."""

    async def unmark_submitting(self, job: Job, *, owner: str, now: float) -> bool:
        """Back to not submitted (the request never went out whole), while ``owner`` holds the job."""

    async def set_submit_state(self, message_id: str, state: str, *, now: float) -> None: ...

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
        """One transaction: the fax ids, submit_state=submitted, dispatch job done, track jobs,
        and ``hashes``, (document id, SHA-256 hex) of each document as it was handed to eFax."""

    async def faxes(self, message_id: str) -> list[FaxRecord]: ...

    async def add_event(
        self,
        action: str,
        *,
        now: float,
        message_id: str | None = None,
        fax_id: str | None = None,
        detail: str = "",
    ) -> None: ...

    async def events(self, message_id: str) -> list[Event]: ...

    async def fax(self, fax_id: str) -> FaxRecord | None: ...

    async def update_fax(self, fax_id: str, *, status: str, detail: dict[str, Any], now: float) -> None: ...

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
        """Close a job and add follow-up jobs in one transaction (fenced by the lease)."""

    async def expedite(self, kind: JobKind, ref: str, *, now: float) -> bool:
        """Make a waiting job due now (a webhook's trigger); False when there is none."""

    # -- received faxes ------------------------------------------------------------
    async def record_received(
        self, *, user_id: str, fax_id: str, metadata: dict[str, Any], now: float
    ) -> bool:
        """Record a newly seen fax and its deliver job once; False when already known."""

    async def received(self, fax_id: str) -> ReceivedRecord | None: ...

    async def received_image(self, fax_id: str) -> bytes | None: ...

    async def store_received_image(self, fax_id: str, image: bytes, *, now: float) -> None: ...

    async def update_received(
        self,
        fax_id: str,
        *,
        now: float,
        state: str | None = None,
        delivered_to: Sequence[str] | None = None,
    ) -> None: ...

    async def record_poll(self, user_id: str, *, now: float, ok: bool, error: str | None = None) -> None: ...

    async def polls(self) -> list[PollRecord]: ...

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
        report: NewJob | None = None,
    ) -> tuple[bool, bool]:
        """One transaction: the track job done, the fax's final status and its event, and
        ``report`` enqueued when (and only when) no other fax of the same mail is still tracked.
        Returns (finished, report_enqueued); finished is False when the lease was lost."""

    # -- the watchdog (workers/watchdog.py) ------------------------------------------------
    async def mailbox_outcomes(self, mailbox_user_id: str, *, limit: int) -> list[tuple[str, str | None]]:
        """The last ``limit`` final outcomes of this mailbox's sent faxes, newest first:
        ("delivered", None) or ("failed", eFax's error code or None)."""

    async def mailbox_day(self, user_id: str, *, since: float, until: float) -> list[tuple[str, str | None]]:
        """The status of every fax of this mailbox's mails accepted in [since, until), with
        eFax's error code for a failed one (the daily digest)."""

    async def count_held(self, user_id: str) -> int:
        """This mailbox's mails whose dispatch is held for an administrator."""

    async def mark_once(self, key: str, *, action: str, now: float) -> bool:
        """One transaction: an event ``action`` for ``key`` outside any mail's story, unless
        one is there already (False: done before, by this gateway or another)."""

    async def count_received(self, user_id: str, *, since: float, until: float) -> int:
        """Faxes received on this mailbox first seen in [since, until)."""

    async def incident_open(self, key: str) -> bool:
        """Whether the watchdog's incident ``key`` stands open."""

    async def set_incident(self, key: str, *, opened: bool, now: float) -> bool:
        """One transaction: the incident opened or closed, an event recording it; False when
        it already stood so (and so somebody was told already)."""

    # -- replies to reports ------------------------------------------------------------
    async def add_reply_token(
        self, *, token_hash: str, message_id: str, report_ref: str, now: float, expires_at: float
    ) -> None: ...

    async def reply_token(self, token_hash: str) -> ReplyToken | None: ...

    async def use_reply_token(
        self, token_hash: str, *, now: float, used_for: str, job: NewJob, detail: str
    ) -> bool:
        """One transaction: the token marked used (once, and only before it runs out), the
        reply's job queued and an event in the mail's story; False when it was not usable."""

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
        """One transaction: a new mail ``new_id`` with the bytes and documents of
        ``message_id``, to ``recipients``, with its dispatch job and an event in both
        stories (a new attempt); False when the mail is gone or its bytes were purged."""

    # -- retention (database.keep_days) -----------------------------------------------
    async def purge(self, *, before: float, now: float, limit: int = 200) -> tuple[int, int]:
        """Delete the bytes of up to ``limit`` messages received before ``before`` whose
        dispatch has ended (raw mail, documents; the rows stay, marked ``purged_at``), and
        of up to ``limit`` received faxes done before it (their PDF). Returns how many of
        each; fewer than ``limit`` of both means nothing more is due."""

    # -- health ------------------------------------------------------------------------
    async def touch(self, *, now: float) -> None:
        """Write and commit one tiny row: proves the store takes writes (``/readyz``)."""

    # -- sending limits ----------------------------------------------------------------
    async def sender_usage(self, sender: str, *, since: float) -> list[Usage]:
        """Mails accepted from this envelope sender (case-insensitive) since ``since``."""

    async def mailbox_usage(self, mailbox_user_id: str, *, since: float) -> list[Usage]:
        """Mails accepted for this mailbox (eFax user id) since ``since``."""

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
        max_pieces: int = 0,
        max_bytes: int = 0,
        max_open: int = 0,
    ) -> list[bytes] | None:
        """Keep one piece (and, with the first, a PARTIAL job due at ``expire_at``).

        Returns every piece once all of them are here, else None. Raises PartialTooBig,
        keeping nothing, when with this piece the split mail would have more than
        ``max_pieces`` pieces or more than ``max_bytes`` bytes (0: no bound), counted
        under the same lock as the insert (pieces arriving at two gateways included).
        Raises TooManySplitMails when this is the first piece of a split mail and the
        sender already has ``max_open`` others waiting (0: no bound).
        """

    async def partial_pieces(self, *, sender_key: str, partial_id: str) -> list[tuple[int, int | None]]:
        """(number, total) of the pieces kept."""

    async def drop_partial(self, *, sender_key: str, partial_id: str) -> None: ...


@dataclass(frozen=True)
class Usage:
    """One accepted mail, for the sending limits: faxes = its numbers, pages = pages x numbers."""

    at: float
    faxes: int
    pages: int

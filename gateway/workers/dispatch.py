"""Dispatcher: turns an accepted mail into one ``POST /faxes``.

Consumes: ``dispatch`` jobs (one per accepted mail). Produces: one fax id per
destination, recorded with a ``track`` job each, in the same transaction that closes
the dispatch job. Touches: eFax (through ``gateway.efax``) and the store.

Never twice: the message is marked ``submitting`` (committed, and only while this
worker holds the job's lease) before the call. A request that never left (connection
refused, DNS, TLS) is retried. If the outcome is unknown (the body went out, then a
timeout, a reset or a 5xx), the job is deferred still marked ``submitting`` and is never
sent again on its own: the dispatcher looks for the fax in eFax's sent list
(``gateway.core.reconcile``: by its reference, else by number, pages and time, around
the attempt) every ``dispatch.reconcile_every_s`` for ``dispatch.reconcile_window_s``
(15 min; eFax may list a fax late, or only once finished). Found: recorded and tracked.
Not found: the job is **held** (queue state ``held``), the sender gets one report
(``<job id>:held``) saying eFax did not confirm it and it was not resent, and an
administrator decides with ``fax-gateway queue retry``.

Proof of transmission: each document's bytes are hashed (SHA-256) as they stream into
the request, and the digests are recorded with the fax ids in the same transaction
(``Store.record_submission``), so that the sender's confirmation names the bytes that
went out. A fax found at eFax after an unknown outcome gets the digests of the stored
bytes, which are what any attempt streamed.

Failures: transient errors (network, 5xx, 429) are retried with exponential backoff and
jitter (``workers.backoff_*``) until ``workers.lifetime_s``; permanent ones (4xx,
refused credentials) fail the job at once with eFax's reason kept. A failed job queues
a ``report`` job ``<job id>:not-sent`` in the same transaction: the sender is told.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.audit import Audit
from gateway.core import reconcile
from gateway.core.reconcile import CLOCK_SKEW_S
from gateway.core.retry import RetryPolicy
from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxError,
    EfaxOutcomeUnknown,
    EfaxPermanentError,
    EfaxTransientError,
)
from gateway.efax.models import Destination, DocumentSource, FaxOptions, FaxSummary
from gateway.logs import event
from gateway.settings import Mailbox
from gateway.store.base import Job, JobKind, JobState, NewJob, Store, StoredMessage, StoreError
from gateway.workers.base import Worker

log = logging.getLogger(__name__)
UNDO_TRIES = 15  # about a second apart: well within a lease the heartbeat renews


def _listed(fax: FaxSummary) -> reconcile.Listed:
    completed = fax.completed_at.timestamp() if fax.completed_at is not None else None
    return reconcile.Listed(
        fax.fax_id, fax.destination_fax_number, fax.pages, completed, fax.client_reference_id
    )


def fax_options(message: StoredMessage, mailbox: Mailbox | None) -> FaxOptions:
    """The cover page and resolution a message asks for (subject options win)."""
    opts = message.options
    cover_setting = mailbox.cover if mailbox is not None else "auto"
    if opts.cover is not None:
        include = opts.cover
    elif cover_setting == "always":
        include = True
    elif cover_setting == "never":
        include = False
    else:  # auto: a cover page when the mail has attachments and something to say
        include = not opts.body_is_document and bool(opts.cover_message or opts.cover_subject)
    return FaxOptions(
        include_cover_page=include,
        cover_from_name=opts.from_name or None if include else None,
        cover_subject=opts.cover_subject or None if include else None,
        cover_message=opts.cover_message or None if include else None,
        image_resolution=opts.resolution or None,
    )


class Dispatcher(Worker):
    kind = JobKind.DISPATCH

    def __init__(
        self,
        store: Store,
        efax: EfaxClient,
        mailboxes: list[Mailbox],
        *,
        policy: RetryPolicy,
        rng: random.Random | None = None,
        audit: Audit | None = None,
        reconcile_window_s: float = 900.0,
        reconcile_every_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.reconcile_window_s = reconcile_window_s
        self.reconcile_every_s = reconcile_every_s
        self.audit = audit
        self.efax = efax
        self.mailboxes = {m.user_id: m for m in mailboxes}
        self.policy = policy
        self.rng = rng or random.Random()

    async def handle(self, job: Job) -> None:
        now = self.clock()
        message = await self.store.message(job.ref)
        if message is None:
            await self._fail(job, "the stored mail is missing", report=False)
            return
        if message.purged_at is not None:  # retried by hand after database.keep_days
            await self._fail(job, "the stored mail was deleted (database.keep_days)", report=False)
            return
        if self.policy.expired(created_at=message.received_at, now=now):
            await self._fail(job, f"eFax could not be reached in time: {job.last_error or 'no reply'}")
            return
        if message.submit_state == "submitting":
            # An earlier attempt's outcome is unknown: look for it, never send blind. If
            # even the look fails, stay "submitting" and look again later.
            try:
                await self._reconcile(job, message)
            except EfaxTransientError as err:
                await self._retry(job, err, reason="could not check whether eFax already has it")
            except EfaxPermanentError as err:
                await self._fail(job, f"could not check whether eFax already has it: {err}")
            return
        try:
            # The token first: between "submitting" and the POST, nothing else may go out,
            # so that a crash in between leaves as little as possible to look for.
            await self.efax.ready_to_send()
        except EfaxTransientError as err:
            await self._retry(job, err)
            return
        except EfaxPermanentError as err:
            await self._fail(job, str(err))
            return
        digests: dict[int, str] = {}
        try:
            if not await self.store.mark_submitting(job, owner=self.owner, now=now):
                # Our lease ran out (this process was silent too long) and another worker may
                # have the job: it goes through the unknown-outcome path, never a blind resend.
                log.warning("lost the lease before sending", extra=event("lease lost", job=job.ref))
                return
            faxes = await self.efax.send_fax(
                user_id=message.mailbox_user_id,
                destinations=[Destination(r.number, r.name) for r in message.recipients],
                documents=[
                    DocumentSource(
                        document_type=d.document_type,
                        size=d.size,
                        open=self._opener(d.id, digests),
                    )
                    for d in message.documents
                ],
                options=fax_options(message, self.mailboxes.get(message.mailbox_user_id)),
                client_reference_id=message.id,
                transaction_id=message.id,
            )
        except StoreError:
            # Our own store failed before the body had gone out whole (marking it, or reading
            # a document for it): eFax cannot have taken a cut-off request. Say so once the
            # store answers, so that the next attempt sends rather than looks for it.
            await self._not_sent_after_all(job, message)
            raise
        except EfaxOutcomeUnknown as err:
            await self._retry(job, err, reason="outcome unknown; will look for it before resending")
            return
        except EfaxTransientError as err:
            await self.store.set_submit_state(message.id, "none", now=self.clock())
            await self._retry(job, err)
            return
        except EfaxPermanentError as err:
            await self.store.set_submit_state(message.id, "none", now=self.clock())
            await self._fail(job, str(err))
            return
        if len(faxes) == len(message.recipients):  # one per destination, in order: keep our spelling
            pairs = [(f.fax_id, r.number) for f, r in zip(faxes, message.recipients, strict=True)]
        else:
            pairs = [(f.fax_id, f.destination_fax_number) for f in faxes]
        await self._record(job, pairs, "submitted", message, digests)

    async def _not_sent_after_all(self, job: Job, message: StoredMessage) -> None:
        """Mark the mail not submitted while we hold the job, trying while the store recovers."""
        for _ in range(UNDO_TRIES):
            try:
                await self.store.unmark_submitting(job, owner=self.owner, now=self.clock())
                return
            except StoreError:
                await asyncio.sleep(1.0)

    def _opener(self, document_id: int, digests: dict[int, str]) -> Callable[[], AsyncIterator[bytes]]:
        """The document's bytes for the request body, hashed on the way: a stream read to
        its end leaves its SHA-256 in ``digests`` (a reopened stream, the same bytes again)."""

        async def chunks() -> AsyncIterator[bytes]:
            sha = hashlib.sha256()
            async for chunk in self.store.document_chunks(document_id):
                sha.update(chunk)
                yield chunk
            digests[document_id] = sha.hexdigest()

        return chunks

    async def _stored_digests(self, message: StoredMessage, known: dict[int, str]) -> list[tuple[int, str]]:
        """(document id, SHA-256) of every document: as streamed where known, else of its stored bytes."""
        found = []
        for d in message.documents:
            digest = known.get(d.id)
            if digest is None:
                sha = hashlib.sha256()
                async for chunk in self.store.document_chunks(d.id):
                    sha.update(chunk)
                digest = sha.hexdigest()
            found.append((d.id, digest))
        return found

    async def _reconcile(self, job: Job, message: StoredMessage) -> None:
        """After an unknown outcome: did eFax create the faxes? Record them if so; else
        look again until ``reconcile_window_s`` after the attempt, then hold the job."""
        now = self.clock()
        attempt_at = await self._attempt_at(message)
        listed = await self.efax.sent_candidates(
            user_id=message.mailbox_user_id, client_reference_id=message.id, since=attempt_at - CLOCK_SKEW_S
        )
        known = {f.fax_id for f in listed if await self.store.fax(f.fax_id) is not None}
        found = reconcile.match(
            [_listed(f) for f in listed],
            reference=message.id,
            destinations=[r.number for r in message.recipients],
            pages=sum(d.pages for d in message.documents) or message.options.pages,
            attempt_at=attempt_at,
            known=known,
        )
        if found.complete:
            how = "by its reference" if found.how == "reference" else "by number, pages and time"
            await self._record(
                job, list(found.found), f"found at eFax after an unknown outcome, {how}", message
            )
            return
        waited = now - attempt_at
        if waited < self.reconcile_window_s:
            await self.store.defer(
                job,
                owner=self.owner,
                now=now,
                run_after=now + min(self.reconcile_every_s, self.reconcile_window_s - waited) + 0.01,
                error="outcome unknown; eFax does not list the fax yet (looking again, not resending)",
            )
            log.info(
                "fax not found at eFax yet; looking again",
                extra=event("reconciling", job=job.ref, waited_s=round(waited)),
            )
            return
        await self._hold(job, message, found)

    async def _attempt_at(self, message: StoredMessage) -> float:
        """When the attempt of unknown outcome started (its "submitting" event)."""
        marks = [
            e.at for e in await self.store.events(message.id) if e.action == "submitting" and e.fax_id is None
        ]
        return max(marks, default=message.received_at)

    async def _hold(self, job: Job, message: StoredMessage, found: reconcile.Match) -> None:
        """Not found after the window: hold the job and tell the sender once; no resend."""
        minutes = self.reconcile_window_s / 60
        reason = (
            f"eFax did not confirm receiving the fax and it was not in eFax's sent list within "
            f"{minutes:.0f} min; not sent again, to avoid a duplicate"
        )
        if found.how == "ambiguous":
            reason += " (eFax lists more than one fax that could be it)"
        follow = [NewJob(JobKind.REPORT, f"{job.ref}:held", {"reason": reason})]
        held = await self.store.finish_and_enqueue(
            job, owner=self.owner, now=self.clock(), state=JobState.HELD, error=reason, enqueue=follow
        )
        if not held:
            return
        await self.store.add_event("held", now=self.clock(), message_id=job.ref, detail=reason)
        if self.audit is not None:
            self.audit.held(message, reason=reason)
        log.warning(
            "fax held: eFax did not confirm it; an administrator decides (fax-gateway queue retry %s)",
            job.ref,
            extra=event("held", job=job.ref),
        )

    async def _record(
        self,
        job: Job,
        pairs: list[tuple[str, str]],
        how: str,
        message: StoredMessage,
        digests: dict[int, str] | None = None,
    ) -> None:
        hashes = await self._stored_digests(message, digests or {})
        ok = await self.store.record_submission(
            job, owner=self.owner, now=self.clock(), faxes=pairs, note=how, hashes=hashes
        )
        if ok:
            log.info(
                "faxes handed to eFax",
                extra=event("submitted", job=job.ref, faxes=",".join(f for f, _ in pairs), how=how),
            )
            if self.audit is not None:
                self.audit.submitted(message, pairs)
        else:
            log.warning("lost the lease before recording", extra=event("lease lost", job=job.ref))

    async def _retry(self, job: Job, err: EfaxError, reason: str = "") -> None:
        now = self.clock()
        retry_after = err.retry_after if isinstance(err, EfaxTransientError) else None
        delay = self.policy.delay(job.attempts, retry_after=retry_after, rng=self.rng)
        text = f"{err}" + (f" ({reason})" if reason else "")
        await self.store.defer(job, owner=self.owner, now=now, run_after=now + delay, error=text)
        log.info(
            "eFax not reached; retrying in %.0f s",
            delay,
            extra=event("deferred", job=job.ref, attempt=job.attempts, error=str(err)),
        )

    async def _fail(self, job: Job, reason: str, *, report: bool = True) -> None:
        """Fail the job and, in the same transaction, queue the sender's failure report."""
        now = self.clock()
        follow = [NewJob(JobKind.REPORT, f"{job.ref}:not-sent", {"reason": reason})] if report else []
        await self.store.finish_and_enqueue(
            job, owner=self.owner, now=now, state=JobState.FAILED, error=reason, enqueue=follow
        )
        await self.store.add_event("failed", now=now, message_id=job.ref, detail=reason)
        if self.audit is not None:
            try:
                message = await self.store.message(job.ref)
            except StoreError:
                message = None  # the audit line then carries the job id only
            self.audit.failed(message, reason=reason, job=job.ref)
        log.warning("fax not sent: %s", reason, extra=event("failed", job=job.ref))

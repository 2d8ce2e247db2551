"""Dispatcher: turns an accepted mail into one ``POST /faxes``.

Consumes: ``dispatch`` jobs (one per accepted mail). Produces: one fax id per
destination, recorded with a ``track`` job each, in the same transaction that closes
the dispatch job. Touches: eFax (through ``gateway.efax``) and the store.

Never twice: the message is marked ``submitting`` (committed) before the call. If the
call's outcome is unknown (connection broke after the body went out, a 5xx), the job is
deferred still marked ``submitting``; the next attempt first looks for the fax with
``GET /faxes/sent`` by its ``client_reference_id`` (the job id) and records what it
finds instead of sending again.

Failures: transient errors (network, 5xx, 429) are retried with exponential backoff and
jitter (``dispatch.backoff_*``) until ``dispatch.lifetime_s``; permanent ones (4xx,
refused credentials) fail the job at once with eFax's reason kept. A failed job queues
a ``report`` job ``<job id>:not-sent`` in the same transaction: the sender is told.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from gateway.audit import Audit
from gateway.core.retry import RetryPolicy
from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxError,
    EfaxOutcomeUnknown,
    EfaxPermanentError,
    EfaxTransientError,
)
from gateway.efax.models import Destination, DocumentSource, FaxOptions
from gateway.logs import event
from gateway.settings import Mailbox
from gateway.store.base import Job, JobKind, JobState, NewJob, Store, StoredMessage, StoreError
from gateway.workers.base import Worker

log = logging.getLogger(__name__)


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
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
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
            # An earlier attempt's outcome is unknown: look before sending again. If even
            # the look fails, stay "submitting" and try later; never send blind.
            try:
                if await self._reconcile(job, message):
                    return
            except EfaxTransientError as err:
                await self._retry(job, err, reason="could not check whether eFax already has it")
                return
            except EfaxPermanentError as err:
                await self._fail(job, f"could not check whether eFax already has it: {err}")
                return
        if not await self.store.mark_submitting(job, owner=self.owner, now=now):
            # Our lease ran out (this process was silent too long) and another worker may
            # have the job: it goes through the unknown-outcome path, never a blind resend.
            log.warning("lost the lease before sending", extra=event("lease lost", job=job.ref))
            return
        try:
            faxes = await self.efax.send_fax(
                user_id=message.mailbox_user_id,
                destinations=[Destination(r.number, r.name) for r in message.recipients],
                documents=[
                    DocumentSource(
                        document_type=d.document_type,
                        size=d.size,
                        open=self._opener(d.id),
                    )
                    for d in message.documents
                ],
                options=fax_options(message, self.mailboxes.get(message.mailbox_user_id)),
                client_reference_id=message.id,
                transaction_id=message.id,
            )
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
        await self._record(job, pairs, "submitted", message)

    def _opener(self, document_id: int) -> Callable[[], AsyncIterator[bytes]]:
        return lambda: self.store.document_chunks(document_id)

    async def _reconcile(self, job: Job, message: StoredMessage) -> bool:
        """After an unknown outcome: did eFax create the faxes? Record them if so."""
        found = await self.efax.find_sent(user_id=message.mailbox_user_id, client_reference_id=message.id)
        if not found:
            log.info("earlier attempt did not reach eFax; sending", extra=event("reconciled", job=job.ref))
            return False
        pairs = [(f.fax_id, f.destination_fax_number or "") for f in found]
        await self._record(job, pairs, "found after an unknown outcome", message)
        return True

    async def _record(
        self, job: Job, pairs: list[tuple[str, str]], how: str, message: StoredMessage | None = None
    ) -> None:
        ok = await self.store.record_submission(
            job, owner=self.owner, now=self.clock(), faxes=pairs, note=how
        )
        if ok:
            log.info(
                "faxes handed to eFax",
                extra=event("submitted", job=job.ref, faxes=",".join(f for f, _ in pairs), how=how),
            )
            if self.audit is not None and message is not None:
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

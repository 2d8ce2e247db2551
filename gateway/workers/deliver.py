"""Deliverer: mails each received fax, as a PDF, to every address mapped to its number.

Consumes: ``deliver`` jobs (one per received fax, written by the receiver with the
``received`` row). Produces: mail through the relay (or the Maildir), the fax
PATCHed ``image_downloaded: true`` at eFax, and the mailbox's retention applied.
Touches: eFax (``gateway.efax``), mail out (``gateway.mail``), the store.

The ``received`` row is the memory; each step is committed before the next starts::

    new --fetch image (PDF; a TIFF answer is converted)--> fetched   (image in the store)
    fetched --mail every deliver_to address--> mailed                (delivered_to recorded)
    mailed --PATCH .../metadata {"image_downloaded": true}--> marked
    marked --retention: keep, or DELETE /faxes/{id}--> done

Exactly once: the addresses the relay accepted are committed to ``delivered_to``
right after its 250, before anything else, so a crash or restart (or a relay that
takes some recipients and defers others) mails only the addresses still missing,
and a ``mailed`` fax only needs its PATCH. One window cannot be closed, because it
spans two systems: a crash after the relay has the mail's final dot and before that
commit mails the fax again. Its length is the relay's answer time to the dot (seconds
for a relay that scans or fsyncs, up to minutes) plus one commit; everything else is
done before DATA, and nothing (not even QUIT) comes between the 250 and the commit
(docs/inbound.md). The Message-ID is derived from the fax id, so a repeat is
recognisable (and folded by most clients). A crashed process's jobs are taken back
at start-up when their lease owner is a dead process on this host, else when the
lease (``workers.lease_s``) expires.

Failures:
- eFax or relay unavailable (transient): the job is deferred with exponential
  backoff (``workers.backoff_initial_s`` .. ``workers.backoff_max_s``), forever:
  a received fax is never given up because a relay is down.
- An address the relay refuses permanently (5xx) does not hold up the others; the
  administrator (``admin_address``) gets one notice naming it. The fax stays at eFax.
- A mail larger than ``relay.max_message_bytes``: the recipients get a notice with
  the details and where the fax is kept, instead of the PDF; the fax is not deleted.
- eFax has no image for ``workers.lifetime_s``, or the image is unreadable: the job
  fails (``fax-gateway queue retry`` resumes it) and the administrator is told.

Settings: ``mailboxes[].deliver_to``, ``.deliver_mode`` (together | separately),
``.retention`` (keep | delete_after_delivery), ``relay.from_address``,
``relay.max_message_bytes``, ``timezone``, ``admin_address``, ``inbound.workers``.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, NoReturn

from gateway.core.inbound_mail import (
    MailContext,
    ReceivedFax,
    admin_notice,
    fax_mail,
    tiff_to_pdf,
    too_large_notice,
)
from gateway.core.retry import RetryPolicy
from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxNotFound, EfaxPermanentError, EfaxTransientError
from gateway.logs import event, mask_address
from gateway.mail.relay import MailError, MailPermanent, MailSender, MailTransient
from gateway.metrics import Metrics
from gateway.settings import Mailbox, Settings
from gateway.store.base import Job, JobKind, JobState, ReceivedRecord, Store
from gateway.workers.base import Worker

log = logging.getLogger(__name__)

SMTP_POLICY = email.policy.SMTP
_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


class _Deferred(Exception):
    """Stop here; the job was deferred (or failed) and the reason logged."""


class Deliverer(Worker):
    kind = JobKind.DELIVER

    def __init__(
        self,
        store: Store,
        efax: EfaxClient,
        sender: MailSender,
        settings: Settings,
        *,
        policy: RetryPolicy,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.efax = efax
        self.sender = sender
        self.mailboxes = {m.user_id: m for m in settings.mailboxes}
        self.ctx = MailContext(
            from_address=settings.relay.from_address,
            zone=settings.zone,
            default_country=settings.default_country,
            from_name=settings.relay.from_name,
        )
        self.limit_bytes = settings.relay.max_message_bytes
        self.admin = settings.admin_address
        self.policy = policy
        self.metrics = metrics
        self.rng = rng or random.Random()

    # -- the state machine ---------------------------------------------------------------
    async def handle(self, job: Job) -> None:
        record = await self.store.received(job.ref)
        if record is None:
            await self._finish(job, JobState.FAILED, "no received fax with this id in the store")
            return
        mailbox = self.mailboxes.get(record.user_id)
        if mailbox is None:
            await self._finish(
                job,
                JobState.FAILED,
                f"mailbox {record.user_id} is no longer configured; the fax stays at eFax",
            )
            return
        if not mailbox.deliver_to:
            await self._finish(
                job,
                JobState.FAILED,
                f"mailbox {record.user_id} has no deliver_to addresses; the fax stays at eFax",
            )
            return
        fax = ReceivedFax.from_metadata(
            record.metadata, fax_id=record.fax_id, user_id=record.user_id, seen_at=record.seen_at
        )
        try:
            state = record.state
            if state == "new":
                await self._fetch(job, fax, mailbox)
                state = "fetched"
            if state == "fetched":
                await self._mail(job, fax, mailbox, record)
                state = "mailed"
            if state == "mailed":
                await self._mark(job, fax, mailbox)
                state = "marked"
            if state == "marked":
                await self._retain(job, fax, mailbox)
        except _Deferred:
            return
        # Two writes, one group commit. Should only the first land, the job is claimed
        # again later, finds the fax 'done' and just closes.
        await asyncio.gather(
            self.store.update_received(fax.fax_id, now=self.clock(), state="done"),
            self._finish(job, JobState.DONE, None),
        )

    async def _fetch(self, job: Job, fax: ReceivedFax, mailbox: Mailbox) -> None:
        try:
            image = await self.efax.fetch_image(
                user_id=mailbox.user_id, fax_id=fax.fax_id, desired_format="PDF"
            )
        except EfaxNotFound as err:  # not available yet; eFax may still be storing it
            if self.policy.expired(created_at=job.created_at, now=self.clock()):
                await self._give_up(job, fax, mailbox, f"eFax has no image for it ({err})")
            await self._defer(job, f"no image yet: {err}")
        except EfaxTransientError as err:
            await self._defer(job, str(err), retry_after=err.retry_after)
        except EfaxPermanentError as err:
            await self._give_up(job, fax, mailbox, f"eFax refused the image: {err}")
        content = image.content
        if image.format == "TIFF":
            try:
                content = await asyncio.to_thread(tiff_to_pdf, content)
            except Exception as err:
                await self._give_up(job, fax, mailbox, f"its TIFF image could not be converted ({err})")
        elif image.format != "PDF":
            await self._give_up(job, fax, mailbox, "eFax sent an image that is neither PDF nor TIFF")
        await self.store.store_received_image(fax.fax_id, content, now=self.clock())
        log.info("fax image fetched", extra=event("fetched", fax=fax.fax_id, bytes=len(content)))

    async def _mail(self, job: Job, fax: ReceivedFax, mailbox: Mailbox, record: ReceivedRecord) -> None:
        pdf = await self.store.received_image(fax.fax_id)
        if pdf is None:  # cannot happen after 'fetched'; go back a step rather than guess
            await self.store.update_received(fax.fax_id, now=self.clock(), state="new")
            await self._defer(job, "the stored image is missing; fetching it again")
        delivered = {a.lower(): a for a in record.delivered_to}
        refused: dict[str, str] = dict(job.payload.get("refused", {}))
        missing = [a for a in mailbox.deliver_to if a.lower() not in delivered and a.lower() not in refused]
        groups = [missing] if mailbox.deliver_mode == "together" else [[a] for a in missing]
        transient: str | None = None
        newly_refused: dict[str, str] = {}
        for group in groups:
            if not group:
                continue
            to = mailbox.deliver_to if mailbox.deliver_mode == "together" else group
            data = self._render(fax, pdf, mailbox, to)
            accepted: list[str] = []
            try:
                await self.sender.deliver(data, sender=self.ctx.from_address, recipients=list(group))
                accepted = list(group)
            except MailPermanent as err:
                if not err.refused:
                    newly_refused.update({a.lower(): str(err) for a in group})
                else:
                    replies = {k.lower(): v for k, v in err.refused.items()}
                    for address in group:
                        reply = replies.get(address.lower())
                        if reply is None:
                            accepted.append(address)  # the relay took the mail for the rest
                        elif reply.startswith("4"):
                            transient = f"{mask_address(address)}: {reply}"
                        else:
                            newly_refused[address.lower()] = reply
            except MailTransient as err:
                transient = str(err)
            if accepted:  # commit right after the relay's 250, before anything else
                delivered.update({a.lower(): a for a in accepted})
                everyone = all(a.lower() in delivered for a in mailbox.deliver_to)
                complete = everyone and transient is None and not newly_refused and not refused
                await self.store.update_received(  # the usual case: 'mailed' in the same commit
                    fax.fax_id,
                    now=self.clock(),
                    delivered_to=list(delivered.values()),
                    state="mailed" if complete else None,
                )
                log.info(
                    "received fax mailed",
                    extra=event("mailed", fax=fax.fax_id, to=",".join(mask_address(a) for a in accepted)),
                )
                if complete:
                    if self.metrics is not None:
                        self.metrics.received_delivered.inc()
                    return
        for address, reply in newly_refused.items():
            log.warning(
                "the relay refused a recipient of a received fax: %s",
                _ADDRESS.sub(lambda m: mask_address(m.group(0)), reply),
                extra=event("refused", fax=fax.fax_id, to=mask_address(address)),
            )
            if self.metrics is not None:
                self.metrics.received_failed.labels(reason="refused").inc()
            await self.store.add_event("refused", now=self.clock(), fax_id=fax.fax_id, detail=reply)
        refused.update(newly_refused)
        if transient is not None:
            await self._defer(job, f"mail relay: {transient}", payload={**job.payload, "refused": refused})
        if refused:
            problem = f"the mail relay refused {len(refused)} of {len(mailbox.deliver_to)} addresses"
            if not await self._tell_admin(fax, mailbox, problem, refused):
                await self._defer(
                    job,
                    "mail relay: the administrator's notice is waiting",
                    payload={**job.payload, "refused": refused},
                )
        await self.store.update_received(fax.fax_id, now=self.clock(), state="mailed")
        if delivered and self.metrics is not None:
            self.metrics.received_delivered.inc()

    def _render(self, fax: ReceivedFax, pdf: bytes, mailbox: Mailbox, to: Sequence[str]) -> bytes:
        """The fax mail, or the size notice when the mail would exceed the relay's limit."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        full = fax_mail(fax, pdf, to=to, mailbox_number=mailbox.fax_number, ctx=self.ctx, now=now)
        data = full.as_bytes(policy=SMTP_POLICY)
        if len(data) <= self.limit_bytes:
            return data
        log.warning(
            "received fax too large to mail; sending a notice",
            extra=event("too large", fax=fax.fax_id, bytes=len(data), limit=self.limit_bytes),
        )
        notice = too_large_notice(
            fax,
            size_bytes=len(data),
            limit_bytes=self.limit_bytes,
            to=to,
            mailbox_number=mailbox.fax_number,
            kept_at=self._kept_at(fax, deleted=False),
            ctx=self.ctx,
            now=now,
        )
        return notice.as_bytes(policy=SMTP_POLICY)

    def _fits(self, fax: ReceivedFax, pdf: bytes, mailbox: Mailbox) -> bool:
        now = datetime.fromtimestamp(self.clock(), UTC)
        mail = fax_mail(
            fax, pdf, to=mailbox.deliver_to, mailbox_number=mailbox.fax_number, ctx=self.ctx, now=now
        )
        return len(mail.as_bytes(policy=SMTP_POLICY)) <= self.limit_bytes

    def _kept_at(self, fax: ReceivedFax, *, deleted: bool) -> str:
        where = "the gateway's database"
        if not deleted:
            where = f"eFax (not deleted by the gateway) and {where}"
        return f"{where}, under fax id {fax.fax_id}"

    async def _tell_admin(
        self, fax: ReceivedFax, mailbox: Mailbox, problem: str, refused: Mapping[str, str]
    ) -> bool:
        """Mail the administrator; False only when the relay said "later" (try again)."""
        if not self.admin:
            log.warning(
                "no admin_address set; nobody is told: %s",
                problem,
                extra=event("admin not told", fax=fax.fax_id),
            )
            return True
        notice: EmailMessage = admin_notice(
            fax,
            problem=problem,
            refused=refused,
            mailbox_number=mailbox.fax_number,
            kept_at=self._kept_at(fax, deleted=False),
            admin=self.admin,
            ctx=self.ctx,
            now=datetime.fromtimestamp(self.clock(), UTC),
        )
        try:  # a notice goes out with a null sender, so it cannot bounce back to us
            await self.sender.deliver(notice.as_bytes(policy=SMTP_POLICY), sender="", recipients=[self.admin])
        except MailTransient:
            return False
        except MailError as err:
            log.error(
                "the administrator's notice was refused: %s",
                err,
                extra=event("admin not told", fax=fax.fax_id),
            )
            return True
        log.info("administrator told", extra=event("admin told", fax=fax.fax_id, problem=problem))
        return True

    async def _mark(self, job: Job, fax: ReceivedFax, mailbox: Mailbox) -> None:
        try:
            await self.efax.mark_downloaded(user_id=mailbox.user_id, fax_id=fax.fax_id)
        except EfaxNotFound:
            log.info("fax already gone at eFax; nothing to mark", extra=event("marked", fax=fax.fax_id))
        except EfaxTransientError as err:
            await self._defer(job, str(err), retry_after=err.retry_after)
        except EfaxPermanentError as err:
            await self._finish(job, JobState.FAILED, f"mailed, but eFax refused to mark it downloaded: {err}")
            raise _Deferred from err
        if mailbox.retention != "keep":  # with "keep", 'done' follows at once: one commit saved
            await self.store.update_received(fax.fax_id, now=self.clock(), state="marked")

    async def _retain(self, job: Job, fax: ReceivedFax, mailbox: Mailbox) -> None:
        if mailbox.retention == "delete_after_delivery" and await self._everyone_has_it(fax, mailbox):
            try:
                await self.efax.delete_fax(user_id=mailbox.user_id, fax_id=fax.fax_id)
            except EfaxTransientError as err:
                await self._defer(job, str(err), retry_after=err.retry_after)
            except EfaxPermanentError as err:
                log.warning("eFax refused the delete: %s", err, extra=event("not deleted", fax=fax.fax_id))
            else:
                log.info("fax deleted at eFax", extra=event("deleted", fax=fax.fax_id))

    async def _everyone_has_it(self, fax: ReceivedFax, mailbox: Mailbox) -> bool:
        """Delete only what every address got in full (no refusal, no size notice)."""
        record = await self.store.received(fax.fax_id)
        pdf = await self.store.received_image(fax.fax_id)
        if record is None or pdf is None:
            return False
        got = {a.lower() for a in record.delivered_to}
        return all(a.lower() in got for a in mailbox.deliver_to) and self._fits(fax, pdf, mailbox)

    # -- queue plumbing ---------------------------------------------------------------
    async def _defer(
        self,
        job: Job,
        reason: str,
        *,
        retry_after: float | None = None,
        payload: dict[str, Any] | None = None,
    ) -> NoReturn:
        now = self.clock()
        delay = self.policy.delay(job.attempts, retry_after=retry_after, rng=self.rng)
        await self.store.defer(
            job, owner=self.owner, now=now, run_after=now + delay, error=reason, payload=payload
        )
        log.info(
            "received fax waits; retrying in %.1f s",
            delay,
            extra=event("deferred", fax=job.ref, attempt=job.attempts, error=reason),
        )
        raise _Deferred

    async def _give_up(self, job: Job, fax: ReceivedFax, mailbox: Mailbox, problem: str) -> NoReturn:
        if self.metrics is not None:
            self.metrics.received_failed.labels(reason="unreadable").inc()
        await self._tell_admin(fax, mailbox, problem, {})
        await self._finish(job, JobState.FAILED, problem)
        raise _Deferred

    async def _finish(self, job: Job, state: JobState, error: str | None) -> None:
        if not await self.store.finish(job, owner=self.owner, now=self.clock(), state=state, error=error):
            log.warning("lost the lease before finishing", extra=event("lease lost", fax=job.ref))
        elif state is JobState.FAILED:
            log.warning("received fax not delivered: %s", error, extra=event("failed", fax=job.ref))
        else:
            log.info("received fax done", extra=event("done", fax=job.ref))

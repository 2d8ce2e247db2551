"""Reporter: mails the sender what became of their fax.

Consumes: ``report`` jobs. Ref ``<job id>``: every fax of the mail is final (written by
the tracker with the last one); ``<job id>:unconfirmed``: a fax is still not final after
``tracking.unconfirmed_after_s``; ``<job id>:not-sent``: the dispatcher gave up (payload
``reason``); ``<job id>:held``: a send of unknown outcome not found at eFax, held.
Produces: one mail per job, worded by ``gateway.core.notices``, sent through
the relay or written to the Maildir (``gateway.mail``), and a ``report sent`` event.

- Envelope sender ``<>``, ``Auto-Submitted: auto-replied``, threaded under the
  original mail. Recipient: the stored ``report_to`` (the From: address, or a trusted
  scanner's Reply-To that is one of the mailbox's senders) only when
  ``notices.report_recipient`` allows it: never ``<>``, MAILER-DAEMON, or an address
  outside the mailbox's senders.
- ``Mailbox.reports``: "failures" skips the report of a mail delivered everywhere.
- A mail cut at ``smtp.max_recipients`` (452 4.5.3 for the rest, which its mail server
  delivers in another transaction): each part's report says which numbers it covers and
  where the others went (``Store.deliveries_of``: same sender and Message-ID).
- A "delivered" report carries the transmission confirmation PDF, and with
  ``Mailbox.report_attachment = "confirmation+fax"`` the faxed documents too
  (``gateway.workers.attachments``); the text names what is attached.
- Every report carries ``Reply-To: fax-gateway+<token>@fax_domain``, a fresh single-use
  token whose hash is stored (``replies.enabled``, ``replies.window_s``); the SMTP side
  takes the reply (``gateway.smtp.replies``), the reply worker acts on it.
- Settings: ``timezone`` (times in the report), ``relay.from_address`` and
  ``relay.from_name`` (From:), the mailbox's ``cover`` (eFax counts the cover page).
- Failures: the relay down or answering 4xx defers the job with backoff
  (``workers.backoff_initial_s`` doubling to ``workers.backoff_max_s``) until
  ``workers.lifetime_s``, then it is dropped with a log line; the outage is logged
  once. A 5xx fails the job at once with one log line. A report that cannot be
  delivered is never itself reported on.
"""

from __future__ import annotations

import dataclasses
import email.policy
import logging
import random
from collections.abc import Sequence
from typing import Any

from gateway.core import notices, replies
from gateway.core.retry import RetryPolicy
from gateway.core.tracking import FaxStatus, is_final
from gateway.logs import event, mask_address
from gateway.mail.relay import MailPermanent, MailSender, MailTransient
from gateway.metrics import Metrics
from gateway.settings import Mailbox, Settings
from gateway.store.base import Event, FaxRecord, Job, JobKind, JobState, Store, StoredMessage
from gateway.workers.attachments import report_attachments
from gateway.workers.base import Worker
from gateway.workers.dispatch import fax_options

log = logging.getLogger(__name__)

UNCONFIRMED, NOT_SENT, HELD = "unconfirmed", "not-sent", "held"
# How far apart the parts of one mail may arrive: a mail server retries numbers it was
# answered 452 for for days (Postfix's maximal_queue_lifetime is 5 days).
SPLIT_WINDOW_S = 5 * 86_400
VARIANTS: dict[str, notices.ReportKind] = {
    "": "final",
    UNCONFIRMED: "unconfirmed",
    NOT_SENT: "not_sent",
    HELD: "held",
}


def build_report(
    kind: notices.ReportKind,
    message: StoredMessage,
    faxes: list[FaxRecord],
    events: list[Event],
    *,
    payload: dict[str, Any],
    settings: Settings,
    mailbox: Mailbox | None = None,
    deliveries: Sequence[StoredMessage] = (),
) -> notices.Report:
    """The report's values from what the store holds about the mail.

    ``deliveries``: the other mails from this sender with this Message-ID
    (``Store.deliveries_of``); those with other numbers, when this one or they were cut
    at ``smtp.max_recipients``, are the rest of one mail its mail server delivered apart.
    """
    submitted = {e.fax_id: e.at for e in events if e.action == "submitted" and e.fax_id}
    recipients = list(message.recipients)
    matches = notices.match_destinations([r.number for r in recipients], [f.destination for f in faxes])
    outcomes = []
    for fax, index in zip(faxes, matches, strict=True):
        recipient = recipients[index] if index is not None else None
        d = fax.detail
        try:
            status = FaxStatus(fax.status)
        except ValueError:
            status = FaxStatus.SUBMITTED
        outcomes.append(
            notices.Outcome(
                number=recipient.pretty if recipient else fax.destination,
                name=recipient.name if recipient else None,
                status=status,
                fax_id=fax.fax_id,
                error_code=d.get("error_code"),
                error_message=d.get("error_message"),
                pages=d.get("pages"),
                duration_s=d.get("duration_s"),
                attempts=d.get("attempts"),
                submitted_at=submitted.get(fax.fax_id),
                finished_at=d.get("completed_at") or (fax.updated_at if status.final else None),
                retrying=bool(d.get("retrying")),
            )
        )
    if kind in ("not_sent", "held"):  # nothing eFax confirmed
        outcomes = []
    options = message.options
    tracking = settings.tracking
    started = min(submitted.values(), default=None)
    return notices.Report(
        kind=kind,
        job_id=message.id,
        subject=message.subject,
        original_message_id=message.message_id,
        accepted_at=message.received_at,
        outcomes=tuple(outcomes),
        documents=tuple(notices.Document(d.filename, d.detected, d.pages) for d in message.documents),
        left_out=tuple(notices.LeftOut(x.filename, x.reason) for x in options.left_out),
        not_sent_reason=payload.get("reason"),
        intended=tuple(f"{r.pretty} ({r.name})" if r.name else r.pretty for r in recipients),
        maybe_sent=message.submit_state == "submitting",
        tracked_until=started + tracking.give_up_after_s if started is not None else None,
        gave_up_after_s=tracking.give_up_after_s,
        cover_page=fax_options(message, mailbox).include_cover_page,
        deferred=options.deferred,
        other_deliveries=_other_parts(message, deliveries),
    )


def _other_parts(
    message: StoredMessage, deliveries: Sequence[StoredMessage]
) -> tuple[notices.OtherDelivery, ...]:
    numbers = {r.number for r in message.recipients}
    parts = []
    for other in deliveries:
        if numbers & {r.number for r in other.recipients}:
            continue  # the same numbers again: a resend, not a part
        if message.options.deferred or other.options.deferred:
            parts.append(notices.OtherDelivery(other.id, tuple(r.pretty for r in other.recipients)))
    return tuple(parts)


class Reporter(Worker):
    kind = JobKind.REPORT

    def __init__(
        self,
        store: Store,
        sender: MailSender,
        settings: Settings,
        *,
        policy: RetryPolicy,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.sender = sender
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.rng = rng or random.Random()
        self._relay_down = False

    def _mailbox(self, user_id: str) -> Mailbox | None:
        return next((m for m in self.settings.mailboxes if m.user_id == user_id), None)

    async def handle(self, job: Job) -> None:
        message_id, _, variant = job.ref.partition(":")
        message = await self.store.message(message_id)
        if message is None:
            await self._close(job, JobState.FAILED, "the mail is no longer in the store", None)
            return
        faxes = await self.store.faxes(message.id)
        kind = VARIANTS.get(variant, "final")
        unfinished = [f for f in faxes if not is_final(f.status)]
        if kind == "final" and (unfinished or not faxes):
            # Only the tracker's last write enqueues this; be safe if anything else did.
            await self._retry(job, message, "faxes still being tracked")
            return
        if kind == "unconfirmed" and not unfinished:
            await self._close(job, JobState.DONE, "every fax is final: the final report says it", message)
            return
        events = await self.store.events(message.id)
        mailbox = self._mailbox(message.mailbox_user_id)
        report = build_report(
            kind,
            message,
            faxes,
            events,
            payload=job.payload,
            settings=self.settings,
            mailbox=mailbox,
            deliveries=await self.store.deliveries_of(message, within_s=SPLIT_WINDOW_S),
        )
        if mailbox is not None and not notices.wanted(report, mailbox.reports):
            await self._close(
                job, JobState.DONE, "not wanted: the mailbox gets failure reports only", message
            )
            return
        to, why = notices.report_recipient(
            message.report_to,
            header_from=message.header_from,
            senders=mailbox.senders if mailbox is not None else None,
        )
        if to is None:
            await self._close(job, JobState.DONE, f"no report sent: {why}", message)
            return
        now = self.clock()
        attached = await report_attachments(
            self.store,
            message,
            report,
            mailbox,
            zone=self.settings.zone,
            now=now,
            cover_page=report.cover_page,
        )
        token = await self._reply_token(job, message, now)
        hint = (
            ""
            if token is None
            else replies.reply_hint(now + self.settings.replies.window_s, self.settings.zone)
        )
        report = dataclasses.replace(report, attached=tuple(a.filename for a in attached), reply_hint=hint)
        mail = notices.compose(
            report,
            to=to,
            from_address=self.settings.relay.from_address,
            zone=self.settings.zone,
            now=now,
            message_id=notices.report_message_id(job.ref, self.settings.relay.from_address),
            from_name=self.settings.relay.from_name,
        )
        if token is not None:
            mail["Reply-To"] = replies.reply_address(token, self.settings.fax_domain)
        for a in attached:
            mail.add_attachment(a.content, maintype=a.maintype, subtype=a.subtype, filename=a.filename)
        try:
            data = mail.as_bytes(policy=email.policy.SMTP)
            await self.sender.deliver(data, sender="", recipients=[to])
        except (MailTransient, OSError) as err:
            await self._relay_trouble(job, message, err)
            return
        except MailPermanent as err:
            await self._close(job, JobState.FAILED, f"the relay refused the report: {err}", message)
            log.warning(
                "report refused by the relay; dropped: %s",
                err,
                extra=event("report refused", job=message.id, to=mask_address(to)),
            )
            return
        if self._relay_down:
            self._relay_down = False
            log.info("mail out works again", extra=event("relay recovered"))
        await self.store.finish(job, owner=self.owner, now=self.clock(), state=JobState.DONE)
        await self.store.add_event(
            "report sent",
            now=self.clock(),
            message_id=message.id,
            detail=f"{notices.headline(report)} to {to}",
        )
        if self.metrics is not None:
            self.metrics.reports_sent.inc()
        log.info(
            "report sent: %s",
            notices.headline(report),
            extra=event("report sent", job=message.id, report=job.ref, to=mask_address(to)),
        )

    async def _reply_token(self, job: Job, message: StoredMessage, now: float) -> str | None:
        """A fresh single-use token for this report's reply address (only its hash is stored)."""
        if not self.settings.replies.enabled:
            return None
        token = replies.new_token()
        await self.store.add_reply_token(
            token_hash=replies.token_hash(token),
            message_id=message.id,
            report_ref=job.ref,
            now=now,
            expires_at=now + self.settings.replies.window_s,
        )
        return token

    async def _close(self, job: Job, state: JobState, why: str, message: StoredMessage | None) -> None:
        now = self.clock()
        await self.store.finish(job, owner=self.owner, now=now, state=state, error=why)
        if message is not None:
            await self.store.add_event("report not sent", now=now, message_id=message.id, detail=why)
        if state is JobState.DONE:
            log.info("no report: %s", why, extra=event("report skipped", report=job.ref))

    async def _relay_trouble(self, job: Job, message: StoredMessage, err: Exception) -> None:
        if not self._relay_down:
            self._relay_down = True
            log.warning(
                "cannot send mail out: %s; reports wait and are retried", err, extra=event("relay failing")
            )
        await self._retry(job, message, str(err))

    async def _retry(self, job: Job, message: StoredMessage, why: str) -> None:
        now = self.clock()
        if self.policy.expired(created_at=job.created_at, now=now):
            await self._close(job, JobState.FAILED, f"gave up after retrying: {why}", message)
            log.warning(
                "report dropped after retrying: %s", why, extra=event("report expired", report=job.ref)
            )
            return
        delay = self.policy.delay(job.attempts, rng=self.rng)
        await self.store.defer(job, owner=self.owner, now=now, run_after=now + delay, error=why)

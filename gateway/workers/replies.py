"""Reply worker: acts on a sender's reply to a fax report, and answers it.

Consumes: ``reply`` jobs, written by the SMTP side (``gateway.smtp.replies``) once the
reply passed every check (its token used, for ``retry`` and ``cancel``). Produces: the
action, an event in the mail's story, an audit line (``reply done``), and one short
answer mail to the sender, from the null sender, threaded under the reply. Touches: the
store, eFax (``POST /faxes/{id}/cancel``, through ``gateway.operations.actions``) and the
relay (the answer).

- ``retry``: a held mail is released as ``fax-gateway queue retry`` does (sent again;
  the answer says it may arrive twice). A mail that was not sent (the dispatcher gave
  up), or whose faxes failed, were cancelled or were never confirmed, becomes a new
  attempt: a new job with the same documents, to the numbers not delivered
  (``Store.copy_message``), with its own reports. A mail still on its way, delivered,
  or whose bytes were deleted (``database.keep_days``) is not retried; the answer says why.
- ``cancel``: ``gateway.operations.actions.cancel`` (before eFax: the dispatch is
  cancelled; after: eFax is asked to stop each fax not yet final, and tracking is made
  due). The answer says "cancel requested"; the final report says how it really ended.
- any other word: the answer lists the words; nothing else happens.

Failures: the relay down or 4xx defers the job (``workers.backoff_*``) with the action
already done and recorded (``payload.done``), so it is never done twice; a 5xx drops the
answer with one log line. An answer is never itself answered.
"""

from __future__ import annotations

import email.policy
import logging
import random
from collections.abc import Callable
from typing import Any

from gateway.audit import Audit
from gateway.core import replies
from gateway.core.ids import new_job_id
from gateway.core.notices import from_field, match_destinations, report_message_id, thread_id
from gateway.core.retry import RetryPolicy
from gateway.core.tracking import FaxStatus, is_final
from gateway.logs import event, mask_address
from gateway.mail.relay import MailPermanent, MailSender, MailTransient
from gateway.operations import actions
from gateway.settings import Settings
from gateway.store.base import Job, JobKind, JobState, Recipient, Store, StoredMessage
from gateway.workers.base import Worker

log = logging.getLogger(__name__)
NOT_DONE = (FaxStatus.FAILED, FaxStatus.CANCELLED, FaxStatus.UNKNOWN)


class ReplyWorker(Worker):
    kind = JobKind.REPLY

    def __init__(
        self,
        store: Store,
        sender: MailSender,
        settings: Settings,
        *,
        canceller: actions.Canceller | None,
        policy: RetryPolicy,
        audit: Audit | None = None,
        rng: random.Random | None = None,
        on_queued: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.on_queued = on_queued  # jobs made due (a retry, a cancel's tracking): their workers look now
        self.sender = sender
        self.settings = settings
        self.canceller = canceller
        self.policy = policy
        self.audit = audit
        self.rng = rng or random.Random()

    async def handle(self, job: Job) -> None:
        payload = dict(job.payload)
        message = await self.store.message(str(payload.get("message_id", "")))
        if message is None:
            await self.store.finish(
                job,
                owner=self.owner,
                now=self.clock(),
                state=JobState.FAILED,
                error="the mail is no longer in the store",
            )
            return
        word = str(payload.get("word", "other"))
        if "done" not in payload:  # the action, once, even when the answer must wait
            subject, lines, new_job = await self._act(word, message, payload)
            payload["done"] = {"subject": subject, "lines": lines, "new_job": new_job}
            if self.on_queued is not None:
                self.on_queued()
            if self.audit is not None:
                self.audit.reply(
                    "done",
                    job=message.id,
                    sender=str(payload.get("sender", "")),
                    word=word,
                    outcome=lines[0] if lines else "",
                    new_job=new_job,
                )
        done = payload["done"]
        await self._answer(job, message, payload, str(done["subject"]), [str(x) for x in done["lines"]])

    # -- the action --------------------------------------------------------------------
    async def _act(
        self, word: str, message: StoredMessage, payload: dict[str, Any]
    ) -> tuple[str, list[str], str | None]:
        title = " ".join(message.subject.split()) or "(no subject)"
        source = f"reply from {payload.get('sender', '')}"
        if word == "retry":
            lines, new_job = await self._retry(message, source)
            return f"Fax retry: {title}", lines, new_job
        if word == "cancel":
            outcome = await actions.cancel(
                self.store, message.id, self.canceller, now=self.clock(), source=source
            )
            if outcome.ok and any(c.startswith("dispatch ") for c in outcome.changed):
                return (
                    f"Fax cancelled: {title}",
                    ["Cancelled before it was sent to eFax: nothing was faxed."],
                    None,
                )
            if outcome.ok:
                lines = [
                    "Cancel requested. " + " ".join(outcome.said),
                    "A report follows once eFax says how the fax ended: cancelled, or delivered "
                    "if it got through first.",
                ]
                return f"Fax cancel requested: {title}", lines, None
            reason = " ".join(outcome.said) or outcome.error or "there is nothing to cancel"
            return f"Fax not cancelled: {title}", [f"Nothing was cancelled: {reason}"], None
        return f"Fax reply not understood: {title}", replies.unknown_word_lines(), None

    async def _retry(self, message: StoredMessage, source: str) -> tuple[list[str], str | None]:
        dispatch = await self.store.find_job(JobKind.DISPATCH, message.id)
        if message.purged_at is not None:
            return [
                "Not sent again: the mail's documents were deleted after the days the gateway keeps "
                "them (database.keep_days). Send your mail again."
            ], None
        if dispatch is not None and dispatch.state is JobState.HELD:
            outcome = await actions.retry(self.store, message.id, now=self.clock(), source=source)
            return [*outcome.said, "A report follows, as for any fax."], None
        if dispatch is None or dispatch.state not in (JobState.FAILED, JobState.DONE):
            return ["Not sent again: the fax is still on its way to eFax; its report will follow."], None
        faxes = await self.store.faxes(message.id)
        if dispatch.state is JobState.FAILED and not faxes:
            again = list(message.recipients)
        elif any(not is_final(f.status) for f in faxes):
            return ["Not sent again: eFax is still sending it; its report will follow."], None
        else:
            index = match_destinations([r.number for r in message.recipients], [f.destination for f in faxes])
            again = _undelivered(
                message.recipients, [(f.status, i) for f, i in zip(faxes, index, strict=True)]
            )
        if not again:
            return ["Not sent again: it was delivered to every number."], None
        new_id = new_job_id(self.clock())
        made = await self.store.copy_message(
            message.id,
            new_id=new_id,
            recipients=again,
            auth=f"{message.auth}; {source}",
            now=self.clock(),
            detail=source,
        )
        if not made:
            return ["Not sent again: the mail's documents are no longer kept. Send your mail again."], None
        numbers = ", ".join(r.pretty for r in again)
        return [f"Sent again to {numbers} as a new attempt, job {new_id}; its own report follows."], new_id

    # -- the answer --------------------------------------------------------------------
    async def _answer(
        self, job: Job, message: StoredMessage, payload: dict[str, Any], subject: str, lines: list[str]
    ) -> None:
        to = str(payload.get("sender", ""))
        relay = self.settings.relay
        mail = replies.answer_mail(
            to=to,
            from_field=from_field(relay.from_name, relay.from_address),
            subject=subject,
            lines=lines,
            in_reply_to=thread_id(str(payload.get("reply_message_id", ""))),
            message_id=report_message_id(f"{message.id}.reply.{job.ref}", relay.from_address),
            job_id=message.id,
            now=self.clock(),
            zone=self.settings.zone,
        )
        try:
            await self.sender.deliver(mail.as_bytes(policy=email.policy.SMTP), sender="", recipients=[to])
        except (MailTransient, OSError) as err:
            now = self.clock()
            if self.policy.expired(created_at=job.created_at, now=now):
                await self.store.finish(job, owner=self.owner, now=now, state=JobState.FAILED, error=str(err))
                return
            delay = self.policy.delay(job.attempts, rng=self.rng)
            await self.store.defer(
                job, owner=self.owner, now=now, run_after=now + delay, error=str(err), payload=payload
            )
            return
        except MailPermanent as err:
            await self.store.finish(
                job, owner=self.owner, now=self.clock(), state=JobState.FAILED, error=str(err)
            )
            log.warning(
                "answer to a reply refused by the relay: %s",
                err,
                extra=event("answer refused", job=message.id, to=mask_address(to)),
            )
            return
        await self.store.finish(job, owner=self.owner, now=self.clock(), state=JobState.DONE)
        await self.store.add_event(
            "answer sent", now=self.clock(), message_id=message.id, detail=f"{subject} to {to}"
        )
        log.info("answer sent: %s", subject, extra=event("answer sent", job=message.id, to=mask_address(to)))


def _undelivered(
    recipients: tuple[Recipient, ...], outcomes: list[tuple[str, int | None]]
) -> list[Recipient]:
    """The recipients none of whose faxes was delivered and some of which failed,
    were cancelled or never confirmed."""
    delivered = {i for status, i in outcomes if status == FaxStatus.DELIVERED and i is not None}
    failed = {i for status, i in outcomes if status in NOT_DONE and i is not None}
    return [r for n, r in enumerate(recipients) if n in failed - delivered]

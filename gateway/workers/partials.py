"""Split mails: tell the sender when the pieces of a message/partial mail never all arrive.

Consumes: ``partial`` jobs, one per split mail (ref ``<sender> <id>``), written with its
first piece by the SMTP handler and due ``smtp.partial_window_s`` later. Produces: when
pieces are still missing then, one mail to the envelope sender (null envelope sender,
``Auto-Submitted: auto-replied``) saying nothing was faxed and why, and the pieces are
dropped. When the pieces are all there (the whole mail was stored, or refused to the
session of its last piece) or already gone, the job just ends.

Failures: the relay down or answering 4xx defers the job with backoff; a 5xx drops the
notice with one log line (never a notice about a notice).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

from gateway.core.retry import RetryPolicy
from gateway.logs import event, mask_address
from gateway.mail.relay import MailPermanent, MailSender, MailTransient
from gateway.store.base import Job, JobKind, JobState, Store
from gateway.workers.base import Worker

log = logging.getLogger(__name__)


def split_mail_notice(
    *,
    sender: str,
    subject: str,
    have: list[int],
    total: int | None,
    window_s: float,
    from_address: str,
    now: float,
) -> EmailMessage:
    """The mail telling ``sender`` that a split mail was not faxed (pure)."""
    got = ", ".join(str(n) for n in have) or "none"
    of = f" of {total}" if total else ""
    notice = EmailMessage()
    notice["From"] = from_address
    notice["To"] = sender
    notice["Subject"] = f"Fax not sent: {subject}" if subject else "Fax not sent: split mail incomplete"
    notice["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    notice["Message-ID"] = make_msgid(domain="fax-gateway")
    notice["Auto-Submitted"] = "auto-replied"
    notice.set_content(
        "Your mail arrived split into several pieces (message/partial), and not all of them "
        f"arrived within {window_s / 60:g} minutes: pieces received: {got}{of}.\n\n"
        "Nothing was faxed. Please send the mail again as one message: turn off the option "
        "that splits large messages in your mail program or scanner, or attach fewer files.\n"
    )
    return notice


class PartialReaper(Worker):
    kind = JobKind.PARTIAL

    def __init__(
        self,
        store: Store,
        mail: MailSender,
        *,
        from_address: str,
        window_s: float,
        policy: RetryPolicy,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.mail = mail
        self.from_address = from_address
        self.window_s = window_s
        self.policy = policy
        self.rng = rng or random.Random()

    async def handle(self, job: Job) -> None:
        sender_key, _, ident = job.ref.partition(" ")
        pieces = await self.store.partial_pieces(sender_key=sender_key, partial_id=ident)
        totals = {t for _, t in pieces if t is not None}
        total = totals.pop() if len(totals) == 1 else None
        have = [n for n, _ in pieces]
        complete = total is not None and set(have) == set(range(1, total + 1))
        if pieces and not complete:
            sender = str(job.payload.get("sender") or sender_key)
            notice = split_mail_notice(
                sender=sender,
                subject=str(job.payload.get("subject", "")),
                have=have,
                total=total,
                window_s=self.window_s,
                from_address=self.from_address,
                now=self.clock(),
            )
            try:
                await self.mail.deliver(notice.as_bytes(policy=SMTP), sender="", recipients=[sender])
            except MailTransient as err:
                now = self.clock()
                delay = self.policy.delay(job.attempts, rng=self.rng)
                await self.store.defer(job, owner=self.owner, now=now, run_after=now + delay, error=str(err))
                return
            except MailPermanent as err:
                log.warning("split-mail notice refused: %s", err, extra=event("notice dropped"))
            log.info(
                "split mail incomplete; sender told",
                extra=event("split mail expired", sender=mask_address(sender), pieces=len(have)),
            )
        if pieces:
            await self.store.drop_partial(sender_key=sender_key, partial_id=ident)
        await self.store.finish(job, owner=self.owner, now=self.clock(), state=JobState.DONE)

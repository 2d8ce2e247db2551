"""Sending limits at MAIL, RCPT and DATA: may this sender (and mailbox) send one more?

Consumes: a sender, the mailbox when it is known, and what the mail would add (faxes,
pages). Produces: a ``Verdict`` whose reply is the refusal (``451 4.7.1`` with when to
try again, ``550 5.7.1`` for a mail that can never fit, ``451 4.3.0`` when the counts
cannot be read). Touches: the store, through ``gateway.smtp.usage.UsageWindows`` (kept
here as ``usage``: the handler tells it of each commit). Settings:
``policy.faxes_per_hour_per_sender``, ``.faxes_per_hour_per_mailbox``,
``.pages_per_day_per_sender``, ``.pages_per_day_per_mailbox`` (0: no limit),
``default_country`` (how a mailbox's number is written in a refusal).

The verdict itself is ``gateway.core.policy.check_rates``, on the counts kept in this
process (``UsageWindows``). On a store that other gateways share, that copy may miss a
moment of their mail, so the last word is the commit's: ``at_commit`` gives the store
the same verdict to judge inside the commit's own transaction, under a lock on the
sender and the mailbox, on the counts as they are then (``gateway.store.base.UsageLimit``).
A sender cannot double a limit by sending through two gateways at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.core.addressing import format_number
from gateway.core.policy import DAY_S, RateLimits, Use, Verdict, check_rates
from gateway.logs import event
from gateway.settings import Mailbox, Settings
from gateway.smtp.usage import UsageWindows
from gateway.store.base import Store, StoreError, Usage, UsageLimit

log = logging.getLogger("gateway.smtp.handler")  # mail in's log lines keep their name


class SendingLimits:
    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        p = settings.policy
        self.limits = RateLimits(
            faxes_per_hour_per_sender=p.faxes_per_hour_per_sender,
            faxes_per_hour_per_mailbox=p.faxes_per_hour_per_mailbox,
            pages_per_day_per_sender=p.pages_per_day_per_sender,
            pages_per_day_per_mailbox=p.pages_per_day_per_mailbox,
        )
        self.default_country = settings.default_country
        self.store = store
        self.clock = clock
        self.usage = UsageWindows(store, clock=clock)

    async def check(
        self, sender: str, mailbox: Mailbox | None, *, faxes: int, pages: int, final: bool = False
    ) -> Verdict:
        """The sending limits for one more mail of ``faxes`` faxes and ``pages`` pages.

        ``final`` (a piece of a split mail, kept at once): on a store other gateways share,
        the counts are read afresh, so that mail they accepted a moment ago counts too."""
        limits = self.limits
        check_mailbox = mailbox is not None and limits.per_mailbox
        if not (limits.per_sender or check_mailbox):
            return Verdict()
        now = self.clock()
        try:
            sender_list, mailbox_list = await self.usage.recent(
                sender if limits.per_sender else None,
                mailbox.user_id if mailbox is not None and check_mailbox else None,
                max_age_s=0.0 if final and self.store.shared else None,
            )
        except StoreError as err:
            log.error("cannot count recent faxes: %s", err, extra=event("store failed"))
            return Verdict(
                "451 4.3.0 The gateway cannot check its sending limits right now; please try again later."
            )

        def verdict(label: str | None) -> Verdict:
            return check_rates(
                limits=limits,
                now=now,
                faxes=faxes,
                pages=pages,
                sender=sender,
                sender_uses=sender_list,
                mailbox=label,
                mailbox_uses=mailbox_list,
            )

        if mailbox is None or not check_mailbox:
            return verdict(None)
        fits = verdict("")  # the label only words a refusal: formatted when there is one
        if fits.ok:
            return fits
        return verdict(format_number(mailbox.fax_number, self.default_country))

    def at_commit(self, sender: str, mailbox: Mailbox, *, faxes: int, pages: int) -> UsageLimit | None:
        """The limits once more, for the store to judge in the commit's transaction; None
        where this process's counts are the whole truth (a store of its own) or no limit is set."""
        limits = self.limits
        if not self.store.shared or not (limits.per_sender or limits.per_mailbox):
            return None
        now = self.clock()
        label = format_number(mailbox.fax_number, self.default_country)

        def judge(sender_uses: list[Usage], mailbox_uses: list[Usage]) -> str | None:
            verdict = check_rates(
                limits=limits,
                now=now,
                faxes=faxes,
                pages=pages,
                sender=sender,
                sender_uses=[Use(u.at, u.faxes, u.pages) for u in sender_uses],
                mailbox=label if limits.per_mailbox else None,
                mailbox_uses=[Use(u.at, u.faxes, u.pages) for u in mailbox_uses],
            )
            return None if verdict.ok else verdict.reply

        return UsageLimit(
            sender=sender if limits.per_sender else None,
            mailbox=mailbox.user_id if limits.per_mailbox else None,
            since=now - DAY_S,
            judge=judge,
        )

"""Split mails (message/partial, RFC 2046): each piece kept in the store until the last.

Consumes: one piece at DATA, once it has passed the header, sender and From: checks of
any mail. Produces: the whole mail's bytes when this piece completed it (it then goes
on through every check of a mail, as if it had come in one), else the reply for the
piece: ``250`` (kept), ``554 5.6.0`` (no usable id or number, or pieces that do not
fit together), ``552 5.3.4`` (over ``MAX_PIECES`` pieces or ``smtp.max_message_bytes``
together), ``451 4.7.1`` (the sending limits, or ``MAX_OPEN_PER_SENDER`` split mails
of one sender already waiting for pieces), ``451 4.3.0`` (store trouble). Touches: the
store's pieces (``add_partial``, ``drop_partial``); a ``PARTIAL`` job there drops the
pieces of a split mail that never completes. Settings: ``smtp.partial_window_s``
(seconds a split mail may take to arrive whole), ``smtp.max_message_bytes``.

A piece is not a fax: the sending limits are checked as at RCPT (its pages are not
known until the whole is in) and do not count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.core.documents import DocumentError, parse_message, partial_key, reassemble_partials
from gateway.core.partial import MAX_OPEN_PER_SENDER, MAX_PIECES, TOO_MANY_PIECES, split_too_big
from gateway.core.policy import one_line
from gateway.logs import event
from gateway.settings import Mailbox, SmtpSettings
from gateway.smtp.sending_limits import SendingLimits
from gateway.smtp.transaction import Transaction
from gateway.store.base import PartialTooBig, Store, StoreError, TooManySplitMails

log = logging.getLogger("gateway.smtp.handler")  # mail in's log lines keep their name


class SplitMails:
    def __init__(
        self,
        settings: SmtpSettings,
        store: Store,
        limits: SendingLimits,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self.clock = clock

    async def keep(
        self, raw: bytes, sender: str, txn: Transaction, mailbox: Mailbox, *, faxes: int
    ) -> bytes | str:
        """Keep a message/partial piece: the whole mail once complete, else the reply.

        The piece has passed the sender and From: checks of any mail; here the sending
        limits (as at RCPT: its pages are not known until the whole is in) and the split
        mail's bounds: at most ``MAX_PIECES`` pieces, ``smtp.max_message_bytes`` together,
        counted as each piece arrives, and at most ``MAX_OPEN_PER_SENDER`` split mails of
        one sender waiting for pieces at once (a piece is not a fax: the sending limits
        do not count it). ``txn.partial`` names the split mail this piece completed."""
        head = await asyncio.to_thread(parse_message, raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        key = partial_key(head)
        if key is None:
            return "554 5.6.0 This is a piece of a split message without a usable id or number."
        ident, number, total = key
        if number > MAX_PIECES or (total or 0) > MAX_PIECES:
            return TOO_MANY_PIECES
        verdict = await self.limits.check(sender, mailbox, faxes=faxes, pages=0, final=True)
        if not verdict.ok:
            return verdict.reply or ""
        now = self.clock()
        smtp = self.settings
        window = smtp.partial_window_s
        payload = {"sender": sender, "subject": str(head.get("Subject", "")), "id": ident}
        try:
            pieces = await self.store.add_partial(
                sender_key=sender.lower(),
                partial_id=ident,
                number=number,
                total=total,
                raw=raw,
                now=now,
                expire_at=now + window,
                payload=payload,
                max_pieces=MAX_PIECES,
                max_bytes=smtp.max_message_bytes,
                max_open=MAX_OPEN_PER_SENDER,
            )
        except PartialTooBig as err:
            if err.pieces > MAX_PIECES:
                return TOO_MANY_PIECES
            return split_too_big(err.size, smtp.max_message_bytes)
        except TooManySplitMails as err:
            return (
                f"451 4.7.1 {err.open_mails} split messages from {sender} are still waiting for "
                f"pieces, as many as this gateway keeps at once; send their missing pieces, or "
                f"try again once they have expired (after {window / 60:g} minutes)."
            )
        except StoreError as err:
            log.error("cannot store a piece: %s", err, extra=event("store failed"))
            return "451 4.3.0 The gateway cannot store your mail right now; please try again later."
        if pieces is None:
            log.info("piece kept", extra=event("piece kept", number=number, total=total))
            return (
                f"250 2.0.0 Ok: piece {number} of a split message kept; it is faxed when every "
                f"piece has arrived (within {window / 60:g} minutes)"
            )
        txn.partial = (sender.lower(), ident)
        try:
            return reassemble_partials(pieces)
        except DocumentError as err:
            return f"554 5.6.0 {one_line(str(err))}"

    async def done(self, txn: Transaction, reply: str) -> None:
        """After the reply to the DATA that completed a split mail: the whole mail was
        stored on its own, or refused to this session, so the pieces go. After a 4xx
        they stay, for the client's retry of the last piece."""
        piece = txn.partial
        if piece is not None and not reply.startswith("4"):
            with contextlib.suppress(StoreError):  # else the PARTIAL job tidies up later
                await self.store.drop_partial(sender_key=piece[0], partial_id=piece[1])

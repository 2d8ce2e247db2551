"""Mail in, second kind: a sender's reply to a fax report (``fax-gateway+<token>@fax_domain``).

Consumes: SMTP transactions whose recipient is a report's reply address (the handler
hands them here at RCPT and DATA). Produces: a ``reply`` job with the reply's first
word (``gateway.core.replies``), and for ``retry``/``cancel`` the token marked used, in
one transaction (``Store.use_reply_token``), before ``250``. Touches: the store only;
the reply worker (``gateway.workers.replies``) acts and answers by mail.

No backscatter: everything is decided while the session is open, and refused there.

- RCPT TO: the token unknown, already used or past ``replies.window_s`` (550 5.1.1);
  the envelope sender not the fax's original sender, or not one the session may send
  as for the fax's mailbox: trusted network or SMTP AUTH, as for sending (550 5.7.1);
  a reply address beside fax numbers, or two (452 4.5.3: one reply, alone, per mail)
- DATA: header too large (552 5.3.4); the From: not exactly one address, or not the
  original sender (550 5.7.1); the token used or run out meanwhile (550 5.1.1); store
  trouble (451 4.3.0). An automatic reply (``Auto-Submitted``, ``Precedence: bulk``) is
  answered 250 and not acted on: an out-of-office notice never retries a fax.

Every reply taken or refused is an audit line (``reply taken`` / ``refused``).
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Protocol
from weakref import WeakKeyDictionary

from aiosmtpd.smtp import Envelope, Session

from gateway.audit import Audit
from gateway.core import replies
from gateway.core.addressing import sender_matches
from gateway.core.ids import new_job_id
from gateway.core.policy import header_refusal
from gateway.core.senders import SenderRefused, header_fields, one_sender
from gateway.logs import event, mask_address
from gateway.settings import Mailbox, Settings
from gateway.store.base import JobKind, NewJob, ReplyToken, Store, StoredMessage, StoreError

log = logging.getLogger(__name__)

UNKNOWN = (
    "550 5.1.1 This reply address is unknown, was already used, or ran out ({days} days after "
    "its report): nothing was done. Reply to the newest report, or ask your administrator."
)
NOT_THE_SENDER = (
    "550 5.7.1 Only the sender of this fax may act on it by replying, from the address its "
    "report went to and a session allowed to send from its mailbox."
)
ALONE = (
    "452 4.5.3 A reply to a fax report goes alone: send it in a mail of its own, to the "
    "report's reply address only."
)
STORE_TROUBLE = "451 4.3.0 The gateway cannot record your reply right now; please try again later."


class Host(Protocol):
    """What the SMTP handler offers this module."""

    def mailboxes_for(self, address: str, session: Session) -> list[Mailbox]: ...

    def who(self, session: Session) -> str: ...

    def _refuse(
        self,
        reply: str,
        stage: str,
        session: Session,
        *,
        sender: str | None = None,
        numbers: list[str] | None = None,
        header_from: str | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class _Taken:
    token: ReplyToken
    message: StoredMessage
    mailbox: Mailbox


def original_sender(address: str, message: StoredMessage) -> bool:
    """``address`` is the fax's sender: where its report went, its From: or its envelope sender."""
    mine = parseaddr(address)[1].strip().lower()
    known = {
        parseaddr(a)[1].strip().lower()
        for a in (message.report_to, message.header_from, message.envelope_from)
    }
    return bool(mine) and mine in known


class ReplyIntake:
    def __init__(
        self, settings: Settings, store: Store, audit: Audit, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self.clock = clock
        self._taken: WeakKeyDictionary[Envelope, _Taken] = WeakKeyDictionary()

    # -- the handler's hooks ------------------------------------------------------------
    def wants(self, envelope: Envelope, address: str) -> bool:
        """RCPT: a reply address, or any recipient after one (refused: a reply goes alone)."""
        return envelope in self._taken or replies.is_reply_address(address, self.settings.fax_domain)

    def taken(self, envelope: Envelope) -> bool:
        """DATA: this transaction's recipient is a reply address."""
        return envelope in self._taken

    async def rcpt(self, host: Host, session: Session, envelope: Envelope, address: str) -> str:
        sender = envelope.mail_from or ""

        def refuse(reply: str) -> str:
            return host._refuse(reply, "rcpt", session, sender=sender, numbers=["reply"])

        if envelope in self._taken or envelope.rcpt_tos:
            return refuse(ALONE)
        token = replies.token_of(address)
        now = self.clock()
        try:
            found = await self.store.reply_token(replies.token_hash(token)) if token else None
            message = await self.store.message(found.message_id) if found is not None else None
        except StoreError:
            return refuse(STORE_TROUBLE)
        if found is None or message is None or not found.usable(now):
            return refuse(UNKNOWN.format(days=round(self.settings.replies.window_s / 86_400)))
        mailbox = next(
            (m for m in host.mailboxes_for(sender, session) if m.user_id == message.mailbox_user_id), None
        )
        if mailbox is None or not original_sender(sender, message):
            return refuse(NOT_THE_SENDER)
        self._taken[envelope] = _Taken(found, message, mailbox)
        envelope.rcpt_tos.append(address)
        return f"250 2.1.5 Reply address ok: about job {message.id}"

    async def data(self, host: Host, session: Session, envelope: Envelope) -> str:
        taken = self._taken.pop(envelope)
        sender = envelope.mail_from or ""
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)

        def refuse(reply: str, header_from: str | None = None) -> str:
            return host._refuse(
                reply, "data", session, sender=sender, numbers=["reply"], header_from=header_from
            )

        smtp = self.settings.smtp
        too_much = header_refusal(raw, max_bytes=smtp.max_header_bytes, max_fields=smtp.max_headers)
        if too_much:
            return refuse(too_much)
        try:
            header_from = one_sender(header_fields(raw, "From")).address
        except SenderRefused as err:
            return refuse(err.reply)
        if not sender_matches(header_from, taken.mailbox.senders) or not original_sender(
            header_from, taken.message
        ):
            return refuse(NOT_THE_SENDER, header_from)
        parsed = await asyncio.to_thread(_parse, raw)
        message_id = taken.message.id
        if replies.auto_reply(parsed["Auto-Submitted"], parsed["Precedence"]):
            self.audit.reply("ignored", job=message_id, sender=sender, word="", outcome="automatic reply")
            return "250 2.0.0 Ok: an automatic reply; nothing was done"
        word = replies.first_word(parsed)
        now = self.clock()
        payload = {
            "word": word,
            "message_id": message_id,
            "report_ref": taken.token.report_ref,
            "sender": sender,
            "reply_message_id": str(parsed["Message-ID"] or ""),
            "who": host.who(session),
        }
        job = NewJob(JobKind.REPLY, new_job_id(now), payload)
        try:
            if word == "other":
                await self.store.enqueue(JobKind.REPLY, job.ref, payload, now=now)
                await self.store.add_event(
                    "reply", now=now, message_id=message_id, detail=f"no known word, from {sender}"
                )
            elif not await self.store.use_reply_token(
                taken.token.token_hash, now=now, used_for=word, job=job, detail=f"{word} from {sender}"
            ):
                return refuse(
                    UNKNOWN.format(days=round(self.settings.replies.window_s / 86_400)), header_from
                )
        except StoreError:
            return refuse(STORE_TROUBLE, header_from)
        self.audit.reply(
            "taken", job=message_id, sender=sender, who=host.who(session), word=word, outcome=job.ref
        )
        log.info(
            "reply taken: %s",
            word,
            extra=event("reply taken", job=message_id, reply=job.ref, sender=mask_address(sender)),
        )
        return f"250 2.0.0 Ok: reply taken ({word}); the answer comes by mail"


def _parse(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed

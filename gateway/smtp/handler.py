"""SMTP ingress: who may fax, to where, and durable acceptance.

Consumes: SMTP sessions (aiosmtpd). Produces: a stored message with its documents and a
``dispatch`` job, committed before ``250``. Touches: the store only; never eFax.

Every refusal happens at the earliest step, as one reply line with an RFC 3463 code
and a sentence a person understands:

- MAIL FROM: session neither trusted nor authenticated (530 5.7.0), sender not
  allowed (550 5.7.1)
- RCPT TO: other domain / relaying (550 5.7.1), bad number (553 5.1.3), destination
  not allowed (550 5.7.1), too many recipients (452 4.5.3)
- DATA: header From not allowed (550 5.7.1), nothing to fax (554 5.6.0), too big
  (552 5.3.4, from the server), store trouble (451 4.3.0)

Settings: ``fax_domain``, ``default_country``, ``smtp.*``, ``policy.*``, ``mailboxes``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.core.addressing import AddressRefused, FaxNumber, parse_fax_address, sender_matches
from gateway.core.documents import (
    DocumentError,
    Extraction,
    ExtractionLimits,
    extract_documents,
    parse_message,
)
from gateway.core.ids import new_job_id
from gateway.logs import event, mask_address, mask_number
from gateway.settings import Mailbox, Settings
from gateway.store.base import NewDocument, NewMessage, Recipient, Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class _Transaction:
    """What one mail transaction has learned so far (kept on the envelope)."""

    mailboxes: list[Mailbox] = field(default_factory=list)
    recipients: list[tuple[str, FaxNumber]] = field(default_factory=list)  # (address, number)


def _transaction(envelope: Envelope) -> _Transaction:
    state = getattr(envelope, "faxgw", None)
    if state is None:
        state = _Transaction()
        envelope.faxgw = state  # type: ignore[attr-defined]
    return state


class FaxHandler:
    """aiosmtpd handler: each hook's return value is the SMTP reply line."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        limits: ExtractionLimits | None = None,
        clock: Callable[[], float] = time.time,
        on_accept: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_accept = on_accept
        self.store = store
        self.limits = limits or ExtractionLimits()
        self.clock = clock
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in settings.smtp.trusted_networks]

    # -- who --------------------------------------------------------------------
    def is_trusted(self, session: Session) -> bool:
        peer = session.peer
        host = peer[0] if isinstance(peer, tuple) else None
        if not host:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._trusted)

    def who(self, session: Session) -> str:
        if session.authenticated and session.login_data is not None:
            return f"user {session.login_data!s}"
        peer = session.peer
        return f"trusted {peer[0] if isinstance(peer, tuple) else peer}"

    def mailboxes_for(self, address: str) -> list[Mailbox]:
        return [m for m in self.settings.mailboxes if sender_matches(address, m.senders)]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if not (session.authenticated or self.is_trusted(session)):
            return self._refuse(
                "530 5.7.0 Authentication required: sign in with SMTP AUTH or send from a "
                "trusted network to fax through this gateway.",
                "not trusted",
                session,
            )
        if address in ("", "<>") or address.lower().startswith("mailer-daemon@"):
            return self._refuse(
                "550 5.7.1 Bounces and automatic replies cannot send faxes.", "null sender", session
            )
        mailboxes = self.mailboxes_for(address)
        if not mailboxes:
            return self._refuse(
                f"550 5.7.1 {address} is not allowed to send faxes through this gateway; "
                "ask the administrator to add it to a mailbox's senders.",
                "sender not allowed",
                session,
                sender=mask_address(address),
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        _transaction(envelope).mailboxes = mailboxes
        return "250 2.1.0 Sender ok"

    # -- where ------------------------------------------------------------------
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        txn = _transaction(envelope)
        try:
            number = parse_fax_address(
                address,
                fax_domain=self.settings.fax_domain,
                default_country=self.settings.default_country,
                allowed_countries=self.settings.allowed_countries,
            )
        except AddressRefused as err:
            return self._refuse(err.reply, "recipient refused", session)
        if any(n.wire == number.wire for _, n in txn.recipients):
            return "250 2.1.5 Recipient ok (already listed)"
        if len(txn.recipients) >= self.settings.smtp.max_recipients:
            return self._refuse(
                f"452 4.5.3 Too many fax recipients in one mail (at most "
                f"{self.settings.smtp.max_recipients}); send the rest in another mail.",
                "too many recipients",
                session,
            )
        txn.recipients.append((address, number))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return f"250 2.1.5 Recipient ok: fax to {number.pretty}"

    # -- what -------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        txn = _transaction(envelope)
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        try:
            message, extraction = await asyncio.to_thread(self._read, raw)
        except DocumentError as err:
            return self._refuse(f"554 5.6.0 {_one_line(str(err))}", "nothing to fax", session)

        header_from = parseaddr(str(message.get("From", "")))[1]
        sender = envelope.mail_from or ""
        mailbox = next((m for m in txn.mailboxes if sender_matches(header_from, m.senders)), None)
        if mailbox is None:
            return self._refuse(
                f"550 5.7.1 The From: address {header_from or '(none)'} is not allowed to send "
                "faxes through this gateway.",
                "header from not allowed",
                session,
                sender=mask_address(header_from),
            )
        new = self._new_message(session, envelope, message, extraction, mailbox, header_from)
        try:
            await self.store.accept_message(new)
        except StoreError as err:
            log.error("cannot store a mail: %s", err, extra=event("store failed"))
            return "451 4.3.0 The gateway cannot store your mail right now; please try again later."
        if self.on_accept is not None:
            self.on_accept()
        log.info(
            "mail accepted",
            extra=event(
                "accepted",
                job=new.id,
                sender=mask_address(sender),
                who=self.who(session),
                to=",".join(mask_number(r.number) for r in new.recipients),
                documents=len(new.documents),
                pages=extraction.pages,
            ),
        )
        return f"250 2.0.0 Ok: queued as {new.id}"

    def _read(self, raw: bytes) -> tuple[EmailMessage, Extraction]:
        message = parse_message(raw)
        return message, extract_documents(message, self.limits)

    def _new_message(
        self,
        session: Session,
        envelope: Envelope,
        message: EmailMessage,
        extraction: Extraction,
        mailbox: Mailbox,
        header_from: str,
    ) -> NewMessage:
        txn = _transaction(envelope)
        names = _display_names(message)
        reply_to = parseaddr(str(message.get("Reply-To", "")))[1]
        report_to = reply_to if (reply_to and self.is_trusted(session)) else header_from
        now = self.clock()
        job_id = new_job_id(now)
        from_name = parseaddr(str(message.get("From", "")))[0]
        options: dict[str, Any] = {
            "cover": extraction.options.cover,
            "resolution": extraction.options.resolution,
            "cover_subject": extraction.subject,
            "cover_message": "" if extraction.body_is_document else extraction.body_text,
            "from_name": from_name or header_from,
            "body_is_document": extraction.body_is_document,
            "left_out": [{"filename": x.filename, "reason": x.reason} for x in extraction.left_out],
            "pages": extraction.pages,
        }
        return NewMessage(
            id=job_id,
            received_at=now,
            mailbox_user_id=mailbox.user_id,
            envelope_from=envelope.mail_from or "",
            header_from=header_from,
            report_to=report_to,
            auth=self.who(session),
            message_id=str(message.get("Message-ID", "")).strip() or make_msgid(domain="fax-gateway"),
            subject=str(message.get("Subject", "")),
            recipients=[
                Recipient(number=n.wire, pretty=n.pretty, name=names.get(address.lower()))
                for address, n in txn.recipients
            ],
            options=options,
            raw=bytes(envelope.original_content or b""),
            documents=[
                NewDocument(d.filename, d.document_type, d.detected, d.pages, d.content)
                for d in extraction.documents
            ],
        )

    # -- helpers ----------------------------------------------------------------
    def _refuse(self, reply: str, why: str, session: Session, **ids: Any) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else session.peer
        log.info("refused: %s", reply, extra=event("refused", reason=why, peer=peer, **ids))
        return reply

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session failed", extra=event("session error"))
        return "451 4.3.0 The gateway had a problem with this mail; please try again later."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _display_names(message: EmailMessage) -> dict[str, str]:
    """address (lower-case) -> display name, from To and Cc."""
    pairs = getaddresses([str(v) for h in ("To", "Cc") for v in message.get_all(h, [])])
    return {addr.lower(): name for name, addr in pairs if name and addr}

"""Mail in's aiosmtpd handler: each hook's return value is the SMTP reply line.

Consumes: SMTP sessions (aiosmtpd, through ``gateway.smtp.server``). Produces: a stored
message with its documents and a ``dispatch`` job, committed before ``250``. Touches:
the store only; never eFax.

The hooks run the steps in order and give the first refusal; the decisions live in
modules named for them: who a session is and what it may send as
(``gateway.smtp.identity``), the sending limits (``gateway.smtp.sending_limits``),
split mails (``gateway.smtp.split_mail``), reading a mail in a reader process
(``gateway.smtp.reading``), the stored message (``gateway.smtp.stored_message``),
refusals written to the log and the audit log (``gateway.smtp.refusal_log``), and the
pure verdicts and their replies in ``gateway.core`` (addressing, policy, senders, partial).

Deny by default. Every refusal happens at the earliest step, as one reply line with
an RFC 3463 code and a sentence a person understands, and is written to the audit log:

- AUTH: wrong user name or password (535 5.7.8; the third in a session: 421 4.7.0);
  too many failures from the address or for the name, across sessions (454 4.7.0)
- any command: the ``smtp.hard_error_limit``-th refusal without a mail accepted closes
  the session (421 4.7.0, from the server)
- MAIL FROM: session neither authenticated nor from a trusted network (530 5.7.0; a
  client outside them gets 530 5.7.0 before any command when ``require_tls``, from the
  server); null sender (550 5.7.1); sender not in the senders of a mailbox the session may use
  (550 5.7.1); sender already over a sending limit (451 4.7.1)
- RCPT TO: other domain / relaying (550 5.7.1), bad number (553 5.1.3), destination not
  allowed: premium-rate and other special numbers, ``deny_numbers``, countries (550
  5.7.1); too many recipients (452 4.5.3); over the hourly fax limit (451 4.7.1)
- DATA: header too large (552 5.3.4), header From not allowed, not exactly one, or
  ambiguous (550 5.7.1; read from the header bytes before anything is parsed), upstream
  sender verification missing (550 5.7.1), a piece of a split mail over 100 pieces or
  ``smtp.max_message_bytes`` together (552 5.3.4), the first piece of a sixth split mail
  still waiting for pieces (451 4.7.1), nothing to fax (554 5.6.0),
  too many pages or documents, or over eFax's 100 MB (552 5.3.4), over a sending limit
  (451 4.7.1, with when to try again), store trouble (451 4.3.0); too big overall
  (552 5.3.4, from the server). Lines of any length are taken; only the mail's size is
  bounded.
- any command: a command line over RFC 5321's 512 characters (500 5.5.2, from the server)

Who: an authenticated user may send from the mailboxes it is bound to (``users``); a
trusted network (``smtp.trusted_networks``) from any mailbox whose ``senders`` match.
Either way the envelope sender and the From header must match the mailbox's senders.

Refusals are logged and audited whole while they are few; a client address that
collects more than a handful a minute is summarised in one line and one audit record
per minute (``gateway.smtp.refusal_log``). Failed sign-ins are throttled across sessions
(``gateway.smtp.throttle``).

Settings: ``fax_domain``, ``default_country``, ``smtp.*``, ``policy.*``, ``users``,
``mailboxes``, ``logging.mask``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.audit import Audit
from gateway.core.addressing import AddressRefused, parse_fax_address
from gateway.core.documents import DocumentError, ExtractionLimits, SplitMessage
from gateway.core.partial import split_too_big
from gateway.core.policy import Use, Verdict, document_refusal, header_refusal, payload_refusal
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.settings import Mailbox, Settings
from gateway.smtp.arrivals import Arrivals
from gateway.smtp.auth import AuthMechanisms, UserDirectory
from gateway.smtp.identity import Identity, Refusal, peer
from gateway.smtp.reading import MailReaders, ReadMail, Unread
from gateway.smtp.refusal_log import RefusalLog
from gateway.smtp.replies import ReplyIntake
from gateway.smtp.sending_limits import SendingLimits
from gateway.smtp.split_mail import SplitMails
from gateway.smtp.stored_message import new_message
from gateway.smtp.throttle import AuthThrottle, Throttled
from gateway.smtp.transaction import Transaction
from gateway.smtp.transaction import transaction as _transaction
from gateway.store.base import NewMessage, OverLimit, Store, StoreError

log = logging.getLogger(__name__)


class FaxHandler(AuthMechanisms):
    """aiosmtpd handler: each hook's return value is the SMTP reply line."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        limits: ExtractionLimits | None = None,
        clock: Callable[[], float] = time.time,
        on_accept: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
        audit: Audit | None = None,
        readers: MailReaders,
    ) -> None:
        self.settings = settings
        self.readers = readers
        self.on_accept = on_accept
        self.store = store
        self.limits = limits or ExtractionLimits()
        self.clock = clock
        self.metrics = metrics
        self.audit = audit or Audit(clock=clock)
        smtp = settings.smtp
        self.users = UserDirectory(settings.users, threads=smtp.auth_hash_threads)
        self.throttle = AuthThrottle(
            delay_s=smtp.auth_failure_delay_s,
            max_delay_s=smtp.auth_failure_max_delay_s,
            lockout_failures=smtp.auth_lockout_failures,
            lockout_s=smtp.auth_lockout_s,
        )
        self.identity = Identity(settings, self.users)
        self.refusal_log = RefusalLog(self.identity, self.audit, mask=settings.logging.mask)
        self.refusals = self.refusal_log.digest
        self.sending_limits = SendingLimits(settings, store, clock=clock)
        self.usage = self.sending_limits.usage
        self.split_mails = SplitMails(smtp, store, self.sending_limits, clock=clock)
        self.arrivals = Arrivals()  # mails in their DATA phase, for workers that defer
        self.replies = ReplyIntake(settings, store, self.audit, clock=clock)  # replies to reports

    # -- connection hooks (called by gateway.smtp.server.FaxSMTP) -----------------------
    def is_trusted_ip(self, host: str) -> bool:
        return self.identity.is_trusted_ip(host)

    def session_opened(self, ip: str) -> None:
        if self.metrics is not None:
            self.metrics.smtp_session_opened()

    def connection_refused(self, ip: str, reply: str) -> None:
        if self.metrics is not None:
            self.metrics.smtp_refusal(421)
        self.refusal_log.connection_refused(ip, reply)

    def session_closed(self, ip: str) -> None:
        self.refusal_log.write_due()

    def too_many_errors(self, session: Session, reply: str) -> None:
        """The server closes a session that collected ``smtp.hard_error_limit`` refusals."""
        self._refuse(reply, "session", session)

    def close(self) -> None:
        """At the end: every refusal still only counted is summarised; the AUTH threads go."""
        self.refusal_log.close()
        self.users.close()

    def protocol_refused(self, session: Session, envelope: Envelope | None, reply: str, stage: str) -> None:
        """A refusal the protocol layer answered (too big, command line too long...):
        logged and audited like the handler's own."""
        txn = _transaction(envelope) if envelope is not None else None
        self._refuse(
            reply,
            stage,
            session,
            sender=envelope.mail_from if envelope is not None else None,
            numbers=[n.wire for _, n in txn.recipients] if txn is not None else None,
        )

    def reply_sent(self, reply: str) -> None:
        code = reply[:3]
        if self.metrics is not None and code.isdigit() and code[0] in "45" and reply[3:4] != "-":
            self.metrics.smtp_refusal(int(code))

    # -- who --------------------------------------------------------------------------
    def is_trusted(self, session: Session) -> bool:
        return self.identity.is_trusted(session)

    def user(self, session: Session) -> str | None:
        return self.identity.user(session)

    def who(self, session: Session) -> str:
        return self.identity.who(session)

    def mailboxes_for(self, address: str, session: Session) -> list[Mailbox]:
        """The mailboxes this session may send from as ``address``."""
        return self.identity.mailboxes_for(address, session)

    def sign_in_failed(self, session: Session, login: str, failures: int, reply: str) -> None:
        self.refusal_log.sign_in_failed(session, login, failures, reply)

    def sign_ins_throttled(self, session: Session, threshold: Throttled) -> None:
        self.refusal_log.sign_ins_throttled(session, threshold)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        user, trusted = self.user(session), self.is_trusted(session)
        if not (user or trusted):
            return self._refuse(
                "530 5.7.0 Authentication required: sign in with SMTP AUTH or send from a "
                "trusted network to fax through this gateway.",
                "mail",
                session,
                sender=address,
            )
        if address in ("", "<>") or address.lower().startswith("mailer-daemon@"):
            return self._refuse(
                "550 5.7.1 Bounces and automatic replies cannot send faxes.", "mail", session, sender=address
            )
        mailboxes = self.mailboxes_for(address, session)
        if not mailboxes:
            if user is not None:
                reply = (
                    f"550 5.7.1 The user {user} may not send faxes as {address}; use an address "
                    "that one of its mailboxes allows, or ask the administrator."
                )
            else:
                reply = (
                    f"550 5.7.1 {address} is not allowed to send faxes through this gateway; "
                    "ask the administrator to add it to a mailbox's senders."
                )
            return self._refuse(reply, "mail", session, sender=address)
        only = mailboxes[0] if len(mailboxes) == 1 else None
        verdict = await self._rates(address, only, faxes=1, pages=1)
        if not verdict.ok:
            return self._refuse(verdict.reply or "", "mail", session, sender=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        _transaction(envelope).mailboxes = mailboxes
        return "250 2.1.0 Sender ok"

    # -- where --------------------------------------------------------------------------
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.replies.wants(envelope, address):  # fax-gateway+<token>@fax_domain
            return await self.replies.rcpt(self, session, envelope, address)
        txn = _transaction(envelope)
        sender = envelope.mail_from or ""
        p = self.settings.policy
        try:
            number = parse_fax_address(
                address,
                fax_domain=self.settings.fax_domain,
                default_country=self.settings.default_country,
                allowed_countries=self.settings.allowed_countries,
                allow_numbers=p.allow_numbers,
                deny_numbers=p.deny_numbers,
            )
        except AddressRefused as err:
            return self._refuse(err.reply, "rcpt", session, sender=sender, numbers=[address])
        if any(n.wire == number.wire for _, n in txn.recipients):
            return "250 2.1.5 Recipient ok (already listed)"
        if len(txn.recipients) >= self.settings.smtp.max_recipients:
            # A mail server delivers the rest in another transaction (RFC 5321 4.5.3.1.10);
            # the reports of both say so (MessageOptions.deferred).
            if all(n.wire != number.wire for n in txn.deferred):
                txn.deferred.append(number)
            taken = len(txn.recipients)
            return self._refuse(
                f"452 4.5.3 Too many fax recipients: this mail takes {taken} numbers, the ones "
                "accepted so far; send the rest in another mail.",
                "rcpt",
                session,
                sender=sender,
                numbers=[number.wire],
            )
        only = txn.mailboxes[0] if len(txn.mailboxes) == 1 else None
        verdict = await self._rates(sender, only, faxes=len(txn.recipients) + 1, pages=0)
        if not verdict.ok:
            return self._refuse(verdict.reply or "", "rcpt", session, sender=sender, numbers=[number.wire])
        txn.recipients.append((address, number))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return f"250 2.1.5 Recipient ok: fax to {number.pretty}"

    # -- what ---------------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies.taken(envelope):  # a reply to a report, taken at RCPT
            return await self.replies.data(self, session, envelope)
        reply = await self._data(server, session, envelope)
        await self.split_mails.done(_transaction(envelope), reply)
        return reply

    async def _data(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        processing = getattr(server, "processing", None)
        if processing is not None:
            processing()
        txn = _transaction(envelope)
        sender = envelope.mail_from or ""
        numbers = [n.wire for _, n in txn.recipients]
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)

        def refuse(reply: str, header_from: str | None = None) -> str:
            return self._refuse(
                reply, "data", session, sender=sender, numbers=numbers, header_from=header_from
            )

        smtp = self.settings.smtp
        too_much = header_refusal(raw, max_bytes=smtp.max_header_bytes, max_fields=smtp.max_headers)
        if too_much:
            return refuse(too_much)
        checked = self._check_sender(raw, txn, session, sender)  # before any parsing
        if isinstance(checked, Refusal):
            return refuse(checked.reply, checked.header_from)
        mailbox, header_from = checked
        try:
            mail = await self._read_mail(raw)
        except SplitMessage:
            # One piece of a message/partial mail: checked like a mail, then kept; the
            # last one to arrive carries the whole mail on through the checks below.
            whole = await self.split_mails.keep(raw, sender, txn, mailbox, faxes=len(numbers))
            if isinstance(whole, str):
                return whole if whole.startswith("250") else refuse(whole, header_from)
            raw = whole
            envelope.original_content = whole
            checked = self._check_whole(whole, txn, session, sender)
            if isinstance(checked, Refusal):
                return refuse(checked.reply, checked.header_from)
            mailbox, header_from = checked
            try:
                mail = await self._read_mail(whole)
            except Unread as err:
                return refuse(err.reply, header_from)
            except DocumentError as err:  # a piece within a piece included
                return refuse(document_refusal(err), header_from)
        except Unread as err:
            return refuse(err.reply, header_from)
        except DocumentError as err:
            return refuse(document_refusal(err), header_from)

        extraction = mail.extraction
        too_heavy = payload_refusal([d.size for d in extraction.documents], len(numbers))
        if too_heavy:
            return refuse(too_heavy, header_from)
        pages = extraction.pages * len(numbers)
        verdict = await self._rates(sender, mailbox, faxes=len(numbers), pages=pages)
        if not verdict.ok:
            return refuse(verdict.reply or "", header_from)
        new = self._new_message(session, envelope, mail, mailbox, header_from)
        # Shielded: once the commit is under way, a dropped connection must not cut off
        # its audit line (the client, missing its 250, may send the mail again).
        return await asyncio.shield(self._accept(new, session, mailbox, pages))

    async def _accept(self, new: NewMessage, session: Session, mailbox: Mailbox, pages: int) -> str:
        use = Use(new.received_at, len(new.recipients), pages)
        limit = self.sending_limits.at_commit(new.envelope_from, mailbox, faxes=use.faxes, pages=pages)
        self.usage.committing(new.id, new.envelope_from, mailbox.user_id, use)
        try:
            await self.store.accept_message(new, limit=limit)
        except OverLimit as over:  # another gateway's mail came first (a shared store)
            self.usage.failed(new.id)
            return self._refuse(
                over.reply,
                "data",
                session,
                sender=new.envelope_from,
                numbers=[r.number for r in new.recipients],
                header_from=new.header_from,
            )
        except StoreError as err:
            self.usage.failed(new.id)
            log.error("cannot store a mail: %s", err, extra=event("store failed"))
            return self._refuse(
                "451 4.3.0 The gateway cannot store your mail right now; please try again later.",
                "data",
                session,
                sender=new.envelope_from,
                numbers=[r.number for r in new.recipients],
            )
        except BaseException:
            self.usage.committed(new.id)  # cut off mid-commit: it may be stored, so it counts
            raise
        self.usage.committed(new.id)
        if self.on_accept is not None:
            self.on_accept()
        if self.metrics is not None:
            self.metrics.smtp_mail_accepted()
        log.info(
            "mail accepted",
            extra=event(
                "accepted",
                job=new.id,
                sender=self.refusal_log.mask_address(new.envelope_from),
                who=self.who(session),
                to=",".join(self.refusal_log.mask_number(r.number) for r in new.recipients),
                documents=len(new.documents),
                pages=pages,
            ),
        )
        self.audit.accepted(
            job=new.id,
            who=new.auth,
            peer=peer(session),
            sender=new.envelope_from,
            header_from=new.header_from,
            mailbox=mailbox.user_id,
            numbers=[r.number for r in new.recipients],
            pages=pages,
            documents=len(new.documents),
        )
        return f"250 2.0.0 Ok: queued as {new.id}"

    def _check_sender(
        self, raw: bytes, txn: Transaction, session: Session, sender: str
    ) -> tuple[Mailbox, str] | Refusal:
        return self.identity.header_sender(raw, txn.mailboxes, session, sender)

    def _check_whole(
        self, whole: bytes, txn: Transaction, session: Session, sender: str
    ) -> tuple[Mailbox, str] | Refusal:
        """A reassembled split mail: the size, header and sender checks of any mail."""
        smtp = self.settings.smtp
        if len(whole) > smtp.max_message_bytes:
            return Refusal(split_too_big(len(whole), smtp.max_message_bytes), None)
        too_much = header_refusal(whole, max_bytes=smtp.max_header_bytes, max_fields=smtp.max_headers)
        if too_much:
            return Refusal(too_much, None)
        return self._check_sender(whole, txn, session, sender)

    async def _read_mail(self, raw: bytes) -> ReadMail:
        """The mail parsed and its documents extracted, by a confined reader process
        (gateway.smtp.reading): never in this process. Raises DocumentError for a mail
        that cannot be faxed, ``Unread`` (with its reply) when no reader answered."""
        return self._was_read("reader", await self.readers.read(raw, self.limits))

    def _was_read(self, where: str, mail: ReadMail) -> ReadMail:
        if self.metrics is not None:
            self.metrics.smtp_mail_read(where)
        return mail

    # -- how much -------------------------------------------------------------------------
    async def _rates(self, sender: str, mailbox: Mailbox | None, *, faxes: int, pages: int) -> Verdict:
        """The sending limits for one more mail (``gateway.smtp.sending_limits``)."""
        return await self.sending_limits.check(sender, mailbox, faxes=faxes, pages=pages)

    # -- the stored message ----------------------------------------------------------------
    def _new_message(
        self,
        session: Session,
        envelope: Envelope,
        mail: ReadMail,
        mailbox: Mailbox,
        header_from: str,
    ) -> NewMessage:
        txn = _transaction(envelope)
        return new_message(
            mail,
            raw=bytes(envelope.original_content or b""),
            recipients=txn.recipients,
            deferred=txn.deferred,
            mailbox=mailbox,
            envelope_from=envelope.mail_from or "",
            header_from=header_from,
            report_to=self.identity.report_to(session, mail.reply_to, mailbox, header_from),
            auth=self.who(session),
            now=self.clock(),
        )

    # -- helpers ----------------------------------------------------------------------------
    def _refuse(
        self,
        reply: str,
        stage: str,
        session: Session,
        *,
        sender: str | None = None,
        numbers: list[str] | None = None,
        header_from: str | None = None,
    ) -> str:
        """Log and audit a refusal (``gateway.smtp.refusal_log``); the reply, unchanged."""
        return self.refusal_log.refuse(
            reply, stage, session, sender=sender, numbers=numbers, header_from=header_from
        )

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session failed", extra=event("session error"))
        return "451 4.3.0 The gateway had a problem with this mail; please try again later."

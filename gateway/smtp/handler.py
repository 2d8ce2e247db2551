"""SMTP ingress: who may fax, to where, how much, and durable acceptance.

Consumes: SMTP sessions (aiosmtpd, through ``gateway.smtp.server``). Produces: a stored
message with its documents and a ``dispatch`` job, committed before ``250``. Touches:
the store only; never eFax.

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
per minute (``gateway.smtp.refusals``). Failed sign-ins are throttled across sessions
(``gateway.smtp.throttle``).

Settings: ``fax_domain``, ``default_country``, ``smtp.*``, ``policy.*``, ``users``,
``mailboxes``, ``logging.mask``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses, make_msgid, parseaddr

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.audit import Audit
from gateway.core import authresults
from gateway.core.addressing import (
    AddressRefused,
    FaxNumber,
    format_number,
    parse_fax_address,
    sender_matches,
)
from gateway.core.documents import (
    DocumentError,
    ExtractionLimits,
    FaxDocument,
    SplitMessage,
    TooManyPages,
    parse_message,
    partial_key,
    reassemble_partials,
)
from gateway.core.ids import new_job_id
from gateway.core.partial import MAX_OPEN_PER_SENDER, MAX_PIECES
from gateway.core.policy import RateLimits, Use, Verdict, check_rates, header_refusal, payload_refusal
from gateway.core.senders import SenderRefused, header_fields, one_sender
from gateway.logs import event, mask_address, mask_number
from gateway.metrics import Metrics
from gateway.settings import Mailbox, Settings
from gateway.smtp.auth import AuthMechanisms, AuthUser, UserDirectory
from gateway.smtp.ingress import Ingress
from gateway.smtp.reading import MailReaders, ReadMail, Unread
from gateway.smtp.refusals import RefusalDigest, Summary
from gateway.smtp.replies import ReplyIntake
from gateway.smtp.throttle import AuthThrottle, Throttled
from gateway.smtp.usage import UsageWindows
from gateway.store.base import (
    LeftOut,
    MessageOptions,
    NewDocument,
    NewMessage,
    PartialTooBig,
    Recipient,
    Store,
    StoreError,
    TooManySplitMails,
)

log = logging.getLogger(__name__)

_TOO_MANY_PIECES = (
    f"552 5.3.4 This split message has more than {MAX_PIECES} pieces, more than this gateway "
    "joins; send it as one message."
)


@dataclass
class _Transaction:
    """What one mail transaction has learned so far (kept on the envelope)."""

    mailboxes: list[Mailbox] = field(default_factory=list)
    recipients: list[tuple[str, FaxNumber]] = field(default_factory=list)  # (address, number)
    deferred: list[FaxNumber] = field(default_factory=list)  # 452 4.5.3: over smtp.max_recipients
    partial: tuple[str, str] | None = None  # (sender key, id) when this DATA completed a split mail


def _transaction(envelope: Envelope) -> _Transaction:
    state = getattr(envelope, "faxgw", None)
    if state is None:
        state = _Transaction()
        envelope.faxgw = state  # type: ignore[attr-defined]
    return state


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _keep(text: str) -> str:
    return text


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
        self.refusals = RefusalDigest()
        self._summary_timer: asyncio.TimerHandle | None = None
        p = settings.policy
        self.rate_limits = RateLimits(
            faxes_per_hour_per_sender=p.faxes_per_hour_per_sender,
            faxes_per_hour_per_mailbox=p.faxes_per_hour_per_mailbox,
            pages_per_day_per_sender=p.pages_per_day_per_sender,
            pages_per_day_per_mailbox=p.pages_per_day_per_mailbox,
        )
        self.usage = UsageWindows(store, clock=clock)
        self.ingress = Ingress()  # mails in their DATA phase, for workers that defer
        self.replies = ReplyIntake(settings, store, self.audit, clock=clock)  # replies to reports
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in settings.smtp.trusted_networks]
        masking = settings.logging.mask
        self._mask_address: Callable[[str], str] = mask_address if masking else _keep
        self._mask_number: Callable[[str], str] = mask_number if masking else _keep

    # -- connection hooks (called by gateway.smtp.server.FaxSMTP) -----------------------
    def is_trusted_ip(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._trusted)

    def session_opened(self, ip: str) -> None:
        if self.metrics is not None:
            self.metrics.smtp_session_opened()

    def connection_refused(self, ip: str, reply: str) -> None:
        if self.metrics is not None:
            self.metrics.smtp_refusal(421)
        if self._whole(ip, "connect", reply):
            log.warning("connection refused: %s", reply, extra=event("connection refused", peer=ip))
            self.audit.refused(stage="connect", reply=reply, who=f"unknown {ip}", peer=ip)

    def session_closed(self, ip: str) -> None:
        self._write_summaries(self.refusals.due())

    def too_many_errors(self, session: Session, reply: str) -> None:
        """The server closes a session that collected ``smtp.hard_error_limit`` refusals."""
        self._refuse(reply, "session", session)

    def close(self) -> None:
        """At the end: every refusal still only counted is summarised; the AUTH threads go."""
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        self._write_summaries(self.refusals.due(everything=True))
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
        host = _peer(session)
        return bool(host) and self.is_trusted_ip(host or "")

    def user(self, session: Session) -> str | None:
        data = session.auth_data
        return data.login if session.authenticated and isinstance(data, AuthUser) else None

    def who(self, session: Session) -> str:
        user = self.user(session)
        if user is not None:
            return f"user {user} from {_peer(session)}"
        return f"{'trusted' if self.is_trusted(session) else 'unknown'} {_peer(session)}"

    def mailboxes_for(self, address: str, session: Session) -> list[Mailbox]:
        """The mailboxes this session may send from as ``address``."""
        user = self.user(session)
        allowed = self.settings.mailboxes
        if user is not None:
            numbers = self.users.mailboxes_of(user)
            allowed = [m for m in allowed if _digits(m.fax_number) in numbers]
        return [m for m in allowed if sender_matches(address, m.senders)]

    def sign_in_failed(self, session: Session, login: str, failures: int, reply: str) -> None:
        if not self._whole(_peer(session), "auth", reply):
            return
        log.warning(
            "sign-in failed: %s",
            reply,
            extra=event(
                "auth failed", user=login, peer=_peer(session), helo=session.host_name, failures=failures
            ),
        )
        self.audit.refused(stage="auth", reply=reply, who=self.who(session), peer=_peer(session), user=login)

    def sign_ins_throttled(self, session: Session, threshold: Throttled) -> None:
        what = f"the {threshold.kind} {threshold.key}"
        if threshold.locked_for_s is None:
            log.warning(
                "sign-ins for %s now wait before their password is checked (%d failed)",
                what,
                threshold.failures,
                extra=event("auth delayed", peer=_peer(session), **{threshold.kind: threshold.key}),
            )
        else:
            log.warning(
                "sign-ins for %s refused for %g seconds after %d failures",
                what,
                threshold.locked_for_s,
                threshold.failures,
                extra=event("auth locked", peer=_peer(session), **{threshold.kind: threshold.key}),
            )

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
        piece = _transaction(envelope).partial
        if piece is not None and not reply.startswith("4"):
            # The whole mail was stored on its own, or refused to this session: the pieces
            # go. After a 4xx they stay, for the client's retry of the last piece.
            with contextlib.suppress(StoreError):  # else the PARTIAL job tidies up later
                await self.store.drop_partial(sender_key=piece[0], partial_id=piece[1])
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
        if isinstance(checked, _Refusal):
            return refuse(checked.reply, checked.header_from)
        mailbox, header_from = checked
        try:
            mail = await self._read_mail(raw)
        except SplitMessage:
            # One piece of a message/partial mail: checked like a mail, then kept; the
            # last one to arrive carries the whole mail on through the checks below.
            whole = await self._piece(raw, sender, envelope, mailbox, faxes=len(numbers))
            if isinstance(whole, str):
                return whole if whole.startswith("250") else refuse(whole, header_from)
            raw = whole
            envelope.original_content = whole
            checked = self._check_whole(whole, txn, session, sender)
            if isinstance(checked, _Refusal):
                return refuse(checked.reply, checked.header_from)
            mailbox, header_from = checked
            try:
                mail = await self._read_mail(whole)
            except Unread as err:
                return refuse(err.reply, header_from)
            except TooManyPages as err:
                return refuse(f"552 5.3.4 {_one_line(str(err))}", header_from)
            except DocumentError as err:  # a piece within a piece included
                return refuse(f"554 5.6.0 {_one_line(str(err))}", header_from)
        except Unread as err:
            return refuse(err.reply, header_from)
        except TooManyPages as err:
            return refuse(f"552 5.3.4 {_one_line(str(err))}", header_from)
        except DocumentError as err:
            return refuse(f"554 5.6.0 {_one_line(str(err))}", header_from)

        extraction = mail.extraction
        too_heavy = payload_refusal([d.size for d in extraction.documents], len(numbers))
        if too_heavy:
            return refuse(too_heavy, header_from)
        pages = extraction.pages * len(numbers)
        verdict = await self._rates(sender, mailbox, faxes=len(numbers), pages=pages, final=True)
        if not verdict.ok:
            return refuse(verdict.reply or "", header_from)
        new = self._new_message(session, envelope, mail, mailbox, header_from)
        # Shielded: once the commit is under way, a dropped connection must not cut off
        # its audit line (the client, missing its 250, may send the mail again).
        return await asyncio.shield(self._accept(new, session, mailbox, pages))

    async def _accept(self, new: NewMessage, session: Session, mailbox: Mailbox, pages: int) -> str:
        use = Use(new.received_at, len(new.recipients), pages)
        self.usage.committing(new.id, new.envelope_from, mailbox.user_id, use)
        try:
            await self.store.accept_message(new)
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
                sender=self._mask_address(new.envelope_from),
                who=self.who(session),
                to=",".join(self._mask_number(r.number) for r in new.recipients),
                documents=len(new.documents),
                pages=pages,
            ),
        )
        self.audit.accepted(
            job=new.id,
            who=new.auth,
            peer=_peer(session),
            sender=new.envelope_from,
            header_from=new.header_from,
            mailbox=mailbox.user_id,
            numbers=[r.number for r in new.recipients],
            pages=pages,
            documents=len(new.documents),
        )
        return f"250 2.0.0 Ok: queued as {new.id}"

    def _check_sender(
        self, raw: bytes, txn: _Transaction, session: Session, sender: str
    ) -> tuple[Mailbox, str] | _Refusal:
        """The mailbox and the From address of a mail (or a piece), read from its header
        bytes alone, before anything of it is parsed; else the refusal."""
        try:
            found = one_sender(header_fields(raw, "From"))
        except SenderRefused as err:
            return _Refusal(err.reply, None)
        address = found.address
        mailbox = next((m for m in txn.mailboxes if sender_matches(address, m.senders)), None)
        if mailbox is None:
            return _Refusal(
                f"550 5.7.1 The From: address {address} is not allowed to send faxes through this gateway.",
                address,
            )
        p = self.settings.policy
        if p.require_authentication_results and self.user(session) is None:
            unverified = authresults.verify(
                header_fields(raw, "Authentication-Results"),
                requirement=p.require_authentication_results,
                authserv_id=p.authserv_id,
                from_domain=found.dmarc_domain,  # the RFC5322.From domain, as DMARC takes it
                mailfrom_domain=sender,
            )
            if unverified:
                return _Refusal(unverified, address)
        return mailbox, address

    def _check_whole(
        self, whole: bytes, txn: _Transaction, session: Session, sender: str
    ) -> tuple[Mailbox, str] | _Refusal:
        """A reassembled split mail: the size, header and sender checks of any mail."""
        smtp = self.settings.smtp
        if len(whole) > smtp.max_message_bytes:
            return _Refusal(_split_too_big(len(whole), smtp.max_message_bytes), None)
        too_much = header_refusal(whole, max_bytes=smtp.max_header_bytes, max_fields=smtp.max_headers)
        if too_much:
            return _Refusal(too_much, None)
        return self._check_sender(whole, txn, session, sender)

    async def _piece(
        self, raw: bytes, sender: str, envelope: Envelope, mailbox: Mailbox, *, faxes: int
    ) -> bytes | str:
        """Keep a message/partial piece: the whole mail once complete, else the reply.

        The piece has passed the sender and From: checks of any mail; here the sending
        limits (as at RCPT: its pages are not known until the whole is in) and the split
        mail's bounds: at most ``MAX_PIECES`` pieces, ``smtp.max_message_bytes`` together,
        counted as each piece arrives, and at most ``MAX_OPEN_PER_SENDER`` split mails of
        one sender waiting for pieces at once (a piece is not a fax: the sending limits
        do not count it)."""
        head = await asyncio.to_thread(parse_message, raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        key = partial_key(head)
        if key is None:
            return "554 5.6.0 This is a piece of a split message without a usable id or number."
        ident, number, total = key
        if number > MAX_PIECES or (total or 0) > MAX_PIECES:
            return _TOO_MANY_PIECES
        verdict = await self._rates(sender, mailbox, faxes=faxes, pages=0, final=True)
        if not verdict.ok:
            return verdict.reply or ""
        now = self.clock()
        smtp = self.settings.smtp
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
                return _TOO_MANY_PIECES
            return _split_too_big(err.size, smtp.max_message_bytes)
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
        _transaction(envelope).partial = (sender.lower(), ident)
        try:
            return reassemble_partials(pieces)
        except DocumentError as err:
            return f"554 5.6.0 {_one_line(str(err))}"

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
    async def _rates(
        self, sender: str, mailbox: Mailbox | None, *, faxes: int, pages: int, final: bool = False
    ) -> Verdict:
        """The sending limits for one more mail of ``faxes`` faxes and ``pages`` pages.

        ``final`` (at DATA, just before the commit): on a store other gateways share, the
        counts are read afresh, so that mail they accepted a moment ago counts too."""
        limits = self.rate_limits
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
        return verdict(format_number(mailbox.fax_number, self.settings.default_country))

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
        raw = bytes(envelope.original_content or b"")
        extraction = mail.extraction
        names = _display_names(mail.to_cc)
        report_to = self._report_to(session, mail.reply_to, mailbox, header_from)
        now = self.clock()
        job_id = new_job_id(now)
        from_name = parseaddr(mail.from_field)[0]
        options = MessageOptions(
            cover=extraction.options.cover,
            resolution=extraction.options.resolution,
            cover_subject=extraction.subject,
            cover_message="" if extraction.body_is_document else extraction.body_text,
            from_name=from_name or header_from,
            body_is_document=extraction.body_is_document,
            left_out=tuple(LeftOut(x.filename, x.reason) for x in extraction.left_out),
            pages=extraction.pages,
            deferred=tuple(n.pretty for n in txn.deferred),
        )
        return NewMessage(
            id=job_id,
            received_at=now,
            mailbox_user_id=mailbox.user_id,
            envelope_from=envelope.mail_from or "",
            header_from=header_from,
            report_to=report_to,
            auth=self.who(session),
            message_id=mail.message_id.strip() or make_msgid(domain="fax-gateway"),
            subject=mail.subject,
            recipients=[
                Recipient(number=n.wire, pretty=n.pretty, name=names.get(address.lower()))
                for address, n in txn.recipients
            ],
            options=options,
            raw=raw,
            documents=[_new_document(d, raw) for d in extraction.documents],
        )

    def _report_to(self, session: Session, reply_to_field: str, mailbox: Mailbox, header_from: str) -> str:
        """Where the reports of this mail go: the From: address, or a trusted scanner's Reply-To
        when that address is itself one of the mailbox's senders. Behind a trusted MTA every
        session is trusted, so any other Reply-To would carry the report (numbers, subject)
        out of the organisation while the sender hears nothing."""
        reply_to = parseaddr(reply_to_field)[1]
        trusted_only = self.is_trusted(session) and self.user(session) is None
        if reply_to and trusted_only and sender_matches(reply_to, mailbox.senders):
            return reply_to
        return header_from

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
        peer = _peer(session)
        if not self._whole(peer, stage, reply):
            return reply
        log.info(
            "refused: %s",
            reply,
            extra=event(
                "refused",
                stage=stage,
                peer=peer,
                helo=session.host_name,
                sender=self._mask_address(sender) if sender else None,
                to=",".join(self._mask_number(n) for n in numbers) if numbers else None,
            ),
        )
        self.audit.refused(
            stage=stage,
            reply=reply,
            who=self.who(session),
            peer=peer,
            sender=sender,
            header_from=header_from,
            numbers=numbers or (),
            user=self.user(session),
        )
        return reply

    def _whole(self, peer: str | None, stage: str, reply: str) -> bool:
        """Is this refusal written whole? Else it is counted, for a summary at its window's end."""
        noted = self.refusals.note(peer, stage, reply[:3])
        if noted == "counted first" and self._summary_timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: summarised at close
                loop = asyncio.get_running_loop()
                self._summary_timer = loop.call_later(
                    self.refusals.seconds_left(peer) + 0.01, self._summaries_due
                )
        return noted == "whole"

    def _summaries_due(self) -> None:
        self._summary_timer = None
        self._write_summaries(self.refusals.due())
        left = self.refusals.next_due()
        if left is not None:
            self._summary_timer = asyncio.get_running_loop().call_later(left + 0.01, self._summaries_due)

    def _write_summaries(self, summaries: list[Summary]) -> None:
        for summary in summaries:
            log.warning(
                "%d more refusals for %s within a minute, not logged one by one: %s",
                summary.total,
                summary.peer,
                summary.text(),
                extra=event("refusals", peer=summary.peer, count=summary.total),
            )
            self.audit.refusals(
                peer=summary.peer, counts=summary.counts, seconds=summary.last_at - summary.first_at
            )

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session failed", extra=event("session error"))
        return "451 4.3.0 The gateway had a problem with this mail; please try again later."


@dataclass(frozen=True)
class _Refusal:
    reply: str
    header_from: str | None  # the From address, when it was read


def _split_too_big(size: int, limit: int) -> str:
    return (
        f"552 5.3.4 The pieces of this split message come to {_amount(size)}, more than the "
        f"{_amount(limit)} one mail may have here; send fewer or smaller attachments."
    )


def _amount(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{-(-size // 1000)} KB"


def _peer(session: Session) -> str | None:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def _new_document(document: FaxDocument, raw: bytes) -> NewDocument:
    """The document to store, with where it lies, base64-encoded, in the very bytes stored
    as the raw mail when it does (NewDocument refuses a left-behind content without it)."""
    span = document.span
    in_raw = (span[1], span[2]) if span is not None and span[0] is raw else None
    return NewDocument(
        document.filename,
        document.document_type,
        document.detected,
        document.pages,
        document.content,
        in_raw,
        document.length,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _display_names(to_cc: tuple[str, ...]) -> dict[str, str]:
    """address (lower-case) -> display name, from To and Cc."""
    pairs = getaddresses(list(to_cc))
    return {addr.lower(): name for name, addr in pairs if name and addr}

"""Who a session is and what it may send as: trusted networks, AUTH users, mailboxes.

Consumes: an aiosmtpd session (its peer address, its AUTH result) and, at DATA, the
mail's header bytes. Produces: whether the session is trusted or signed in, the words
that name it in logs and audit records (``who``), the mailboxes it may send from as an
envelope sender (``mailboxes_for``), the mailbox and From address of a mail or the
refusal (``header_sender``), and where its reports go (``report_to``). Touches: nothing
(the password checks are ``gateway.smtp.auth``'s). Settings: ``smtp.trusted_networks``,
``users``, ``mailboxes[].senders``, ``policy.require_authentication_results``,
``policy.authserv_id``.

An authenticated user may send from the mailboxes it is bound to (``users``); a trusted
network from any mailbox whose ``senders`` match. Either way the envelope sender and
the From header must match the mailbox's senders. The From field is read from the
header bytes alone, before anything of the mail is parsed (``gateway.core.senders``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiosmtpd.smtp import Session

from gateway.core import authresults
from gateway.core.addressing import sender_matches
from gateway.core.networks import Networks
from gateway.core.senders import HeaderFrom, SenderRefused, header_fields, one_sender, report_address
from gateway.settings import Mailbox, Settings
from gateway.smtp.auth import AuthUser, UserDirectory


@dataclass(frozen=True)
class Refusal:
    reply: str
    header_from: str | None  # the From address, when it was read


class Identity:
    def __init__(self, settings: Settings, users: UserDirectory) -> None:
        self.settings = settings
        self.users = users
        self.trusted = Networks(settings.smtp.trusted_networks)

    def is_trusted_ip(self, host: str) -> bool:
        return host in self.trusted

    def is_trusted(self, session: Session) -> bool:
        host = peer(session)
        return bool(host) and self.is_trusted_ip(host or "")

    def user(self, session: Session) -> str | None:
        data = session.auth_data
        return data.login if session.authenticated and isinstance(data, AuthUser) else None

    def who(self, session: Session) -> str:
        user = self.user(session)
        if user is not None:
            return f"user {user} from {peer(session)}"
        return f"{'trusted' if self.is_trusted(session) else 'unknown'} {peer(session)}"

    def mailboxes_for(self, address: str, session: Session) -> list[Mailbox]:
        """The mailboxes this session may send from as ``address``."""
        user = self.user(session)
        allowed = self.settings.mailboxes
        if user is not None:
            numbers = self.users.mailboxes_of(user)
            allowed = [m for m in allowed if _digits(m.fax_number) in numbers]
        return [m for m in allowed if sender_matches(address, m.senders)]

    def header_sender(
        self, raw: bytes, mailboxes: list[Mailbox], session: Session, sender: str
    ) -> tuple[Mailbox, str] | Refusal:
        """The mailbox and the From address of a mail (or a piece), read from its header
        bytes alone, before anything of it is parsed; else the refusal."""
        try:
            found = _one_sender(tuple(header_fields(raw, "From")))
        except SenderRefused as err:
            return Refusal(err.reply, None)
        address = found.address
        mailbox = next((m for m in mailboxes if sender_matches(address, m.senders)), None)
        if mailbox is None:
            return Refusal(
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
                return Refusal(unverified, address)
        return mailbox, address

    def report_to(self, session: Session, reply_to_field: str, mailbox: Mailbox, header_from: str) -> str:
        """Where the reports of this mail go (``gateway.core.senders.report_address``)."""
        trusted_only = self.is_trusted(session) and self.user(session) is None
        return report_address(reply_to_field, header_from, trusted_only=trusted_only, senders=mailbox.senders)


def peer(session: Session) -> str | None:
    """The client's address, or None before the connection has one."""
    address = session.peer
    return str(address[0]) if isinstance(address, tuple) and address else None


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


@functools.lru_cache(maxsize=4096)
def _one_sender(values: tuple[str, ...]) -> HeaderFrom:
    """``one_sender``, remembered: an office's senders send the same From: field over and
    over, and parsing it is the costliest check of a mail in this process (a refusal is
    not remembered: it raises)."""
    return one_sender(list(values))

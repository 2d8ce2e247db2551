"""Mail out through the SMTP relay (aiosmtplib), or to the Maildir when none is set.

Consumes: a finished message (bytes), an envelope sender (``""`` gives ``MAIL FROM:<>``,
as reports use) and recipients. Touches: the relay ``relay.host``:``relay.port``, or the
Maildir ``relay.maildir`` when ``relay.host`` is empty.

- ``relay.tls``: ``starttls`` makes STARTTLS *required* (aiosmtplib ``start_tls=True``,
  never "if offered": a relay that does not offer it is an error, nothing goes out in
  clear); ``implicit`` is TLS from the first byte; ``none`` is plain SMTP (loopback).
- ``relay.username``/``relay.password``: AUTH after TLS when a username is set.
- ``relay.timeout_s``: for connecting and for each reply.

Connections are kept between mails (up to ``pool`` idle ones, each for at most
``idle_s`` and ``per_connection`` mails), so that a report per fax does not cost a TCP
and TLS handshake and a login each. A kept connection is checked with NOOP before its
next mail; one that fails it, or any transaction that failed, is closed, never reused.

``deliver`` returns as soon as the relay's ``250`` to the message is in: a connection
that is not kept is closed (QUIT) in the background, never before ``deliver`` returns.
Between the relay taking the message and the caller recording it, a crash mails it
again (docs/inbound.md, "The window that cannot be closed"); that window is the relay's
answer time plus the caller's commit, and nothing of the gateway's own adds to it.

``deliver`` raises ``MailTransient`` (relay unreachable, TLS or login trouble, a 4xx:
try later; ``RelayLoginRefused`` when AUTH is refused) or ``MailPermanent`` (a 5xx to
MAIL, RCPT or DATA: this message will never be taken). ``probe`` (``fax-gateway check``)
connects exactly as ``deliver`` does (same client, TLS context, STARTTLS and AUTH), asks
``MAIL FROM:<>`` as reports do (and ``RCPT TO`` one address, when given), then says RSET
and QUIT, sending nothing; it returns what the relay offered and answered
(``RelayProbe``), or raises ``RelayLoginRefused`` or ``MailTransient``.
Failures of the relay itself (greeting, TLS, AUTH) are transient even when answered with
5xx: they say nothing about the message, and fixing the relay or the settings lets it
through. The relay password never appears in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from gateway.mail.maildir import MaildirSink
from gateway.settings import RelaySettings


class MailError(Exception):
    """str() is a sentence without secrets."""


class MailTransient(MailError):
    pass


class RelayLoginRefused(MailTransient):
    """The relay refused the gateway's AUTH: relay.username or relay.password is wrong."""


class MailPermanent(MailError):
    def __init__(self, message: str, *, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or {}


@dataclass(frozen=True)
class RelayProbe:
    """What the relay offered and answered to a connection made as delivery makes it."""

    encrypted: bool  # TLS in use: STARTTLS done, or relay.tls = "implicit"
    signed_in: bool  # AUTH done (relay.username set)
    offers_starttls: bool  # STARTTLS in its EHLO reply (on a connection still in clear)
    auth_methods: tuple[str, ...]  # the AUTH mechanisms in its EHLO reply
    mail_reply: str  # its reply to MAIL FROM:<>, e.g. "250 2.1.0 Ok" or "530 5.7.0 ..."
    rcpt_reply: str = ""  # its reply to RCPT TO:<recipient>, when one was asked

    @property
    def mail_taken(self) -> bool:
        return self.mail_reply.startswith("2")


class MailSender(Protocol):
    async def deliver(self, message: bytes, *, sender: str, recipients: list[str]) -> None: ...

    async def aclose(self) -> None: ...


_RELAY_LEVEL = (
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
)


class RelaySender:
    def __init__(
        self,
        settings: RelaySettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        pool: int = 4,
        idle_s: float = 30.0,
        per_connection: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tls_context = tls_context
        self.pool = pool
        self.idle_s = idle_s
        self.per_connection = per_connection
        self.clock = clock
        self.connections = 0  # opened so far
        self._idle: list[tuple[aiosmtplib.SMTP, float, int]] = []  # client, idle since, mails sent
        self._closing: set[asyncio.Task[None]] = set()  # QUITs said after deliver returned

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_s,
            use_tls=s.tls == "implicit",
            start_tls=s.tls == "starttls",  # True: required; False: never (not None: "if offered")
            tls_context=self.tls_context if s.tls != "none" else None,
            username=s.username or None,
            password=s.password.get_secret_value() if s.username else None,
        )

    async def deliver(self, message: bytes, *, sender: str, recipients: list[str]) -> None:
        s = self.settings
        where = f"the relay {s.host}:{s.port}"
        try:
            client, sent = await self._connection()
            try:
                errors, _ = await client.sendmail(sender, recipients, message)
            except BaseException:
                client.close()  # whatever state it is in, it is not reused
                raise
            self._keep(client, sent + 1)
        except aiosmtplib.SMTPRecipientsRefused as err:
            refused = {r.recipient: f"{r.code} {r.message}" for r in err.recipients}
            replies = "; ".join(sorted(set(refused.values())))
            if all(r.code >= 500 for r in err.recipients):
                raise MailPermanent(f"{where} refused every recipient: {replies}", refused=refused) from err
            raise MailTransient(f"{where} deferred the recipients: {replies}") from err
        except aiosmtplib.SMTPAuthenticationError as err:
            raise RelayLoginRefused(
                f"{where} refused the gateway's login ({err.code}); check relay.username and relay.password"
            ) from err
        except _RELAY_LEVEL as err:
            raise MailTransient(f"{where} answered {err.code} {err.message}") from err
        except aiosmtplib.SMTPResponseException as err:
            text = f"{where} answered {err.code} {err.message}"
            if err.code >= 500:
                raise MailPermanent(text) from err
            raise MailTransient(text) from err
        except aiosmtplib.SMTPNotSupported as err:
            raise MailTransient(f"{where} cannot do what relay.tls asks: {err}") from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise MailTransient(f"{where} cannot be reached: {type(err).__name__}") from err
        refused = {addr: f"{r.code} {r.message}" for addr, r in errors.items()}
        if refused:
            replies = "; ".join(sorted(set(refused.values())))
            raise MailPermanent(f"{where} refused some recipients: {replies}", refused=refused)

    async def probe(self, recipient: str | None = None) -> RelayProbe:
        """Connect, do STARTTLS and AUTH as ``deliver`` would, ask ``MAIL FROM:<>`` (and
        ``RCPT TO:<recipient>``), then RSET and QUIT: nothing is sent.

        Raises ``RelayLoginRefused`` when the login is refused, ``MailTransient`` when the
        connection, TLS or AUTH fails; each with a sentence that names the relay, never the
        password. A refused MAIL or RCPT is no error here: it is in the result.
        """
        s = self.settings
        client = self._client()
        try:
            await client.connect()  # with STARTTLS and AUTH as configured
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            mail_reply = await _reply(client.mail(""))
            rcpt_reply = ""
            if recipient and mail_reply.startswith("2"):
                rcpt_reply = await _reply(client.rcpt(recipient))
            found = RelayProbe(
                encrypted=s.tls != "none",
                signed_in=bool(s.username),
                offers_starttls=client.supports_extension("starttls"),
                auth_methods=tuple(m.upper() for m in client.server_auth_methods),
                mail_reply=mail_reply,
                rcpt_reply=rcpt_reply,
            )
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):  # what it said is known
                await client.rset()
                await client.quit()
            return found
        except aiosmtplib.SMTPAuthenticationError as err:
            raise RelayLoginRefused(  # the reply says why (Microsoft 365: SMTP AUTH off, ...)
                f"{s.host}:{s.port} refused the username {s.username} and its password: "
                f"{err.code} {err.message}"
            ) from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise MailTransient(f"cannot use {s.host}:{s.port}: {type(err).__name__}: {err}") from err
        finally:
            client.close()

    async def aclose(self) -> None:
        """Say QUIT on every kept connection (and wait for those already closing)."""
        idle, self._idle = self._idle, []
        for client, _, _ in idle:
            await _close(client)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _connection(self) -> tuple[aiosmtplib.SMTP, int]:
        """A kept connection that still answers NOOP, else a new one; and its mails so far."""
        while self._idle:
            client, since, sent = self._idle.pop()
            if self.clock() - since < self.idle_s and client.is_connected:
                try:
                    await client.noop()
                    return client, sent
                except (aiosmtplib.SMTPException, OSError):
                    pass
            await _close(client)
        client = self._client()
        try:
            await client.connect()  # with STARTTLS and AUTH as configured
        except BaseException:
            client.close()
            raise
        self.connections += 1
        return client, 0

    def _keep(self, client: aiosmtplib.SMTP, sent: int) -> None:
        """Keep the connection for the next mail, or close it without making deliver wait."""
        if sent < self.per_connection and len(self._idle) < self.pool and client.is_connected:
            self._idle.append((client, self.clock(), sent))
            return
        task = asyncio.get_running_loop().create_task(_close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _reply(command: Awaitable[aiosmtplib.SMTPResponse]) -> str:
    """The reply line to one command, a refusal included (aiosmtplib raises those)."""
    try:
        response = await command
    except aiosmtplib.SMTPResponseException as err:
        return f"{err.code} {' '.join(err.message.split())}"
    return f"{response.code} {' '.join(response.message.split())}"


async def _close(client: aiosmtplib.SMTP) -> None:
    """QUIT if the relay still listens; the connection is closed either way."""
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def make_sender(settings: RelaySettings) -> MailSender:
    return RelaySender(settings) if settings.host else MaildirSink(settings.maildir)

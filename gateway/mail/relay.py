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

``deliver`` raises ``MailTransient`` (relay unreachable, TLS or login trouble, a 4xx:
try later; ``RelayLoginRefused`` when AUTH is refused) or ``MailPermanent`` (a 5xx to
MAIL, RCPT or DATA: this message will never be taken). ``probe`` (``fax-gateway check``)
connects exactly as ``deliver`` does (same client, TLS context, STARTTLS and AUTH), then
says QUIT; it raises ``RelayLoginRefused`` or ``MailTransient``, sending nothing.
Failures of the relay itself (greeting, TLS, AUTH) are transient even when answered with
5xx: they say nothing about the message, and fixing the relay or the settings lets it
through. The relay password never appears in an error.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
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
            await self._keep(client, sent + 1)
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

    async def probe(self) -> None:
        """Connect, do STARTTLS and AUTH as ``deliver`` would, and QUIT; nothing is sent.

        Raises ``RelayLoginRefused`` when the login is refused, ``MailTransient`` for
        anything else; each with a sentence that names the relay, never the password.
        """
        s = self.settings
        client = self._client()
        try:
            await client.connect()  # with STARTTLS and AUTH as configured
            await client.quit()
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
        """Say QUIT on every kept connection."""
        idle, self._idle = self._idle, []
        for client, _, _ in idle:
            await _close(client)

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

    async def _keep(self, client: aiosmtplib.SMTP, sent: int) -> None:
        if sent < self.per_connection and len(self._idle) < self.pool and client.is_connected:
            self._idle.append((client, self.clock(), sent))
        else:
            await _close(client)


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

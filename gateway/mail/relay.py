"""Mail out through the SMTP relay (aiosmtplib), or to the Maildir when none is set.

Consumes: a finished message (bytes), an envelope sender (``""`` gives ``MAIL FROM:<>``,
as reports use) and recipients. Touches: the relay ``relay.host``:``relay.port``, or the
Maildir ``relay.maildir`` when ``relay.host`` is empty.

- ``relay.tls``: ``starttls`` makes STARTTLS *required* (aiosmtplib ``start_tls=True``,
  never "if offered": a relay that does not offer it is an error, nothing goes out in
  clear); ``implicit`` is TLS from the first byte; ``none`` is plain SMTP (loopback).
- ``relay.username``/``relay.password``: AUTH after TLS when a username is set.
- ``relay.timeout_s``: for connecting and for each reply.

``deliver`` raises ``MailTransient`` (relay unreachable, TLS or login trouble, a 4xx:
try later) or ``MailPermanent`` (a 5xx to MAIL, RCPT or DATA: this message will never
be taken). Failures of the relay itself (greeting, TLS, AUTH) are transient even when
answered with 5xx: they say nothing about the message, and fixing the relay or the
settings lets it through. The relay password never appears in an error.
"""

from __future__ import annotations

import ssl
from typing import Protocol

import aiosmtplib

from gateway.mail.maildir import MaildirSink
from gateway.settings import RelaySettings


class MailError(Exception):
    """str() is a sentence without secrets."""


class MailTransient(MailError):
    pass


class MailPermanent(MailError):
    def __init__(self, message: str, *, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or {}


class MailSender(Protocol):
    async def deliver(self, message: bytes, *, sender: str, recipients: list[str]) -> None: ...


_RELAY_LEVEL = (
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
)


class RelaySender:
    def __init__(self, settings: RelaySettings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context

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
            async with self._client() as client:
                errors, _ = await client.sendmail(sender, recipients, message)
        except aiosmtplib.SMTPRecipientsRefused as err:
            refused = {r.recipient: f"{r.code} {r.message}" for r in err.recipients}
            replies = "; ".join(sorted(set(refused.values())))
            if all(r.code >= 500 for r in err.recipients):
                raise MailPermanent(f"{where} refused every recipient: {replies}", refused=refused) from err
            raise MailTransient(f"{where} deferred the recipients: {replies}") from err
        except aiosmtplib.SMTPAuthenticationError as err:
            raise MailTransient(
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


def make_sender(settings: RelaySettings) -> MailSender:
    return RelaySender(settings) if settings.host else MaildirSink(settings.maildir)

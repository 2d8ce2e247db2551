"""Mail out through the SMTP relay (aiosmtplib), or to the Maildir when none is set.

``deliver`` raises ``MailTransient`` (relay unreachable, 4xx: try later) or
``MailPermanent`` (5xx: the relay will never take it). STARTTLS, when configured, is
required, not "if offered". The relay password never appears in an error.
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


class RelaySender:
    def __init__(self, settings: RelaySettings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context

    async def deliver(self, message: bytes, *, sender: str, recipients: list[str]) -> None:
        s = self.settings
        kwargs: dict[str, object] = {
            "hostname": s.host,
            "port": s.port,
            "timeout": s.timeout_s,
            "use_tls": s.tls == "implicit",
            "start_tls": s.tls == "starttls",
        }
        if self.tls_context is not None and s.tls != "none":
            kwargs["tls_context"] = self.tls_context
        if s.username:
            kwargs["username"] = s.username
            kwargs["password"] = s.password.get_secret_value()
        try:
            errors, _ = await aiosmtplib.send(message, sender=sender, recipients=recipients, **kwargs)  # type: ignore[arg-type]
        except aiosmtplib.SMTPRecipientsRefused as err:
            refused = {r.recipient: f"{r.code} {r.message}" for r in err.recipients}
            if all(r.code >= 500 for r in err.recipients):
                raise MailPermanent("the relay refused every recipient", refused=refused) from err
            raise MailTransient("the relay deferred the recipients") from err
        except aiosmtplib.SMTPResponseException as err:
            text = f"the relay answered {err.code} {err.message}"
            if err.code >= 500:
                raise MailPermanent(text) from err
            raise MailTransient(text) from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise MailTransient(
                f"the relay {s.host}:{s.port} cannot be reached: {type(err).__name__}"
            ) from err
        refused = {addr: f"{code} {text}" for addr, (code, text) in errors.items()}
        if refused:
            raise MailPermanent("the relay refused some recipients", refused=refused)


def make_sender(settings: RelaySettings) -> MailSender:
    return RelaySender(settings) if settings.host else MaildirSink(settings.maildir)

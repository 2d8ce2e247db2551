"""The SMTP listeners: aiosmtpd's protocol on the gateway's own event loop.

Two listeners share one handler: ``smtp.listen`` (plain, with STARTTLS when a
certificate is configured) and, optionally, ``smtp.implicit_tls_listen`` (TLS from
the first byte, port 465 style). AUTH is offered only once the session is encrypted.

What the protocol layer enforces before the handler sees anything:

- **Session caps.** At most ``smtp.max_sessions`` sessions at once, and at most
  ``smtp.max_sessions_per_ip`` from one client address (trusted networks are exempt,
  as Postfix exempts ``mynetworks``). Others get ``421 4.7.0`` and are closed.
- **Timeouts.** ``smtp.session_timeout_s`` between two commands (a client trickling a
  command byte by byte never resets it); ``smtp.data_timeout_s`` for the whole DATA
  transfer of one mail. Either closes the session with ``421 4.4.2``. Keep-alive junk
  is capped per session (``NOOP`` 20, ``RSET`` 50, ``VRFY``/``EXPN``/``HELP`` 5 times).
- **require_tls.** Clients outside the trusted networks must STARTTLS first.
- **Smuggling and injection.** aiosmtpd >= 1.4.6 is required (checked at start): DATA
  ends only at ``CRLF . CRLF``, and commands pipelined after ``STARTTLS`` are discarded.

aiosmtpd answers a few conditions itself with bare text ("552 Error: Too much mail
data"); ``FaxSMTP.push`` rewrites those into replies with enhanced status codes and a
sentence, and counts every 4xx/5xx reply in the metrics (through the handler).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, AnyStr

import aiosmtpd
from aiosmtpd.smtp import SMTP

from gateway.logs import event
from gateway.settings import ConfigError, SmtpSettings, split_host_port
from gateway.smtp.tls import server_context

log = logging.getLogger(__name__)

MIN_AIOSMTPD = (1, 4, 6)  # fixes SMTP smuggling (CVE-2024-27305) and STARTTLS injection (CVE-2024-34083)
_CALL_LIMITS = {"NOOP": 20, "RSET": 50, "VRFY": 5, "EXPN": 5, "HELP": 5, "*": 10_000}

_REWRITES: dict[str, Callable[[FaxSMTP], str]] = {
    "552 Error: message size exceeds": lambda s: s.too_big,
    "552 Error: Too much mail data": lambda s: s.too_big,
    "530 Must issue a STARTTLS command first": lambda s: (
        "530 5.7.0 Must issue a STARTTLS command first: this gateway requires encryption "
        "from clients outside its trusted networks."
    ),
    "538 5.7.11 Encryption required": lambda s: (
        "538 5.7.11 Sign in only after STARTTLS: passwords are never taken unencrypted."
    ),
}


def check_aiosmtpd_version(version: str = aiosmtpd.__version__) -> None:
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_AIOSMTPD:
        raise ConfigError(
            f"aiosmtpd {version} is installed, but {'.'.join(map(str, MIN_AIOSMTPD))} or later is "
            "required (it fixes SMTP smuggling and STARTTLS command injection)"
        )


@dataclass
class SessionLimits:
    """Open sessions in total and per client address, shared by both listeners."""

    max_sessions: int
    max_per_ip: int
    exempt: Callable[[str], bool]  # trusted networks: no per-address cap
    open: int = 0
    by_ip: Counter[str] = field(default_factory=Counter)

    def admit(self, ip: str) -> str | None:
        """None when the session may start (and is counted); else the 421 reply."""
        if self.open >= self.max_sessions:
            return "421 4.7.0 The gateway is busy with too many sessions; please try again in a minute."
        if self.by_ip[ip] >= self.max_per_ip and not self.exempt(ip):
            return (
                f"421 4.7.0 Too many sessions from {ip} at the same time (at most {self.max_per_ip}); "
                "please try again in a minute."
            )
        self.open += 1
        self.by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]


class FaxSMTP(SMTP):
    """aiosmtpd's SMTP with the session caps, timeouts and reply rewrites above.

    The handler provides ``is_trusted_ip(ip)``, ``session_opened(ip)``,
    ``connection_refused(ip, reply)`` and ``reply_sent(reply)``.
    """

    def __init__(
        self,
        handler: Any,
        *,
        settings: SmtpSettings,
        limits: SessionLimits,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            data_size_limit=settings.max_message_bytes,
            hostname=settings.hostname,
            ident="fax-gateway ESMTP",
            timeout=settings.session_timeout_s,
            tls_context=None if implicit_tls else tls_context,
            auth_require_tls=not implicit_tls,  # the implicit listener is encrypted from the start
            command_call_limit=_CALL_LIMITS,
            **kwargs,
        )
        self.implicit_tls = implicit_tls
        self.limits = limits
        self._require_tls = settings.require_tls and tls_context is not None and not implicit_tls
        self._data_timeout_s = settings.data_timeout_s
        self._idle_timeout_s = settings.session_timeout_s
        self._limit_mb = settings.max_message_bytes / 1_000_000
        self._admitted: str | None = None
        self._refused = False
        self._in_data = False

    @property
    def encrypted(self) -> bool:
        """Is this session under TLS (STARTTLS done, or the implicit listener)?"""
        return self.implicit_tls or self._tls_protocol is not None

    @property
    def too_big(self) -> str:
        return (
            f"552 5.3.4 The message is too big for this gateway "
            f"(at most {self._limit_mb:g} MB); send fewer or smaller attachments."
        )

    # -- session caps ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self.transport is None:  # a new connection
            ip = _ip(transport.get_extra_info("peername"))
            refusal = self.limits.admit(ip)
            if refusal is not None:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode("ascii") + b"\r\n")
                transport.close()
                self.event_handler.connection_refused(ip, refusal)
                return
            self._admitted = ip
            self.require_starttls = self._require_tls and not self.event_handler.is_trusted_ip(ip)
            self.event_handler.session_opened(ip)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._admitted is not None:
            self.limits.release(self._admitted)
            self._admitted = None
        super().connection_lost(error)

    # -- timeouts ------------------------------------------------------------------------
    def _timeout_cb(self) -> None:
        why = (
            f"the mail did not arrive within {self._data_timeout_s:g} seconds"
            if self._in_data
            else f"nothing was received for {self._idle_timeout_s:g} seconds"
        )
        if isinstance(self.transport, asyncio.WriteTransport) and not self.transport.is_closing():
            self.transport.write(f"421 4.4.2 Closing the connection: {why}.\r\n".encode("ascii"))
        self.event_handler.reply_sent("421")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        self._reset_timeout(self._data_timeout_s)
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False
            if self.transport is not None:
                self._reset_timeout()

    def processing(self) -> None:
        """The whole mail is in: no timeout may cut the handler off before its reply.

        Cancelling mid-commit would leave a stored mail without its ``250``, and the
        client would send it again. The handler's own steps are bounded instead.
        """
        self._in_data = False
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    # -- replies -------------------------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        for prefix, rewrite in _REWRITES.items():
            if text.startswith(prefix):
                text = rewrite(self)
                break
        self.event_handler.reply_sent(text)
        await super().push(text)


def _ip(peer: Any) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    return str(host)


class _QuietLoginDataWarning(logging.Filter):
    """aiosmtpd warns that ``Session.login_data`` is deprecated on every AUTH it handles."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


def _quiet_aiosmtpd() -> None:
    logger = logging.getLogger("mail.log")
    if not any(isinstance(f, _QuietLoginDataWarning) for f in logger.filters):
        logger.addFilter(_QuietLoginDataWarning())


async def start_smtp_server(
    handler: Any,
    settings: SmtpSettings,
    *,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    limits: SessionLimits | None = None,
) -> asyncio.Server:
    """Listen on ``smtp.listen`` (or ``implicit_tls_listen``); port 0 picks one (``bound_port``)."""
    check_aiosmtpd_version()
    _quiet_aiosmtpd()
    listen = settings.implicit_tls_listen if implicit_tls else settings.listen
    host, port = split_host_port(listen)
    loop = asyncio.get_running_loop()
    shared = limits or SessionLimits(
        settings.max_sessions, settings.max_sessions_per_ip, exempt=handler.is_trusted_ip
    )

    def factory() -> FaxSMTP:
        return FaxSMTP(
            handler,
            settings=settings,
            limits=shared,
            tls_context=tls_context,
            implicit_tls=implicit_tls,
            loop=loop,
        )

    ssl_arg = tls_context if implicit_tls else None
    return await loop.create_server(factory, host=host, port=port, ssl=ssl_arg)


async def start_smtp_listeners(
    handler: Any, settings: SmtpSettings
) -> tuple[asyncio.Server, asyncio.Server | None]:
    """The main listener and, when configured, the implicit-TLS one (sharing the session caps)."""
    context = server_context(settings)
    limits = SessionLimits(settings.max_sessions, settings.max_sessions_per_ip, exempt=handler.is_trusted_ip)
    main = await start_smtp_server(handler, settings, tls_context=context, limits=limits)
    implicit = None
    if settings.implicit_tls_listen:
        try:
            implicit = await start_smtp_server(
                handler, settings, tls_context=context, implicit_tls=True, limits=limits
            )
        except BaseException:
            main.close()
            raise
        host, _ = split_host_port(settings.implicit_tls_listen)
        log.info(
            "SMTP with implicit TLS on %s:%d",
            host,
            bound_port(implicit),
            extra=event("listening", port=bound_port(implicit), tls="implicit"),
        )
    if context is not None:
        log.info(
            "STARTTLS offered (TLS %s or later); AUTH PLAIN and LOGIN only over TLS",
            settings.tls_min_version,
            extra=event("tls"),
        )
    return main, implicit


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])

"""The SMTP listeners: aiosmtpd's protocol on the gateway's own event loop.

Two listeners share one handler: ``smtp.listen`` (plain, with STARTTLS when a
certificate is configured) and, optionally, ``smtp.implicit_tls_listen`` (TLS from
the first byte, port 465 style). AUTH is offered only once the session is encrypted.

What the protocol layer enforces before the handler sees anything:

- **Session caps.** At most ``smtp.max_sessions`` sessions at once, of which the last
  ``smtp.reserved_trusted_sessions`` are kept for the trusted networks (a flood from
  outside cannot lock the scanners and the local MTA out), and at most
  ``smtp.max_sessions_per_ip`` from one client address, IPv6 by its /64 (trusted networks
  are exempt, as Postfix exempts ``mynetworks``). Others get ``421 4.7.0`` and are closed.
- **Errors.** A session that collects ``smtp.hard_error_limit`` refusals (4xx/5xx
  replies) without a mail accepted is closed with ``421 4.7.0``, as Postfix's
  ``smtpd_hard_error_limit`` does.
- **Timeouts.** ``smtp.session_timeout_s`` between two commands (a client trickling a
  command byte by byte never resets it); ``smtp.data_timeout_s`` for the whole DATA
  transfer of one mail. Either closes the session with ``421 4.4.2``. Keep-alive junk
  is capped per session (``NOOP`` 20, ``RSET`` 50, ``VRFY``/``EXPN``/``HELP`` 5 times).
- **require_tls.** Clients outside the trusted networks must STARTTLS first.
- **Smuggling and injection.** aiosmtpd >= 1.4.6 is required (checked at start):
  commands pipelined after ``STARTTLS`` are discarded. DATA is read here, in blocks
  rather than aiosmtpd's line by line (``read_data``; the rules are the pure
  ``gateway.core.smtp_data``), with aiosmtpd's rules byte for byte but one: it ends
  only at ``CRLF . CRLF`` (a bare LF or CR around the dot is text), a leading dot is
  removed from every line (RFC 5321 4.5.2), and a mail over ``smtp.max_message_bytes``
  is ``552 5.3.4``, answered only once the whole mail is in.
  Lines longer than RFC 5321's 998 octets are taken as they come (aiosmtpd answers
  ``500`` to them): scanners and scripts send unwrapped base64 and long HTML lines, and
  Postfix accepts them too. Only the mail as a whole is bounded.
- **Command lines** keep aiosmtpd's limits (512 octets, more for ``MAIL`` with
  ``SIZE``), as RFC 5321 4.5.3.1.4 asks: ``500 5.5.2``.

aiosmtpd answers a few conditions itself with bare text ("552 Error: Too much mail
data", "500 Command line too long"); ``FaxSMTP.push`` rewrites those into replies with
enhanced status codes and a sentence, has the handler log and audit each of them like
its own refusals (``protocol_refused``), and counts every 4xx/5xx reply in the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, AnyStr

import aiosmtpd
from aiosmtpd.smtp import MISSING, SMTP

from gateway.core.smtp_data import DOT_LINE, MailData
from gateway.logs import event
from gateway.settings import ConfigError, SmtpSettings, split_host_port
from gateway.smtp.arrivals import Arrivals
from gateway.smtp.throttle import client_key
from gateway.smtp.tls import server_context

log = logging.getLogger(__name__)

MIN_AIOSMTPD = (1, 4, 6)  # fixes SMTP smuggling (CVE-2024-27305) and STARTTLS injection (CVE-2024-34083)
_CALL_LIMITS = {"NOOP": 20, "RSET": 50, "VRFY": 5, "EXPN": 5, "HELP": 5, "*": 10_000}

# aiosmtpd's own refusal (by its start) -> (the SMTP step it refuses, the gateway's reply)
_REWRITES: dict[str, tuple[str, Callable[[FaxSMTP], str]]] = {
    "552 Error: message size exceeds": ("mail", lambda s: s.too_big),
    "552 Error: Too much mail data": ("data", lambda s: s.too_big),
    "500 Command line too long": (
        "command",
        lambda s: (
            "500 5.5.2 The command line is too long: SMTP commands may be at most 512 "
            "characters (RFC 5321); send it again shorter."
        ),
    ),
    "530 Must issue a STARTTLS command first": (
        "command",
        lambda s: (
            "530 5.7.0 Must issue a STARTTLS command first: this gateway requires encryption "
            "from clients outside its trusted networks."
        ),
    ),
    "538 5.7.11 Encryption required": (
        "auth",
        lambda s: "538 5.7.11 Sign in only after STARTTLS: passwords are never taken unencrypted.",
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
    """Open sessions in total and per client address, shared by both listeners.

    Clients outside the trusted networks may use ``max_sessions - reserved`` of them
    (``reserved`` at most half of ``max_sessions``); the rest are for the trusted
    networks. Addresses are counted by ``client_key`` (IPv6 by its /64).
    """

    max_sessions: int
    max_per_ip: int
    exempt: Callable[[str], bool]  # trusted networks: no per-address cap, and the reserve
    reserved: int = 0
    open: int = 0
    by_ip: Counter[str] = field(default_factory=Counter)

    def admit(self, ip: str) -> str | None:
        """None when the session may start (and is counted); else the 421 reply."""
        trusted = self.exempt(ip)
        others = self.max_sessions - min(self.reserved, self.max_sessions // 2)
        if self.open >= self.max_sessions or (not trusted and self.open >= others):
            return "421 4.7.0 The gateway is busy with too many sessions; please try again in a minute."
        key = client_key(ip)
        if self.by_ip[key] >= self.max_per_ip and not trusted:
            return (
                f"421 4.7.0 Too many sessions from {ip} at the same time (at most {self.max_per_ip}); "
                "please try again in a minute."
            )
        self.open += 1
        self.by_ip[key] += 1
        return None

    def release(self, ip: str) -> None:
        key = client_key(ip)
        self.open -= 1
        self.by_ip[key] -= 1
        if self.by_ip[key] <= 0:
            del self.by_ip[key]


class FaxSMTP(SMTP):
    """aiosmtpd's SMTP with the session caps, timeouts and reply rewrites above.

    The handler provides ``is_trusted_ip(ip)``, ``session_opened(ip)``,
    ``session_closed(ip)``, ``connection_refused(ip, reply)``, ``protocol_refused(session,
    envelope, reply, stage)``, ``reply_sent(reply)`` and ``too_many_errors(session, reply)``.
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
        self._hard_error_limit = settings.hard_error_limit
        self._errors = 0  # refusals since the session started or last had a mail accepted

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
            self.event_handler.session_closed(self._admitted)
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
            await self._data(arg)
        finally:
            self._in_data = False
            if self.transport is not None:
                self._reset_timeout()

    async def _data(self, arg: str) -> None:
        """aiosmtpd's ``smtp_DATA``, with the mail read in blocks by ``read_data``."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        arrivals: Arrivals | None = getattr(self.event_handler, "arrivals", None)
        with arrivals.receiving_mail() if arrivals is not None else contextlib.nullcontext():
            await self._receive()

    async def _receive(self) -> None:
        assert self.envelope is not None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            received = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:
            log.debug("connection lost during DATA", extra=event("connection lost", stage="data"))
            self._writer.close()
            raise
        if received is None:  # the client went away mid-mail
            self._writer.close()
            return
        if isinstance(received, str):
            await self.push(received)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content: str | bytes = received
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = received.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = received.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        self.envelope.content = content
        self.envelope.original_content = received
        status: Any = MISSING
        if "DATA" in self._handle_hooks:
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        if isinstance(status, str) and status.startswith("250"):
            self._errors = 0  # a mail accepted: the client is not just probing
        await self.push("250 OK" if status is MISSING else status)

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
        for prefix, (stage, rewrite) in _REWRITES.items():
            if text.startswith(prefix):
                text = rewrite(self)
                self.event_handler.protocol_refused(self.session, self.envelope, text, stage)
                break
        text = _one_reply_line(text, utf8=self.enable_SMTPUTF8)
        self.event_handler.reply_sent(text)
        await super().push(text)
        if text[:1] in "45" and text[3:4] != "-" and not text.startswith("421"):
            self._errors += 1
            if self._hard_error_limit and self._errors >= self._hard_error_limit:
                await self._too_many_errors()

    async def _too_many_errors(self) -> None:
        reply = (
            f"421 4.7.0 Too many errors in this session ({self._errors} refused commands and "
            "no mail accepted); closing the connection."
        )
        self._errors = 0
        if self.session is not None:
            self.event_handler.too_many_errors(self.session, reply)
        self.event_handler.reply_sent(reply)
        if self.transport is not None and not self.transport.is_closing():
            await super().push(reply)
            self.transport.close()


# -- DATA, read in blocks ------------------------------------------------------------------
async def read_data(reader: asyncio.StreamReader, size_limit: int | None) -> bytes | str | None:
    """One mail's DATA: its dot-unstuffed bytes, the refusal once it is all in, or None.

    None means the stream ended before ``CRLF . CRLF``. The rules (the end, dot-unstuffing,
    lines of any length, the size limit) are ``gateway.core.smtp_data.MailData``'s; here
    only the reading, at a fraction of aiosmtpd's work: the reader is searched for
    ``.CRLF`` only, and the few found are checked for the CRLF before them. ``reader`` is
    aiosmtpd's, whose limit (1001) only caps each search.
    """
    data = MailData(size_limit)
    while True:
        try:
            block = await reader.readuntil(DOT_LINE)
        except asyncio.LimitOverrunError as err:  # no end in sight: take what is there
            block = await reader.readexactly(err.consumed)
        except asyncio.IncompleteReadError:
            return None
        if data.feed(block):
            return data.result()


def _one_reply_line(text: str, *, utf8: bool) -> str:
    """A reply line that carries a client's value (an address, a number) as one clean line:
    a character that is not printable, or not ASCII without SMTPUTF8, becomes ``?``."""
    if text.isprintable() and (utf8 or text.isascii()):
        return text
    return "".join(c if c.isprintable() and (utf8 or c.isascii()) else "?" for c in text)


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
        settings.max_sessions,
        settings.max_sessions_per_ip,
        exempt=handler.is_trusted_ip,
        reserved=settings.reserved_trusted_sessions,
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
    limits = SessionLimits(
        settings.max_sessions,
        settings.max_sessions_per_ip,
        exempt=handler.is_trusted_ip,
        reserved=settings.reserved_trusted_sessions,
    )
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

"""The SMTP listener: aiosmtpd's protocol on the gateway's own event loop.

aiosmtpd answers a few conditions itself with bare text ("552 Error: Too much mail
data"); ``FaxSMTP`` rewrites those into replies with enhanced status codes and a
sentence, so every refusal the gateway gives reads the same way.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from gateway.settings import SmtpSettings, split_host_port

log = logging.getLogger(__name__)


class FaxSMTP(SMTP):
    def __init__(self, handler: Any, *, max_message_bytes: int, **kwargs: Any) -> None:
        super().__init__(handler, data_size_limit=max_message_bytes, **kwargs)
        self._limit_mb = max_message_bytes / 1_000_000

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if text.startswith("552 Error: message size exceeds") or text.startswith(
            "552 Error: Too much mail data"
        ):
            text = (
                f"552 5.3.4 The message is too big for this gateway "
                f"(at most {self._limit_mb:g} MB); send fewer or smaller attachments."
            )
        await super().push(text)


async def start_smtp_server(
    handler: Any, settings: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Listen on ``settings.listen`` (port 0 picks one: read it from ``server.sockets``)."""
    host, port = split_host_port(settings.listen)
    loop = asyncio.get_running_loop()

    def factory() -> FaxSMTP:
        return FaxSMTP(
            handler,
            max_message_bytes=settings.max_message_bytes,
            hostname=settings.hostname,
            ident="fax-gateway ESMTP",
            timeout=settings.session_timeout_s,
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port, ssl=ssl_context)


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])

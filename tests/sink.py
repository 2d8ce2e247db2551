"""A real SMTP sink on a loopback port, standing in for the mail relay in tests.

It records every message it accepts (envelope and bytes), and can be told to answer
RCPT or DATA with a given reply (``fail_rcpt``/``fail_data``), or to be down (stopped),
and counts the connections it accepted (``drop_connections`` closes the open ones).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    fail_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply line
    fail_data: str | None = None  # reply line for DATA, e.g. "451 4.3.0 try later"
    quit_delay_s: float = 0.0  # how long the answer to QUIT takes
    data_delay_s: float = 0.0  # how long the 250 to a mail takes, once the mail is recorded
    connections: int = 0  # accepted so far
    _server: asyncio.Server | None = None
    _sessions: list[SMTP] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.fail_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_data:
            return self.fail_data
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), content))
        await asyncio.sleep(self.data_delay_s)  # a relay that scans or fsyncs before it answers
        return "250 2.0.0 stored"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.quit_delay_s)
        return "221 Bye"

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            self.connections += 1
            self._sessions.append(SMTP(self, hostname="sink.test", loop=loop))
            return self._sessions[-1]

        self._server = await loop.create_server(session, host=self.host, port=self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and close open sessions (the relay is 'down'); start() again brings
        it back on the same port."""
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        """Close every open session from this side, as a relay restarting does."""
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

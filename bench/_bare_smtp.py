"""The baseline: aiosmtpd with a handler that answers 250 to every mail and keeps nothing.

``python bench/_bare_smtp.py [MAX_MESSAGE_BYTES]`` listens on 127.0.0.1 port 0, prints
``SMTP listening on 127.0.0.1:PORT`` and serves until SIGTERM or SIGINT. The protocol
object is configured like the gateway's (size limit, session timeout) so that the two
differ only in what the handler does.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session


class Accept:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 Ok: queued"


async def main(max_message_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Accept()

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=max_message_bytes,
            hostname="bare",
            ident="bare ESMTP",
            timeout=300,
            loop=loop,
        )

    server = await loop.create_server(factory, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print(f"SMTP listening on 127.0.0.1:{port}", flush=True)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000_000))

"""uvicorn as a part of a bigger program: the gateway's HTTP side and the simulator.

Consumes: a ``uvicorn.Config``. Produces: ``EmbeddedServer``, which leaves the host
program's signal handlers alone (``serve`` owns SIGTERM/SIGINT), wakes at once when told to
stop (``wake``; uvicorn's own loop polls every 0.1 s), and skips uvicorn's fixed 0.1 s wait
at shutdown when no connection is open. Touches: nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.wake = asyncio.Event()  # set with should_exit: stop now, not at the next tick

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's, without its fixed 0.1 s wait when no connection is open."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if not self.force_exit:
            await self.lifespan.shutdown()

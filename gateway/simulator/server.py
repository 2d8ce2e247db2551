"""Serving the eFax simulator with uvicorn: embedded in a test's event loop, or alone.

Embedded (tests, demo mode, benchmarks)::

    async with await start_simulator(SimulatorConfig(complete_after_s=0)) as sim:
        httpx.get(sim.base_url + "/health")          # sim.state, sim.port too

``start_simulator`` binds the socket itself (port 0 picks a free port), runs
``uvicorn.Server.serve`` as a task of the running loop (h11, log level
warning, no access log, lifespan on so the webhook dispatcher runs, signal
handlers left alone) and returns once the server accepts connections.
``stop()`` asks uvicorn to exit, waits for it (requests still running after
``GRACEFUL_S`` seconds are cancelled) and closes the socket.
``RunningSimulator(config)`` is also usable directly: ``async with
RunningSimulator(config) as sim``.

Alone: ``run_simulator(host, port, config)`` blocks until SIGINT/SIGTERM
(uvicorn's own handling) and prints one line with the URL it listens on; the
``fax-gateway simulator`` command calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

import uvicorn

from gateway.embedded_server import EmbeddedServer
from gateway.simulator.app import create_app
from gateway.simulator.state import SimulatorConfig, SimulatorState

GRACEFUL_S = 1.0
START_TIMEOUT_S = 10.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP (not 0) so asyncio sets TCP_NODELAY on accepted connections;
    # without it every keep-alive reply waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_config(state: SimulatorState, embedded: bool) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(state),
        http="h11",
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        log_config=None if embedded else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=int(GRACEFUL_S) if embedded else 5,
    )


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class RunningSimulator:
    """A simulator served on a loopback port inside the current event loop."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SimulatorState(config)
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the simulator is not running")
        return int(self._sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        return _url(self.host, self.port)

    async def start(self) -> RunningSimulator:
        if self._task is not None:
            return self
        self._sock = _bind(self.host, self._requested_port)
        self._server = EmbeddedServer(_uvicorn_config(self.state, embedded=True))
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="efax-simulator")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise RuntimeError("the eFax simulator did not start")
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        server, task, sock = self._server, self._task, self._sock
        self._server, self._task, self._sock = None, None, None
        if server is not None and task is not None:
            server.should_exit = True
            server.wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), GRACEFUL_S + 5)
            except TimeoutError:
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except (Exception, SystemExit):  # a server that failed to start
                pass
        if sock is not None:
            sock.close()

    async def __aenter__(self) -> RunningSimulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start a simulator in the running event loop; returns once it accepts requests."""
    return await RunningSimulator(config, host, port).start()


def run_simulator(host: str = "127.0.0.1", port: int = 8080, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator until interrupted (the ``fax-gateway simulator`` command)."""
    state = SimulatorState(config)
    sock = _bind(host, port)
    server = uvicorn.Server(_uvicorn_config(state, embedded=False))

    # The socket already listens, so the URL is good before uvicorn starts.
    url = _url(host, int(sock.getsockname()[1]))
    print(f"eFax simulator listening on {url} (control endpoints: {url}/_sim/)", flush=True)

    async def main() -> None:
        await server.serve(sockets=[sock])

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        pass
    finally:
        sock.close()

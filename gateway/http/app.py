"""The HTTP side of ``serve``: ``/healthz``, ``/readyz``, ``/metrics``.

Starlette served by uvicorn on the gateway's own event loop, on ``http.listen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.settings import split_host_port

if TYPE_CHECKING:
    from gateway.app import Gateway


def create_app(gateway: Gateway) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            assert gateway.store is not None
            await gateway.store.count_jobs()
            checks["store"] = "ok"
        except Exception as err:  # reported, not raised: this is a probe
            checks["store"] = f"failing: {type(err).__name__}"
        ok_efax = gateway.efax is not None and await gateway.efax.health()
        checks["efax"] = "ok" if ok_efax else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HttpServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    base_url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_http(gateway: Gateway) -> HttpServer:
    host, port = split_host_port(gateway.settings.http.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    config = uvicorn.Config(create_app(gateway), log_level="warning", access_log=False, lifespan="off")
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    actual = sock.getsockname()[1]
    return HttpServer(server=server, task=task, base_url=f"http://{host}:{actual}")

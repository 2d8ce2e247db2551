"""The HTTP side of ``serve``: health, readiness, metrics and eFax's webhook.

Starlette served by uvicorn on the gateway's own event loop, on ``http.listen``
(port 0 picks a free one; the address is logged). Routes:

    GET  /healthz          liveness: the process answers ("ok")
    GET  /readyz           store writable, eFax reachable, a reader ready, polls fresh (health.py)
    GET  /metrics          Prometheus text (health.py, gateway.metrics)
    POST /webhooks/efax    eFax notifications, HMAC verified, a trigger only (webhook.py)
    /admin/...             the admin page, behind a sign-in (admin/views.py); 404 without [[admins]]

Every handler is a thin view over the ``HttpContext`` that ``serve`` hands over (a few
values and callables, never the app: context.py); none mails or faxes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from gateway.embedded_server import EmbeddedServer
from gateway.http import health, webhook
from gateway.http.context import HttpContext
from gateway.settings import split_host_port

View = Callable[[Request, HttpContext], Awaitable[Response]]


def create_app(ctx: HttpContext) -> Starlette:
    def bound(view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await view(request, ctx)

        return endpoint

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def no_admin(request: Request) -> Response:
        return PlainTextResponse("the admin page is off: no [[admins]] are configured\n", status_code=404)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", bound(health.readyz), methods=["GET"]),
        Route("/metrics", bound(health.metrics), methods=["GET"]),
        Route("/webhooks/efax", bound(webhook.efax_webhook), methods=["POST"]),
    ]
    if ctx.settings.admins:
        from gateway.http.admin.views import create_admin_app

        routes.append(Mount("/admin", app=create_admin_app(ctx)))
    else:
        routes.append(Route("/admin{rest:path}", no_admin))
    return Starlette(routes=routes)


@dataclass
class HttpServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    base_url: str
    sock: socket.socket

    async def stop(self) -> None:
        self.server.should_exit = True
        if isinstance(self.server, EmbeddedServer):
            self.server.wake.set()
        await self.task
        self.sock.close()


async def start_http(ctx: HttpContext) -> HttpServer:
    host, port = split_host_port(ctx.settings.http.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    config = uvicorn.Config(create_app(ctx), log_level="warning", access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    actual = sock.getsockname()[1]
    return HttpServer(server=server, task=task, base_url=f"http://{host}:{actual}", sock=sock)

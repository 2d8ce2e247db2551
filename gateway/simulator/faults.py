"""Injected faults, and the edge of the simulator that records and applies them.

A ``Fault`` applies to the next ``count`` eFax-side requests whose method and
path match (``path`` is an exact path such as ``/faxes`` or a route template
such as ``/faxes/{id}/cancel``; None matches any; ``count`` None = forever).
Kinds:

- ``status``: reply ``status`` (default 503) with the eFax error shape, or a
  plain-text body when ``plain``; optional ``retry_after`` header.
- ``rate_limit``: reply 429 with the error shape, or the plain text
  "Too Many Requests." when ``plain``; optional ``Retry-After``.
- ``slow``: wait ``delay_s`` seconds (real time), then answer normally.
- ``drop``: close the connection without reading or processing the request.
- ``drop_after``: process the request fully (a fax IS created), discard the
  reply, then close the connection.
- ``status_after``: process the request fully (a fax IS created), then answer
  ``status`` (default 503) with the error shape instead of the real reply.
- ``slow_after``: process the request at once (a fax IS created), then hold the
  reply ``delay_s`` seconds (past the client's read timeout: a timeout after creation).
- ``late``: read the whole request, then wait ``delay_s`` before processing it: an
  overloaded API whose fax appears only after the client's read timeout (the client
  has given up by then; the fax is created all the same).

How a connection is dropped: under uvicorn the ASGI ``send`` callable is a
bound method of uvicorn's per-request cycle, which holds the asyncio transport;
``drop_connection`` closes that transport before any byte of the response is
written, so the client sees "server disconnected without sending a response"
(httpx.RemoteProtocolError, a TransportError). Under any other server it falls
back to starting a response with a Content-Length and then failing, which also
leaves the client with a truncated, unusable reply.

``EdgeMiddleware`` wraps the whole app: for every request outside ``/_sim/`` it
records a ``RequestRecord`` (never the Authorization header), takes the first
matching fault, and applies it. ``/_sim/`` requests are neither recorded nor
faulted.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, assert_never, cast, get_args

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.simulator.views import error_response

if TYPE_CHECKING:
    from gateway.simulator.state import SimulatorState

FaultKind = Literal[
    "status", "rate_limit", "slow", "drop", "drop_after", "status_after", "slow_after", "late"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
CONTROL_PREFIX = "/_sim"
_FAULT_KEYS = frozenset({"kind", "method", "path", "count", "status", "retry_after", "plain", "delay_s"})


class ConnectionDroppedError(Exception):
    """Raised only by the fallback drop, to make the server abandon the reply."""


@dataclass
class Fault:
    fault_id: int
    kind: FaultKind
    method: str | None = None
    path: str | None = None
    count: int | None = 1
    status: int = 503
    retry_after: float | None = None
    plain: bool = False
    delay_s: float = 1.0

    def matches(self, method: str, path: str, route: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in (path, route)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "count": self.count,
            "status": self.status,
            "retry_after": self.retry_after,
            "plain": self.plain,
            "delay_s": self.delay_s,
        }

    def response(self, transaction_id: str | None) -> Response:
        """The reply of a ``status`` or ``rate_limit`` fault."""
        status = 429 if self.kind == "rate_limit" else self.status
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            seconds = self.retry_after
            headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        if self.plain:
            text = "Too Many Requests." if status == 429 else http.HTTPStatus(status).phrase
            return PlainTextResponse(text, status_code=status, headers=headers)
        phrase = http.HTTPStatus(status)
        return error_response(
            status,
            phrase.name,
            phrase.phrase,
            transaction_id=transaction_id,
            developer_message=f"simulated {status} fault",
            headers=headers,
        )


def parse_fault(data: Mapping[str, Any], fault_id: int) -> Fault:
    """Build a Fault from its JSON form; raises ValueError on a bad field."""
    unknown = set(data) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {FAULT_KINDS}")
    method = data.get("method")
    path = data.get("path")
    if method is not None and not isinstance(method, str):
        raise ValueError("method must be a string")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise ValueError("path must start with /")
    count = data.get("count", 1)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (forever)")
    status = data.get("status", 503)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error code (400-599)")
    retry_after = data.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0
    ):
        raise ValueError("retry_after must be a number of seconds")
    delay_s = data.get("delay_s", 1.0)
    if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or delay_s < 0:
        raise ValueError("delay_s must be a number of seconds")
    plain = data.get("plain", False)
    if not isinstance(plain, bool):
        raise ValueError("plain must be a boolean")
    return Fault(
        fault_id=fault_id,
        kind=cast(FaultKind, kind),
        method=method.upper() if method else None,
        path=path,
        count=count,
        status=status,
        retry_after=float(retry_after) if retry_after is not None else None,
        plain=plain,
        delay_s=float(delay_s),
    )


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The route template a request path falls under, or the path itself."""
    for route in routes:
        if isinstance(route, Route):
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return route.path
    return str(scope["path"])


async def drop_connection(send: Send) -> None:
    """Close the client connection without sending a response (see module doc)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if isinstance(transport, asyncio.BaseTransport):
        transport.close()
        # Let uvicorn see connection_lost, so it does not try to answer itself.
        for _ in range(100):
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
    raise ConnectionDroppedError("simulated dropped connection")


class EdgeMiddleware:
    """Record every eFax-side request and apply the first matching fault."""

    def __init__(
        self,
        app: ASGIApp | Callable[[Scope, Receive, Send], Awaitable[None]],
        state: SimulatorState,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = str(scope["method"])
        route = route_template(self.routes, scope)
        transaction_id = headers.get("transaction-id")
        record = self.state.record_request(
            method=method,
            path=path,
            query=bytes(scope.get("query_string", b"")).decode("latin-1"),
            user_id=headers.get("user-id"),
            transaction_id=transaction_id,
            route=route,
        )

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        async def swallowing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])

        fault = self.state.take_fault(method, path, route)
        if fault is None:
            await self.app(scope, receive, recording_send)
            return
        record.fault = fault.kind
        match fault.kind:
            case "slow":
                await asyncio.sleep(fault.delay_s)
                await self.app(scope, receive, recording_send)
            case "status" | "rate_limit":
                await fault.response(transaction_id)(scope, receive, recording_send)
            case "drop":
                await drop_connection(send)
            case "drop_after":
                await self.app(scope, receive, swallowing_send)
                await drop_connection(send)
            case "status_after":
                await self.app(scope, receive, swallowing_send)
                await fault.response(transaction_id)(scope, receive, recording_send)
            case "slow_after":
                held: list[Message] = []

                async def holding_send(message: Message) -> None:
                    held.append(message)

                await self.app(scope, receive, holding_send)
                await asyncio.sleep(fault.delay_s)
                for message in held:
                    await recording_send(message)
            case "late":
                body: list[Message] = []
                while True:
                    message = await receive()
                    body.append(message)
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break

                async def replay() -> Message:
                    return body.pop(0) if body else {"type": "http.disconnect"}

                await asyncio.sleep(fault.delay_s)
                await self.app(scope, replay, recording_send)  # ignored if the client left
            case _:
                assert_never(fault.kind)

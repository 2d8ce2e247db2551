"""Error bodies in the shape ``config.error_body_shape`` asks for (efax-api.md §3.4).

The handlers always build the eFax shape (``views.error_response``). This ASGI layer
sits between the edge (``faults.EdgeMiddleware``) and Starlette and rewrites each 4xx
or 5xx reply whose body is that shape, just before it leaves (UNCONFIRMED which shapes
eFax and the API gateway in front of it really send)::

    efax      {"errors": [{...}], "transaction_id": "..."}        unchanged (default)
    flat      {"error_code", "element_name", "user_message", "developer_message",
               "transaction_id"} of the first error
    Message   {"Message": text}                                   (AWS API Gateway)
    message   {"message": text}                                   (AWS API Gateway)
    text      text, as text/plain

``text`` is every distinct user_message and developer_message, joined by "; ".
Other headers (the cancel 409's ``transaction-id``) are kept. Replies that are not the
eFax shape (403 ``Missing Authentication Token``, faults sent by the edge) pass as
they are.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.simulator.state import SimulatorState


def reshape(body: bytes, shape: str) -> tuple[bytes, str] | None:
    """The eFax-shaped error ``body`` in ``shape``: (new body, content type); None to keep it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    entries = data.get("errors") if isinstance(data, dict) else None
    if shape == "efax" or not isinstance(entries, list) or not entries:
        return None
    items: list[dict[str, Any]] = [e for e in entries if isinstance(e, dict)]
    texts: list[str] = []
    for item in items:
        for key in ("user_message", "developer_message"):
            value = item.get(key)
            if isinstance(value, str) and value and value not in texts:
                texts.append(value)
    text = "; ".join(texts)
    if shape == "text":
        return text.encode(), "text/plain; charset=utf-8"
    out: dict[str, Any]
    if shape == "flat":
        first = items[0] if items else {}
        out = {
            key: first.get(key, "")
            for key in ("error_code", "element_name", "user_message", "developer_message")
        }
        out["transaction_id"] = data.get("transaction_id", "")
    else:  # "Message" or "message"
        out = {shape: text}
    return json.dumps(out).encode(), "application/json"


class ErrorShapes:
    """ASGI middleware applying ``reshape`` to error replies (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shape = self.state.config.error_body_shape
        if scope["type"] != "http" or shape == "efax":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def shaping_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message
                return
            if message["type"] != "http.response.body" or held is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            start, held = held, None
            body = b"".join(chunks)
            changed = reshape(body, shape)
            headers = list(start.get("headers", []))
            if changed is not None:
                body, content_type = changed
                keep = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
                headers = [
                    *keep,
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, shaping_send)

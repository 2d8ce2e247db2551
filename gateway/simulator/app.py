"""The eFax side of the simulator: a Starlette app speaking the API of efax-api.md.

``create_app(state)`` returns the app; ``server.py`` serves it with uvicorn.

Endpoints (all but ``/tokens`` and ``/health`` need ``Authorization: Bearer``,
scheme case-insensitive; all ``/faxes`` ones also need ``user-id``):

    POST   /tokens                            Basic app_id:api_key, grant_type form
    GET    /health                            {"status": "UP"}, no auth
    POST   /faxes                             201 [{fax_id, destination_fax_number}]
                                              (or as config.create_reply_shape says)
    GET    /faxes/sent | /faxes/received      {"faxes": [...]}, see listing.py
    GET    /faxes/{id}/transmission-details   (also .../transmission-detail; which of the
                                              two exist: config.status_paths)
    GET    /faxes/{id}/metadata
    PATCH  /faxes/{id}/metadata               {"image_downloaded": bool}
    GET    /faxes/{id}/image?desired_format=PDF|TIFF
    POST   /faxes/{id}/cancel                 202 / 409 + transaction-id header
    DELETE /faxes/{id}                        204
    GET    /notifications                     webhook delivery records of the App ID

Errors use the eFax shape (views.errors_response). Choices: a missing ``user-id`` is
400 BAD_REQUEST (element_name "user-id"); a bad, expired or revoked token is
401 UNAUTHORIZED; another user's fax is 404 NOT_FOUND, like an unknown one; an
over-size POST /faxes body is 400 with element_name "body"; TIFF images are
real blank multi-page TIFFs with the fax's page count. A route the server lacks
is 404 NOT_FOUND, or 403 ``{"message": "Missing Authentication Token"}`` (API
Gateway's answer) with ``config.unknown_route_status`` 403. With
``config.pagination_offset_unit`` "pages", ``pagination-offset`` is a page index
(offset x limit records are skipped). The control endpoints under ``/_sim/`` come
from ``control.py``; ``faults.EdgeMiddleware`` wraps everything to record requests
and inject faults; inside it, ``errorshape.ErrorShapes`` gives error bodies the
shape ``config.error_body_shape`` asks for. The app's lifespan runs the
webhook dispatcher.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.simulator.control import control_routes
from gateway.simulator.documents import blank_pdf, blank_tiff
from gateway.simulator.errorshape import ErrorShapes
from gateway.simulator.faults import EdgeMiddleware
from gateway.simulator.faxes import Direction, FaxRecord
from gateway.simulator.listing import ListError, list_reply, parse_list_query, parse_timestamp
from gateway.simulator.state import SimulatorState, Token
from gateway.simulator.validation import parse_send_request
from gateway.simulator.views import (
    error_entry,
    error_response,
    errors_response,
    metadata,
    timestamp,
    transaction_id_or_new,
    transmission_details,
)
from gateway.simulator.webhooks import WebhookDispatcher


class _BodyTooLargeError(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


class EfaxEndpoints:
    """Request handlers of the eFax-side API, bound to one state."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        details = self.transmission_details
        return [
            Route("/tokens", self.tokens, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/notifications", self.notifications, methods=["GET"]),
            Route("/faxes", self.send, methods=["POST"]),
            Route("/faxes/sent", self.sent, methods=["GET"]),
            Route("/faxes/received", self.received, methods=["GET"]),
            Route("/faxes/{id}/transmission-details", details, methods=["GET"]),
            Route("/faxes/{id}/transmission-detail", details, methods=["GET"]),
            Route("/faxes/{id}/metadata", self.get_metadata, methods=["GET"]),
            Route("/faxes/{id}/metadata", self.patch_metadata, methods=["PATCH"]),
            Route("/faxes/{id}/image", self.image, methods=["GET"]),
            Route("/faxes/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/faxes/{id}", self.delete, methods=["DELETE"]),
        ]

    # -- helpers ----------------------------------------------------------
    def _auth(self, request: Request, need_user: bool = True) -> tuple[Token, str] | Response:
        tid = request.headers.get("transaction-id")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = None
        if scheme.lower() == "bearer" and value.strip():
            token = self.state.check_token(value.strip())
        if token is None:
            return error_response(
                401,
                "UNAUTHORIZED",
                "Full authentication is required to access this resource",
                developer_message="missing, invalid, expired or revoked access token",
                transaction_id=tid,
            )
        user_id = request.headers.get("user-id", "").strip()
        if need_user and not user_id:
            return error_response(
                400,
                "BAD_REQUEST",
                "The user-id header is required",
                element_name="user-id",
                transaction_id=tid,
            )
        return token, user_id

    def _fax(self, request: Request) -> FaxRecord | Response:
        auth = self._auth(request)
        if isinstance(auth, Response):
            return auth
        fax = self.state.find_fax(str(request.path_params["id"]), auth[1])
        if fax is None:
            return error_response(
                404,
                "NOT_FOUND",
                "Fax not found",
                element_name="fax_id",
                transaction_id=request.headers.get("transaction-id"),
            )
        return fax

    def _meta(self, fax: FaxRecord) -> dict[str, Any]:
        return metadata(fax, self.state.status(fax), self.state.config)

    # -- auth and health --------------------------------------------------
    async def tokens(self, request: Request) -> Response:
        tid = request.headers.get("transaction-id")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        app_id = api_key = ""
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            app_id, _, api_key = decoded.partition(":")
        if not self.state.credentials_ok(app_id, api_key):
            return error_response(401, "UNAUTHORIZED", "Bad credentials", transaction_id=tid)
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        grant = form.get("grant_type", [""])[0]
        if grant != "client_credentials":
            return error_response(
                400,
                "BAD_REQUEST",
                "grant_type must be client_credentials",
                element_name="grant_type",
                transaction_id=tid,
            )
        token = self.state.issue_token(app_id, api_key)
        assert token is not None
        return JSONResponse(
            {
                "access_token": token.access_token,
                "token_type": "bearer",
                "expires_in": self.state.config.token_ttl_s,
                "scope": "read write",
                "jti": token.jti,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "UP"})

    # -- send ---------------------------------------------------------------
    async def send(self, request: Request) -> Response:
        auth = self._auth(request)
        if isinstance(auth, Response):
            return auth
        token, user_id = auth
        tid = request.headers.get("transaction-id")
        limit = self.state.config.max_body_bytes
        try:
            body = json.loads(await _read_body(request, limit))
        except _BodyTooLargeError:
            return error_response(
                400, "100", f"The request is larger than {limit} bytes",
                element_name="body", transaction_id=tid,
            )  # fmt: skip
        except (ValueError, UnicodeDecodeError):
            return error_response(
                400, "100", "The body is not valid JSON", element_name="body", transaction_id=tid
            )
        parsed = parse_send_request(body)
        if isinstance(parsed, list):
            entries = [error_entry("100", e.message, element_name=e.element_name) for e in parsed]
            return errors_response(400, entries, transaction_id=tid)
        faxes = self.state.create_faxes(
            parsed, user_id=user_id, app_id=token.app_id, transaction_id=tid or ""
        )
        created = [
            {
                "fax_id": fax.fax_id,
                "destination_fax_number": self.state.reply_number(fax.destination_number),
            }
            for fax in faxes
        ]
        shape = self.state.config.create_reply_shape
        reply: object = created
        if shape == "faxes":
            reply = {"faxes": created}
        elif shape == "object" and len(created) == 1:
            reply = created[0]
        return JSONResponse(reply, status_code=self.state.config.create_status)

    # -- lists --------------------------------------------------------------
    async def _list(self, request: Request, direction: Direction) -> Response:
        auth = self._auth(request)
        if isinstance(auth, Response):
            return auth
        try:
            query = parse_list_query(request.headers, request.query_params)
            if self.state.config.pagination_offset_unit == "pages":  # offset = page index
                query = dataclasses.replace(query, offset=query.offset * query.limit)
        except ListError as err:
            return error_response(
                400,
                "BAD_REQUEST",
                str(err),
                element_name=err.element_name,
                transaction_id=request.headers.get("transaction-id"),
            )
        if direction is Direction.OUTBOUND:
            faxes = self.state.sent_faxes(auth[1])
        else:
            faxes = self.state.received_faxes(auth[1])
        return JSONResponse(list_reply(faxes, query, self.state.now(), self.state.config))

    async def sent(self, request: Request) -> Response:
        return await self._list(request, Direction.OUTBOUND)

    async def received(self, request: Request) -> Response:
        return await self._list(request, Direction.INBOUND)

    # -- one fax ------------------------------------------------------------
    async def transmission_details(self, request: Request) -> Response:
        paths = self.state.config.status_paths
        plural = request.url.path.endswith("/transmission-details")
        if paths == "none" or (paths == "plural" and not plural) or (paths == "singular" and plural):
            return self.unknown_route(request)
        fax = self._fax(request)
        if isinstance(fax, Response):
            return fax
        status = self.state.status(fax)
        return JSONResponse(transmission_details(fax, status, self.state.config))

    async def get_metadata(self, request: Request) -> Response:
        fax = self._fax(request)
        return fax if isinstance(fax, Response) else JSONResponse(self._meta(fax))

    async def patch_metadata(self, request: Request) -> Response:
        fax = self._fax(request)
        if isinstance(fax, Response):
            return fax
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            body = None
        flag = body.get("image_downloaded") if isinstance(body, dict) else None
        if not isinstance(flag, bool):
            return error_response(
                400,
                "100",
                "image_downloaded must be true or false",
                element_name="image_downloaded",
                transaction_id=request.headers.get("transaction-id"),
            )
        fax.image_downloaded = flag
        return JSONResponse(self._meta(fax))

    async def image(self, request: Request) -> Response:
        fax = self._fax(request)
        tid = request.headers.get("transaction-id")
        wanted = request.query_params.get("desired_format", "PDF").upper()
        if isinstance(fax, Response) and fax.status_code != 404:
            return fax  # 401 / 400 from the auth checks
        if isinstance(fax, Response) or not self.state.status(fax).state.final:
            return error_response(
                404, "102", "Cannot get fax image", element_name="image_fax", transaction_id=tid
            )
        if wanted not in ("PDF", "TIFF"):
            return error_response(
                400,
                "BAD_REQUEST",
                "desired_format must be PDF or TIFF",
                element_name="desired_format",
                transaction_id=tid,
            )
        if wanted == "TIFF":
            content, name = blank_tiff(fax.pages), f"{fax.fax_id}.tiff"
        else:
            content, name = _pdf_of(fax), f"{fax.fax_id}.pdf"
        if self.state.config.image_marks_downloaded:
            fax.image_downloaded = True
        return JSONResponse(
            {"fax_id": fax.fax_id, "file_name": name, "image": base64.b64encode(content).decode()}
        )

    async def cancel(self, request: Request) -> Response:
        fax = self._fax(request)
        if isinstance(fax, Response):
            return fax
        if self.state.cancel(fax):
            text = self.state.config.cancel_reply_text
            return Response(text, status_code=202, media_type="text/plain" if text else None)
        tid = transaction_id_or_new(request.headers.get("transaction-id"))
        return error_response(
            409,
            "CONFLICT",
            "Fax already completed",
            developer_message="fax already completed messaging",
            transaction_id=tid,
            headers={"transaction-id": tid},
        )

    async def delete(self, request: Request) -> Response:
        fax = self._fax(request)
        if isinstance(fax, Response):
            return fax
        self.state.delete(fax)
        return Response(status_code=204)

    async def notifications(self, request: Request) -> Response:
        auth = self._auth(request, need_user=False)
        if isinstance(auth, Response):
            return auth
        params = request.query_params
        status = params.get("sent_status", "").upper()
        direction = params.get("fax_direction", "").upper()
        try:
            after = parse_timestamp(params["after"]) if "after" in params else None
            before = parse_timestamp(params["before"]) if "before" in params else None
        except ValueError:
            return error_response(400, "BAD_REQUEST", "after/before must be ISO-8601 timestamps")
        style = self.state.config.timestamp_style
        out = []
        for note in self.state.notifications:
            done = note.completed_at or 0.0
            if (
                note.app_id not in ("", auth[0].app_id)
                or (status and note.sent_status != status)
                or (direction and note.direction.value != direction)
                or (after is not None and done < after)
                or (before is not None and done > before)
            ):
                continue
            out.append(
                {
                    "app_id": note.app_id or auth[0].app_id,
                    "user_id": note.user_id,
                    "fax_id": note.fax_id,
                    "notify_id": note.notify_id,
                    "fax_direction": note.direction.value,
                    "fax_completed_timestamp": timestamp(note.completed_at, style),
                    "notify_type": "WEBHOOK",
                    "notify_destination": note.url,
                    "sent_status": note.sent_status,
                }
            )
        return JSONResponse(out)

    def unknown_route(self, request: Request) -> Response:
        """A path this server does not have: 404, or 403 as API Gateway answers."""
        if self.state.config.unknown_route_status == 403:
            return JSONResponse({"message": "Missing Authentication Token"}, status_code=403)
        return _not_found_response(request, 404)

    async def route_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return self.unknown_route(request) if status == 404 else _not_found_response(request, status)


def _pdf_of(fax: FaxRecord) -> bytes:
    """The image of a fax: the received PDF, the one sent PDF, or blank pages."""
    if fax.image is not None:
        return fax.image
    only_pdf = len(fax.documents) == 1 and fax.documents[0].document_type == "PDF"
    if only_pdf and not fax.fax_options.get("include_cover_page"):
        return fax.documents[0].content
    return blank_pdf(fax.pages)


def _not_found_response(request: Request, status: int) -> Response:
    return error_response(
        status,
        "NOT_FOUND" if status == 404 else "METHOD_NOT_ALLOWED",
        "No such resource" if status == 404 else "Method not allowed",
        transaction_id=request.headers.get("transaction-id"),
    )


class SimulatorApp(Starlette):
    """Starlette app whose every request first passes the EdgeMiddleware.

    The edge sits outside Starlette's own middleware so that it receives the
    server's ``send`` untouched (needed to drop connections; see faults.py).
    """

    def __init__(self, state: SimulatorState) -> None:
        self.sim_state = state
        efax = EfaxEndpoints(state)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            dispatcher = WebhookDispatcher(state)
            dispatcher.start()
            try:
                yield
            finally:
                await dispatcher.stop()

        super().__init__(
            routes=[*efax.routes(), *control_routes(state)],
            exception_handlers={404: efax.route_error, 405: efax.route_error},
            lifespan=lifespan,
        )
        self.edge = EdgeMiddleware(ErrorShapes(self._starlette_call, state), state, self.router.routes)

    async def _starlette_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.edge(scope, receive, send)


def create_app(state: SimulatorState) -> Starlette:
    """The simulator app (eFax API, /_sim control endpoints, webhook emitter)."""
    return SimulatorApp(state)

"""The simulator's own control endpoints, under ``/_sim/`` (no auth, not recorded).

Tests, the demo mode and benchmarks drive the simulator through these; each is
a thin wrapper over a ``SimulatorState`` method. Bad input is 400
``{"error": "..."}``. The full reference is docs/simulator.md.

    GET    /_sim/requests?path=&method=&since=   recorded eFax-side requests
    GET    /_sim/stats                           {"METHOD /route": count}
    GET    /_sim/faxes?direction=&user_id=       every fax, summarised
    GET    /_sim/faxes/{id}                      one fax in full (documents base64)
    GET    /_sim/faults | POST | DELETE          list / add / clear faults
    POST   /_sim/tokens/expire                   revoke every issued token
    GET    /_sim/clock | POST {"advance_s": N}   read / move the simulator clock
    GET    /_sim/outcomes | POST {"suffix", "error_code"}
    GET    /_sim/config | PATCH {...}            behaviour flags, webhook settings
    POST   /_sim/receive                         inject received faxes
    GET    /_sim/webhooks                        webhook notifications and outcomes
    POST   /_sim/reset                           back to the state at start
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.simulator.config import public_view
from gateway.simulator.faxes import FaxRecord
from gateway.simulator.state import SimulatorState
from gateway.simulator.views import metadata, timestamp


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _summary(state: SimulatorState, fax: FaxRecord) -> dict[str, Any]:
    status = state.status(fax)
    return {
        "fax_id": fax.fax_id,
        "direction": fax.direction.value,
        "user_id": fax.user_id,
        "state": status.state.value,
        "error_code": status.error_code,
        "created_at": fax.created_at,
        "completed_at": status.completed_at,
        "completed_timestamp": timestamp(status.completed_at, state.config.timestamp_style),
        "destination_fax_number": fax.destination_number,
        "originating_fax_number": fax.originating_number,
        "pages": fax.pages,
        "size": fax.size,
        "transaction_id": fax.transaction_id,
        "client_reference_id": fax.client_data.get("client_reference_id"),
        "image_downloaded": fax.image_downloaded,
        "cancel_requested": fax.cancel_at is not None,
        "deleted": fax.deleted,
    }


def _full(state: SimulatorState, fax: FaxRecord) -> dict[str, Any]:
    return {
        **_summary(state, fax),
        "app_id": fax.app_id,
        "to_name": fax.to_name,
        "to_company": fax.to_company,
        "originating_fax_tsid": fax.originating_tsid,
        "outcome": fax.outcome,
        "complete_after_s": fax.complete_after_s,
        "fax_options": fax.fax_options,
        "client_data": fax.client_data,
        "documents": [
            {
                "document_type": d.document_type,
                "size": len(d.content),
                "document_content": base64.b64encode(d.content).decode(),
            }
            for d in fax.documents
        ],
        "image": base64.b64encode(fax.image).decode() if fax.image is not None else None,
        "metadata": metadata(fax, state.status(fax), state.config),
    }


def control_routes(state: SimulatorState) -> list[Route]:
    """The /_sim/ routes bound to ``state``."""

    async def requests(request: Request) -> Response:
        params = request.query_params
        try:
            since = int(params.get("since", "0"))
        except ValueError:
            return _bad("since must be an integer")
        found = state.request_log(params.get("path"), params.get("method"), since)
        return JSONResponse([r.as_json() for r in found])

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def faxes(request: Request) -> Response:
        direction = request.query_params.get("direction", "").upper()
        user_id = request.query_params.get("user_id") or None
        found = [
            *(state.sent_faxes(user_id, True) if direction in ("", "OUTBOUND") else []),
            *(state.received_faxes(user_id, True) if direction in ("", "INBOUND") else []),
        ]
        found.sort(key=lambda f: f.seq)
        return JSONResponse([_summary(state, f) for f in found])

    async def one_fax(request: Request) -> Response:
        fax = state.get_fax(str(request.path_params["id"]))
        if fax is None:
            return _bad("no such fax", 404)
        return JSONResponse(_full(state, fax))

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_faults()
            return JSONResponse({"faults": []})
        if request.method == "POST":
            try:
                data = await _json_object(request)
                kind = data.pop("kind", None)
                fault = state.add_fault(str(kind), **data)
            except (ValueError, TypeError) as err:
                return _bad(str(err))
            return JSONResponse(fault.as_json(), status_code=201)
        return JSONResponse({"faults": [f.as_json() for f in state.faults]})

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": state.expire_tokens()})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            try:
                advance = (await _json_object(request)).get("advance_s", 0)
                if isinstance(advance, bool) or not isinstance(advance, int | float):
                    raise ValueError("advance_s must be a number of seconds")
                state.advance_clock(float(advance))
            except ValueError as err:
                return _bad(str(err))
        return JSONResponse({"now": state.now(), "offset_s": state.clock_offset})

    async def outcomes(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = await _json_object(request)
                suffix, code = data.get("suffix"), data.get("error_code")
                if not isinstance(suffix, str) or not (code is None or isinstance(code, str)):
                    raise ValueError("suffix must be a string, error_code a string or null")
                state.set_outcome(suffix, code)
            except ValueError as err:
                return _bad(str(err))
        return JSONResponse(state.outcomes)

    async def config(request: Request) -> Response:
        if request.method == "PATCH":
            try:
                problems = state.update_config(await _json_object(request))
            except ValueError as err:
                problems = [str(err)]
            if problems:
                return _bad("; ".join(problems))
        return JSONResponse(public_view(state.config))

    async def receive(request: Request) -> Response:
        try:
            data = await _json_object(request)
            user_id, pdf_b64 = data.get("user_id"), data.get("pdf_base64")
            numbers = {k: data.get(k, 1) for k in ("pages", "count")}
            texts = {k: data.get(k) for k in ("from_number", "tsid", "to_number")}
            if not isinstance(user_id, str) or not user_id:
                raise ValueError("user_id is required")
            if any(isinstance(v, bool) or not isinstance(v, int) for v in numbers.values()):
                raise ValueError("pages and count must be integers")
            if any(v is not None and not isinstance(v, str) for v in texts.values()):
                raise ValueError("from_number, tsid and to_number must be strings")
            if pdf_b64 is not None and not isinstance(pdf_b64, str):
                raise ValueError("pdf_base64 must be a base64 string")
            pdf = base64.b64decode(pdf_b64, validate=True) if pdf_b64 else None
            ids = state.receive(
                user_id,
                from_number=texts["from_number"] or "unavailable",
                tsid=texts["tsid"] or "unavailable",
                to_number=texts["to_number"] or "",
                pages=numbers["pages"],
                pdf=pdf,
                count=numbers["count"],
            )
        except (ValueError, binascii.Error) as err:
            return _bad(str(err))
        return JSONResponse({"fax_ids": ids}, status_code=201)

    async def webhooks(request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "notify_id": n.notify_id,
                    "fax_id": n.fax_id,
                    "direction": n.direction.value,
                    "url": n.url,
                    "sent_status": n.sent_status,
                    "attempts": n.attempts,
                    "last_status": n.last_status,
                    "last_error": n.last_error,
                    "body": n.body.decode(),
                }
                for n in state.notifications
            ]
        )

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    return [
        Route("/_sim/requests", requests, methods=["GET"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/faxes", faxes, methods=["GET"]),
        Route("/_sim/faxes/{id}", one_fax, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_sim/clock", clock, methods=["GET", "POST"]),
        Route("/_sim/outcomes", outcomes, methods=["GET", "POST"]),
        Route("/_sim/config", config, methods=["GET", "PATCH"]),
        Route("/_sim/receive", receive, methods=["POST"]),
        Route("/_sim/webhooks", webhooks, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]

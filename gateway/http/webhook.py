"""``POST /webhooks/efax``: eFax's notifications, verified, used only as a trigger.

Consumes: eFax's webhook POSTs (efax-api.md §7; payload and signature details are
UNCONFIRMED, so this is tolerant where it can be and strict where it must be).
Produces: nothing of its own. A verified notification only says "look now":

- an inbound fax: the receiver reads that fax through the API (``GET
  /faxes/{id}/metadata``, in the background) and records it, so it is mailed without
  waiting for the next poll; fields of the body are never trusted as facts;
- an outbound fax: its ``track`` job is made due now (``store.expedite``).

Checks, in order, all before any JSON is parsed:

1. the webhook is on (``inbound.webhook_secret`` set), else 403;
2. the body is at most ``inbound.webhook_max_bytes`` (default 1 MB), else 400;
3. the header ``inbound.webhook_header`` (default ``X-HMAC-Signature``) carries the
   HMAC-SHA256 of the raw body keyed with the secret: hex in either case, or base64
   (standard or URL-safe, padding optional), optionally prefixed ``sha256=``;
   compared in constant time. Missing or wrong: 401 and one log line (never the
   secret, never the presented value);
4. the body is a JSON object with a ``fax_id`` in eFax's format and, if present, a
   ``direction`` of INBOUND or OUTBOUND, else 400.

Then 202 at once; the API read happens after the reply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import check_fax_id
from gateway.logs import event
from gateway.store.base import JobKind
from gateway.workers.receive import Poller

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9a-fA-F]{64}")
_DIRECTIONS = frozenset({"INBOUND", "OUTBOUND"})


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Notification:
    fax_id: str
    direction: str | None  # INBOUND | OUTBOUND | None (not said)
    hint_number: str | None  # destination number, only to pick the mailbox to ask first


def signature_ok(secret: bytes, body: bytes, presented: str | None) -> bool:
    """True when ``presented`` is the HMAC-SHA256 of ``body`` (hex or base64)."""
    if not presented:
        return False
    value = presented.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    candidates: list[bytes] = []
    if _HEX.fullmatch(value):
        candidates.append(bytes.fromhex(value))
    else:
        padded = value + "=" * (-len(value) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidates.append(decode(padded.encode("ascii")))
            except (binascii.Error, ValueError, UnicodeEncodeError):
                continue
    ok = False
    for candidate in candidates:  # every candidate compared, in constant time each
        ok |= hmac.compare_digest(candidate, expected)
    return ok


def parse_notification(body: bytes) -> Notification | None:
    """The fax a notification is about, or None when the body is not what eFax sends."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    raw_id = data.get("fax_id")
    if not isinstance(raw_id, str):
        return None
    try:
        fax_id = check_fax_id(raw_id)
    except EfaxPermanentError:
        return None
    direction = data.get("direction", data.get("fax_direction"))
    if direction is not None:
        if not isinstance(direction, str) or direction.strip().upper() not in _DIRECTIONS:
            return None
        direction = direction.strip().upper()
    hint = data.get("destination_fax_number")
    return Notification(fax_id, direction, hint if isinstance(hint, str) else None)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _bad(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def efax_webhook(request: Request, gateway: Gateway) -> Response:
    settings = gateway.settings.inbound
    secret = settings.webhook_secret.get_secret_value()
    client = request.client.host if request.client else "?"
    if not secret:
        log.warning(
            "webhook refused: inbound.webhook_secret is not set", extra=event("webhook off", client=client)
        )
        return _bad(403, "the webhook is not enabled on this gateway")
    try:
        body = await _read_body(request, settings.webhook_max_bytes)
    except _TooLarge:
        log.warning("webhook refused: body too large", extra=event("webhook refused", client=client))
        return _bad(400, f"the body is larger than {settings.webhook_max_bytes} bytes")
    except ClientDisconnect:
        return _bad(400, "the body was cut off")
    presented = request.headers.get(settings.webhook_header)
    if not signature_ok(secret.encode(), body, presented):
        why = "no signature" if not presented else "wrong signature"
        log.warning("webhook refused: %s", why, extra=event("webhook refused", client=client))
        return _bad(401, "the signature is missing or wrong")
    note = parse_notification(body)
    if note is None:
        log.warning("webhook refused: unexpected body", extra=event("webhook refused", client=client))
        return _bad(400, "expected a JSON object with an eFax fax_id")
    await _act(note, gateway)
    return JSONResponse({"accepted": True, "fax_id": note.fax_id}, status_code=202)


async def _act(note: Notification, gateway: Gateway) -> None:
    store = gateway.store
    assert store is not None
    direction = note.direction
    if direction is None:
        direction = "OUTBOUND" if await store.fax(note.fax_id) is not None else "INBOUND"
    if direction == "OUTBOUND":
        found = await store.expedite(JobKind.TRACK, note.fax_id, now=time.time())
        if found:  # read its status now, not at the trackers' next idle tick
            for worker in gateway.workers:
                if getattr(worker, "kind", None) is JobKind.TRACK:
                    worker.nudge()
        log.info("webhook: outbound fax", extra=event("webhook", fax=note.fax_id, tracked=found))
        return
    poller = next((w for w in gateway.workers if isinstance(w, Poller)), None)
    if poller is None:
        log.info("webhook: no mailbox receives faxes", extra=event("webhook ignored", fax=note.fax_id))
        return
    log.info("webhook: inbound fax", extra=event("webhook", fax=note.fax_id))
    poller.trigger(note.fax_id, hint_number=note.hint_number)

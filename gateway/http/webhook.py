"""``POST /webhooks/efax``: eFax's notifications, verified, used only as a trigger.

Consumes: eFax's webhook POSTs (efax-api.md §7; payload and signature details are
UNCONFIRMED, so this is tolerant where it can be and strict where it must be).
Produces: nothing of its own. A verified notification only says "look now", and
nothing in its body is trusted as a fact (an image sent inline is ignored):

- an inbound fax: the receiver reads that fax through the API (``GET
  /faxes/{id}/metadata``, in the background) and records it, so it is mailed without
  waiting for the next poll;
- an outbound fax: its ``track`` job is made due now (``store.expedite``);
- no fax id to be found: every mailbox is polled now (``Poller.nudge``), unless the
  body says OUTBOUND (then the trackers keep their schedule).

Refusals, in order, all before any JSON is parsed; these are the only ones:

1. the webhook is off (``inbound.webhook_secret`` not set): 403;
2. the body is over ``inbound.webhook_max_bytes`` (default 1 MB): 400;
3. the header ``inbound.webhook_header`` (default ``X-HMAC-Signature``) does not carry
   the HMAC-SHA256 of the raw body keyed with the secret: hex in either case, or base64
   (standard or URL-safe, padding optional), optionally prefixed ``sha256=``; compared
   in constant time. Missing or wrong: 401 and one log line (never the secret, never
   the presented value).

A signed body of any shape is then answered 202 at once; the API reads happen after
the reply. ``parse_notification`` looks for hints anywhere in it (JSON to depth
``MAX_DEPTH`` 8, JSON inside string values as AWS SNS sends it, or a form body):
fax ids under keys spelt ``fax_id`` / ``faxId`` / ``FaxID`` (or ``id`` inside a
``fax`` object, or a ``fax_ids`` list), in eFax's format only, at most ``MAX_IDS``
50; a ``direction`` / ``fax_direction`` of INBOUND or OUTBOUND; a
``destination_fax_number`` to ask the right mailbox first. Anything else is ignored.
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
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import check_fax_id
from gateway.http.context import HttpContext
from gateway.logs import event
from gateway.store.base import JobKind

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9a-fA-F]{64}")
_DIRECTIONS = frozenset({"INBOUND", "OUTBOUND"})
_KEY_NOISE = re.compile(r"[^a-z0-9]")
MAX_DEPTH = 8
MAX_IDS = 50


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Notification:
    """What a verified body hints at; hints only, to be read through the API."""

    fax_ids: tuple[str, ...]  # in eFax's format, lower-cased; () when none was found
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


def parse_notification(body: bytes) -> Notification:
    """The hints in a body of any shape (see the module docstring); never raises."""
    ids: list[str] = []
    direction: str | None = None
    hint: str | None = None
    for key, parent, value in _leaves(_decode(body), "", 0):
        if isinstance(value, str) and (key == "faxid" or (key == "id" and parent == "fax")):
            fax_id = _fax_id(value)
            if fax_id and fax_id not in ids and len(ids) < MAX_IDS:
                ids.append(fax_id)
        elif key in ("direction", "faxdirection") and isinstance(value, str):
            said = value.strip().upper()
            direction = direction or (said if said in _DIRECTIONS else None)
        elif key == "destinationfaxnumber" and isinstance(value, str):
            hint = hint or value
    return Notification(tuple(ids), direction, hint)


def _decode(body: bytes) -> object:
    """JSON, else a form body (``fax_id=...&direction=...``), else nothing."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return None
    return {key: values[0] for key, values in form.items()}


def _leaves(value: object, key: str, depth: int) -> Iterator[tuple[str, str, object]]:
    """(key, parent key, value) of every member, keys lower-cased without punctuation."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "[") and depth:
        try:  # JSON inside a string, as in an AWS SNS envelope's "Message"
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        for name, item in value.items():
            member = _KEY_NOISE.sub("", str(name).lower())
            if isinstance(item, list) and member == "faxids":
                member = "faxid"  # {"fax_ids": ["...", "..."]}
            if isinstance(item, str):
                yield member, key, item
            if isinstance(item, list) and member == "faxid":
                for one in item:
                    yield member, key, one
            else:
                yield from _leaves(item, member, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, key, depth + 1)


def _fax_id(raw: str) -> str | None:
    try:
        return check_fax_id(raw)
    except EfaxPermanentError:
        return None


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


async def efax_webhook(request: Request, ctx: HttpContext) -> Response:
    settings = ctx.settings.inbound
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
    if note.fax_ids:
        for fax_id in note.fax_ids:
            await _act(fax_id, note, ctx)
    else:
        _poll_instead(note, ctx)
    reply = {"accepted": True, "fax_ids": list(note.fax_ids), "polling": not note.fax_ids}
    return JSONResponse(reply, status_code=202)


def _poll_instead(note: Notification, ctx: HttpContext) -> None:
    """A signed notification naming no fax: read every mailbox now."""
    if note.direction == "OUTBOUND":
        log.info(
            "webhook: an outbound notification without a fax id; tracking keeps its schedule",
            extra=event("webhook ignored"),
        )
        return
    if ctx.wake.poll is None:
        log.info("webhook: no fax id, and no mailbox receives faxes", extra=event("webhook ignored"))
        return
    log.info("webhook: no fax id in the body; polling every mailbox", extra=event("webhook poll"))
    ctx.wake.poll()


async def _act(fax_id: str, note: Notification, ctx: HttpContext) -> None:
    store = ctx.store
    direction = note.direction
    if direction is None:
        direction = "OUTBOUND" if await store.fax(fax_id) is not None else "INBOUND"
    if direction == "OUTBOUND":
        found = await store.expedite(JobKind.TRACK, fax_id, now=time.time())
        if found:  # read its status now, not at the trackers' next idle tick
            ctx.wake.track()
        log.info("webhook: outbound fax", extra=event("webhook", fax=fax_id, tracked=found))
        return
    if ctx.wake.fetch is None:
        log.info("webhook: no mailbox receives faxes", extra=event("webhook ignored", fax=fax_id))
        return
    log.info("webhook: inbound fax", extra=event("webhook", fax=fax_id))
    ctx.wake.fetch(fax_id, note.hint_number)

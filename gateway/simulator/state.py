"""All in-memory state of the eFax simulator, and the operations on it.

``SimulatorState`` holds the config, the outcome table, tokens, faxes, faults,
the request log and webhook notifications. Every method is synchronous and
never awaits, so one event loop can share a state without locks. The HTTP app
(``app.py``), the control endpoints (``control.py``) and in-process tests all
call the same methods::

    state = SimulatorState(SimulatorConfig(complete_after_s=0))
    state.add_fault("rate_limit", method="POST", path="/faxes", retry_after=2)
    ids = state.receive("12345678-87654321", pages=3)
    state.advance_clock(60)
    [r.path for r in state.requests], state.sent_faxes(), state.stats()

Time: ``now()`` is ``config.clock()`` plus an offset that ``advance_clock``
(``POST /_sim/clock``) grows; fax states are derived from it lazily.

Webhooks: ``receive`` queues inbound notifications; faxes reaching a final
state are found by ``due_notifications`` (a heap of final times), which the
webhook dispatcher polls. The body is shaped by ``config.webhook_body_shape``
(``webhook_body``). Nothing here does I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import hmac
import json
import re
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.simulator.config import SimulatorConfig, apply_changes
from gateway.simulator.documents import blank_pdf, count_pages, pdf_page_count
from gateway.simulator.faults import Fault, parse_fault
from gateway.simulator.faxes import (
    DEFAULT_OUTCOMES,
    NEVER,
    SUCCESS_CODE,
    Direction,
    FaxRecord,
    Status,
    outcome_for,
)
from gateway.simulator.validation import SendRequest
from gateway.simulator.views import metadata

__all__ = [
    "Notification",
    "RequestRecord",
    "SimulatorConfig",
    "SimulatorState",
    "Token",
]

_OUTCOME_CODE = re.compile(r"^E[0-9]{2}$")
_SUFFIX = re.compile(r"^[0-9]{1,15}$")


@dataclass
class Token:
    access_token: str
    app_id: str
    jti: str
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class RequestRecord:
    """One eFax-side request as the simulator saw it (no credentials kept)."""

    seq: int
    method: str
    path: str
    query: str
    user_id: str | None
    transaction_id: str | None
    route: str
    at: float
    status: int | None = None  # None: no reply was sent (dropped)
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Notification:
    """One webhook notification and its delivery outcome."""

    notify_id: str
    fax_id: str
    user_id: str
    app_id: str
    direction: Direction
    url: str
    body: bytes
    completed_at: float | None
    sent_status: str = "QUEUED"  # QUEUED, SUCCESSFUL or FAILED
    attempts: int = 0
    last_status: int | None = None
    last_error: str = ""


class SimulatorState:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        creds = self.config.credentials
        self._initial = dataclasses.replace(
            self.config, credentials=dict(creds) if creds is not None else None
        )
        self._clear()

    def _clear(self) -> None:
        self.outcomes: dict[str, str] = dict(DEFAULT_OUTCOMES)
        self.faxes: dict[str, FaxRecord] = {}
        self.tokens: dict[str, Token] = {}
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self._route_counts: Counter[str] = Counter()
        self.notifications: list[Notification] = []
        self.clock_offset = 0.0
        self._counter = 0
        self._finals: list[tuple[float, int, str]] = []
        self._outbox: list[Notification] = []

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def reset(self) -> None:
        """Forget everything and restore the config the state was built with."""
        for f in dataclasses.fields(self._initial):
            setattr(self.config, f.name, getattr(self._initial, f.name))
        creds = self._initial.credentials
        self.config.credentials = dict(creds) if creds is not None else None
        self._clear()

    # -- time -------------------------------------------------------------
    def now(self) -> float:
        return self.config.clock() + self.clock_offset

    def advance_clock(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.clock_offset += seconds
        return self.now()

    # -- config and outcomes ----------------------------------------------
    def update_config(self, changes: dict[str, Any]) -> list[str]:
        return apply_changes(self.config, changes)

    def set_outcome(self, suffix: str, error_code: str | None) -> None:
        """Map numbers ending in ``suffix`` to SFAX, NEVER or an Exx code (None: remove)."""
        if not _SUFFIX.match(suffix):
            raise ValueError("suffix must be 1-15 digits")
        if error_code is None:
            self.outcomes.pop(suffix, None)
            return
        code = error_code.upper()
        if code not in (SUCCESS_CODE, NEVER) and not _OUTCOME_CODE.match(code):
            raise ValueError("error_code must be SFAX, NEVER or Exx")
        self.outcomes[suffix] = code

    # -- tokens -----------------------------------------------------------
    def credentials_ok(self, app_id: str, api_key: str) -> bool:
        """True when POST /tokens would accept this App ID and API key."""
        if not app_id or not api_key:
            return False
        known = self.config.credentials
        if known is None:
            return True
        expected = known.get(app_id)
        return expected is not None and hmac.compare_digest(expected, api_key)

    def issue_token(self, app_id: str, api_key: str) -> Token | None:
        """A new token for good credentials, None for bad ones."""
        if not self.credentials_ok(app_id, api_key):
            return None
        if self.config.token_revokes_previous:
            for token in self.tokens.values():
                if token.app_id == app_id:
                    token.revoked = True
        now = self.now()
        token = Token(
            access_token=secrets.token_urlsafe(32),
            app_id=app_id,
            jti=str(uuid.uuid4()),
            issued_at=now,
            expires_at=now + self.config.token_ttl_s,
        )
        self.tokens[token.access_token] = token
        return token

    def check_token(self, access_token: str) -> Token | None:
        token = self.tokens.get(access_token)
        if token is None or token.revoked or self.now() >= token.expires_at:
            return None
        return token

    def expire_tokens(self) -> int:
        """Invalidate every issued token; returns how many were still valid."""
        valid = [t for t in self.tokens.values() if self.check_token(t.access_token)]
        for token in self.tokens.values():
            token.revoked = True
        return len(valid)

    # -- faxes ------------------------------------------------------------
    def create_faxes(
        self, request: SendRequest, *, user_id: str, app_id: str = "", transaction_id: str = ""
    ) -> list[FaxRecord]:
        """Record an accepted POST /faxes: one FaxRecord per destination."""
        pages = sum(count_pages(d.document_type, d.content) for d in request.documents)
        pages += 1 if request.include_cover_page else 0
        size = sum(len(d.content) for d in request.documents)
        now = self.now()
        created: list[FaxRecord] = []
        for dest in request.destinations:
            fax = FaxRecord(
                fax_id=str(uuid.uuid4()),
                direction=Direction.OUTBOUND,
                user_id=user_id,
                created_at=now,
                seq=self._next(),
                pages=pages,
                size=size,
                app_id=app_id,
                transaction_id=transaction_id,
                destination_number=dest.fax_number,
                to_name=dest.to_name,
                to_company=dest.to_company,
                documents=request.documents,
                fax_options=request.fax_options,
                client_data=request.client_data,
                outcome=outcome_for(dest.fax_number, self.outcomes),
                complete_after_s=self.config.complete_after_s,
            )
            self.faxes[fax.fax_id] = fax
            end = fax.natural_end()
            if end is not None:
                heapq.heappush(self._finals, (end, fax.seq, fax.fax_id))
            created.append(fax)
        return created

    def reply_number(self, number: str) -> str:
        """destination_fax_number as the create reply spells it."""
        digits = number.lstrip("+")
        if self.config.drop_leading_one and len(digits) == 11 and digits.startswith("1"):
            return digits[1:]
        return number

    def get_fax(self, fax_id: str) -> FaxRecord | None:
        """Any fax by id, deleted ones included (for the control side)."""
        return self.faxes.get(fax_id.lower())

    def find_fax(self, fax_id: str, user_id: str) -> FaxRecord | None:
        """A fax as its owner sees it: None when unknown, deleted or someone else's."""
        fax = self.get_fax(fax_id)
        if fax is None or fax.deleted or fax.user_id != user_id:
            return None
        return fax

    def status(self, fax: FaxRecord) -> Status:
        return fax.status_at(self.now())

    def cancel(self, fax: FaxRecord) -> bool:
        """Accept a cancel (True) unless the fax is already final (False)."""
        if fax.direction is Direction.INBOUND or self.status(fax).state.final:
            return False
        if fax.cancel_at is None:
            fax.cancel_at = self.now() + self.config.cancel_delay_s
            heapq.heappush(self._finals, (fax.cancel_at, fax.seq, fax.fax_id))
        return True

    def delete(self, fax: FaxRecord) -> None:
        fax.deleted = True

    def _listed(self, direction: Direction, user_id: str | None, deleted: bool) -> list[FaxRecord]:
        faxes = [
            f
            for f in self.faxes.values()
            if f.direction is direction
            and (user_id is None or f.user_id == user_id)
            and (deleted or not f.deleted)
        ]
        return sorted(faxes, key=lambda f: f.seq)

    def sent_faxes(self, user_id: str | None = None, include_deleted: bool = False) -> list[FaxRecord]:
        return self._listed(Direction.OUTBOUND, user_id, include_deleted)

    def received_faxes(self, user_id: str | None = None, include_deleted: bool = False) -> list[FaxRecord]:
        return self._listed(Direction.INBOUND, user_id, include_deleted)

    def receive(
        self,
        user_id: str,
        *,
        from_number: str = "unavailable",
        tsid: str = "unavailable",
        to_number: str = "",
        pages: int = 1,
        pdf: bytes | None = None,
        count: int = 1,
    ) -> list[str]:
        """Inject ``count`` received faxes for ``user_id``; returns their fax_ids."""
        if not user_id:
            raise ValueError("user_id is required")
        if pages < 1 or count < 1:
            raise ValueError("pages and count must be at least 1")
        image = pdf if pdf is not None else blank_pdf(pages)
        if pdf is not None:
            pages = pdf_page_count(pdf) or pages
        now = self.now()
        ids: list[str] = []
        for _ in range(count):
            fax = FaxRecord(
                fax_id=str(uuid.uuid4()),
                direction=Direction.INBOUND,
                user_id=user_id,
                created_at=now,
                seq=self._next(),
                pages=pages,
                size=len(image),
                destination_number=to_number,
                originating_number=from_number or "unavailable",
                originating_tsid=tsid or "unavailable",
                image=image,
                final_notified=True,
            )
            self.faxes[fax.fax_id] = fax
            ids.append(fax.fax_id)
            if self.config.webhook_inbound_url:
                self._queue(fax, self.config.webhook_inbound_url)
        return ids

    # -- webhooks ---------------------------------------------------------
    def webhook_body(self, fax: FaxRecord, status: Status) -> dict[str, Any]:
        """The notification's JSON: the metadata object, or another shape (UNCONFIRMED).

        "nested" puts it at ``data.fax``; "no_fax_id" names no fax at all (only the
        event, direction and user id); "inline_image" adds the image as base64.
        """
        meta = metadata(fax, status, self.config)
        shape = self.config.webhook_body_shape
        event = "fax.received" if fax.direction is Direction.INBOUND else "fax.sent"
        if shape == "nested":
            return {"event": event, "notify_id": str(uuid.uuid4()), "data": {"fax": meta}}
        if shape == "no_fax_id":
            return {"event": event, "direction": fax.direction.value, "user_id": fax.user_id}
        if shape == "inline_image":
            only_pdf = len(fax.documents) == 1 and fax.documents[0].document_type == "PDF"
            image = fax.image or (fax.documents[0].content if only_pdf else blank_pdf(fax.pages))
            return {**meta, "file_name": f"{fax.fax_id}.pdf", "image": base64.b64encode(image).decode()}
        return meta

    def _queue(self, fax: FaxRecord, url: str) -> None:
        status = self.status(fax)
        body = json.dumps(self.webhook_body(fax, status), separators=(",", ":"))
        note = Notification(
            notify_id=str(uuid.uuid4()),
            fax_id=fax.fax_id,
            user_id=fax.user_id,
            app_id=fax.app_id,
            direction=fax.direction,
            url=url,
            body=body.encode(),
            completed_at=status.completed_at,
        )
        self.notifications.append(note)
        self._outbox.append(note)

    def due_notifications(self) -> list[Notification]:
        """Queue outbound faxes that turned final, and hand over everything queued."""
        now = self.now()
        while self._finals and self._finals[0][0] <= now:
            _, _, fax_id = heapq.heappop(self._finals)
            fax = self.faxes.get(fax_id)
            if fax is None or fax.final_notified or not fax.status_at(now).state.final:
                continue
            fax.final_notified = True
            url = self.config.webhook_outbound_url
            if url and not fax.deleted:
                self._queue(fax, url)
        out, self._outbox = self._outbox, []
        return out

    # -- faults -----------------------------------------------------------
    def add_fault(self, kind: str, **options: Any) -> Fault:
        """Append a fault (see faults.py for kinds and options); returns it."""
        fault = parse_fault({"kind": kind, **options}, self._next())
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, method: str, path: str, route: str) -> Fault | None:
        """Consume one use of the first fault matching this request."""
        for fault in self.faults:
            if fault.matches(method, path, route):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # -- request log ------------------------------------------------------
    def record_request(
        self,
        *,
        method: str,
        path: str,
        query: str,
        user_id: str | None,
        transaction_id: str | None,
        route: str,
    ) -> RequestRecord:
        record = RequestRecord(
            seq=self._next(),
            method=method,
            path=path,
            query=query,
            user_id=user_id,
            transaction_id=transaction_id,
            route=route,
            at=self.now(),
        )
        self.requests.append(record)
        self._route_counts[f"{method} {route}"] += 1
        excess = len(self.requests) - self.config.request_log_limit
        if excess > 0:
            del self.requests[: max(excess, self.config.request_log_limit // 10)]
        return record

    def request_log(
        self, path: str | None = None, method: str | None = None, since: int = 0
    ) -> list[RequestRecord]:
        """Recorded requests, filtered by path (exact or route template) and method."""
        return [
            r
            for r in self.requests
            if r.seq > since
            and (path is None or path in (r.path, r.route))
            and (method is None or r.method == method.upper())
        ]

    def stats(self) -> dict[str, int]:
        """Request counts keyed "METHOD /route/{template}" (since start or reset)."""
        return dict(self._route_counts)

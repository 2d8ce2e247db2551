"""Tracker: follows each fax handed to eFax until it is final.

Consumes: ``track`` jobs (ref = fax id), written by the dispatcher with the fax ids.
Produces: the fax's status and details in the store (``faxes``), one event per status
seen, and when the last fax of a mail is final, one ``report`` job (ref = the mail's
job id) in the same transaction that closes the track job (``Store.finish_fax``). A fax
still not final after ``tracking.unconfirmed_after_s`` also gets one ``report`` job
``<job id>:unconfirmed`` and is tracked on. Touches: eFax (status reads only).

- Reads ``EfaxClient.transmission_details``: ``GET /faxes/{id}/transmission-details``,
  the other spelling when that path is refused as unknown (404 or 403), then
  ``GET /faxes/{id}/metadata`` (the source is kept in the fax's detail). Status spellings
  are read tolerantly (``gateway.efax.models.normalise_status``); a value the gateway
  does not know counts as still in progress and is logged once per process. COMPLETE
  with a failure code is ``failed`` (``gateway.core.tracking.status_after_read``).
- Schedule: ``gateway.core.tracking`` (``tracking.first_check_s``, doubling up to
  ``tracking.max_interval_s``); a job that someone made due early (the webhook's
  ``Store.expedite``, ``queue retry``/``cancel``) is read at once.
- ``tracking.max_requests_per_s``: one token bucket shared by all tracker workers
  (``tracking.workers``) caps status reads; a worker waits for its token.
- Failures: an eFax error (down, 5xx, 429, refused) defers the job to its next
  scheduled check (never sooner than Retry-After); the outage is logged once, and its
  end once. At ``tracking.give_up_after_s`` a fax still not final becomes ``unknown``
  (final) and is reported as not confirmed.
- Each final status is also written to the audit log (``gateway.audit``), when given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.audit import Audit
from gateway.core.ratelimit import TokenBucket
from gateway.core.tracking import (
    EPSILON_S,
    FaxStatus,
    TrackingSchedule,
    first_check_age,
    gave_up,
    is_final,
    next_check_age,
    status_after_read,
    unconfirmed,
)
from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxError, EfaxTransientError
from gateway.efax.models import FaxStatus as EfaxStatus
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.settings import TrackingSettings
from gateway.store.base import FaxRecord, Job, JobKind, JobState, NewJob, Store, StoredMessage
from gateway.workers.base import Worker

log = logging.getLogger(__name__)


@dataclass
class TrackingShared:
    """What all tracker workers of one process share: the rate limit and what was logged."""

    bucket: TokenBucket
    unknown_logged: set[str] = field(default_factory=set)
    failing: bool = False

    @classmethod
    def for_settings(cls, settings: TrackingSettings) -> TrackingShared:
        return cls(TokenBucket(settings.max_requests_per_s))


def _epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def observed(status: EfaxStatus, source: str) -> dict[str, Any]:
    """The details worth keeping from one status read."""
    raw = status.raw_status or ""
    seen = {
        "raw_status": raw,
        "error_code": status.error_code,
        "error_message": status.error_message,
        "pages": status.pages,
        "duration_s": status.duration_s,
        "attempts": status.attempts,
        "completed_at": _epoch(status.completed_at),
        "retrying": "RETRY" in raw.upper(),
        "source": source,
    }
    if status.remote_csid is not None:  # kept from an earlier read when this one has none
        seen["remote_csid"] = status.remote_csid
    return seen


class Tracker(Worker):
    kind = JobKind.TRACK

    def __init__(
        self,
        store: Store,
        efax: EfaxClient,
        settings: TrackingSettings,
        *,
        shared: TrackingShared,
        metrics: Metrics | None = None,
        on_report: Callable[[], None] | None = None,
        audit: Audit | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, **kwargs)
        self.audit = audit
        self.efax = efax
        self.settings = settings
        self.shared = shared
        self.metrics = metrics
        self.on_report = on_report
        self.sleep = sleep

    @property
    def schedule(self) -> TrackingSchedule:
        """The ages of the status reads, as the core takes them (``tracking.*_s``)."""
        return self.settings.schedule

    async def handle(self, job: Job) -> None:
        fax = await self.store.fax(job.ref)
        message = await self.store.message(fax.message_id) if fax is not None else None
        if fax is None or message is None:
            await self.store.finish(
                job, owner=self.owner, now=self.clock(), state=JobState.FAILED, error="fax not in the store"
            )
            log.warning("track job for an unknown fax", extra=event("track failed", fax=job.ref))
            return
        if is_final(fax.status):  # recorded before a crash; close the job and report
            await self._finish(job, fax, message, FaxStatus(fax.status), fax.detail, "already final")
            return
        payload = dict(job.payload)
        now = self.clock()
        if not self._due(job, payload, now):
            due = float(payload.get("due", job.created_at + first_check_age(self.schedule)))
            await self._defer(job, payload, due, "")
            return
        try:
            status, source = await self._read(message.mailbox_user_id, fax.fax_id)
        except EfaxError as err:
            await self._read_failed(job, fax, message, payload, err)
            return
        self._recovered()
        payload["reads"] = int(payload.get("reads", 0)) + 1
        await self._record(job, fax, message, payload, status, source, self.clock() - job.created_at)

    # -- when ----------------------------------------------------------------------
    def _due(self, job: Job, payload: dict[str, Any], now: float) -> bool:
        """Read now? Yes when the planned time came, or someone moved the job earlier."""
        if "due" in payload:
            planned_run_after = due = float(payload["due"])
        else:  # fresh from the dispatcher, which makes it due at once
            planned_run_after, due = job.created_at, job.created_at + first_check_age(self.schedule)
        expedited = abs(job.run_after - planned_run_after) > EPSILON_S and job.run_after < due
        return expedited or now + EPSILON_S >= due

    async def _defer(self, job: Job, payload: dict[str, Any], due: float, error: str) -> None:
        payload["due"] = due
        await self.store.defer(
            job, owner=self.owner, now=self.clock(), run_after=due, error=error, payload=payload
        )

    # -- reading -------------------------------------------------------------------
    async def _token(self) -> None:
        wait = self.shared.bucket.reserve(self.clock())
        if wait > 0:
            await self.sleep(wait)

    async def _read(self, user_id: str, fax_id: str) -> tuple[EfaxStatus, str]:
        await self._token()
        status = await self.efax.transmission_details(user_id=user_id, fax_id=fax_id)
        return status, status.source

    async def _read_failed(
        self, job: Job, fax: FaxRecord, message: StoredMessage, payload: dict[str, Any], err: EfaxError
    ) -> None:
        now = self.clock()
        age = now - job.created_at
        if not self.shared.failing:
            self.shared.failing = True
            log.warning(
                "cannot read fax status from eFax: %s; retrying on each fax's schedule",
                err,
                extra=event("efax failing", fax=fax.fax_id, job=message.id),
            )
        await self._maybe_unconfirmed(job, fax, message, payload, age)
        if gave_up(age, self.schedule):
            await self._finish(job, fax, message, FaxStatus.UNKNOWN, fax.detail, f"gave up: {err}")
            return
        due = job.created_at + next_check_age(age, self.schedule)
        if isinstance(err, EfaxTransientError) and err.retry_after is not None:
            due = max(due, now + err.retry_after)
        await self._defer(job, payload, due, str(err))

    def _recovered(self) -> None:
        if self.shared.failing:
            self.shared.failing = False
            log.info("fax status reads work again", extra=event("efax recovered"))

    # -- recording -----------------------------------------------------------------
    async def _record(
        self,
        job: Job,
        fax: FaxRecord,
        message: StoredMessage,
        payload: dict[str, Any],
        status: EfaxStatus,
        source: str,
        age: float,
    ) -> None:
        seen = observed(status, source)
        new = status_after_read(status.state, status.error_code)
        if new is None:
            new = _current(fax.status)
            self._unknown(seen["raw_status"], fax, message)
        previous = fax.detail
        detail = {**previous, **seen, "reads": payload["reads"]}
        if new.final:
            await self._finish(job, fax, message, new, detail, _describe(seen))
            return
        now = self.clock()
        changed = (new.value, seen["raw_status"], seen["error_code"]) != (
            fax.status,
            previous.get("raw_status"),
            previous.get("error_code"),
        )
        if changed:
            await self.store.update_fax(fax.fax_id, status=new.value, detail=detail, now=now)
            await self.store.add_event(
                "status", now=now, message_id=message.id, fax_id=fax.fax_id, detail=_describe(seen)
            )
        await self._maybe_unconfirmed(job, fax, message, payload, age)
        if gave_up(age, self.schedule):
            await self._finish(job, fax, message, FaxStatus.UNKNOWN, detail, "gave up: still not final")
            return
        await self._defer(job, payload, job.created_at + next_check_age(age, self.schedule), "")

    async def _maybe_unconfirmed(
        self, job: Job, fax: FaxRecord, message: StoredMessage, payload: dict[str, Any], age: float
    ) -> None:
        """Once per fax (and so at most once per mail), the "still not confirmed" report job."""
        if not unconfirmed(age, self.schedule) or payload.get("unconfirmed"):
            return
        payload["unconfirmed"] = True
        added = await self.store.enqueue(JobKind.REPORT, f"{message.id}:unconfirmed", {}, now=self.clock())
        if added:
            log.info(
                "fax not confirmed yet; telling the sender",
                extra=event("unconfirmed", job=message.id, fax=fax.fax_id),
            )
            self._nudge_reporter()

    def _unknown(self, raw: str, fax: FaxRecord, message: StoredMessage) -> None:
        key = raw or "(none)"
        if key in self.shared.unknown_logged:
            return
        self.shared.unknown_logged.add(key)
        log.warning(
            "eFax reported the status %r, which the gateway does not know; treating it as still in progress",
            key,
            extra=event("unknown status", fax=fax.fax_id, job=message.id),
        )

    async def _finish(
        self,
        job: Job,
        fax: FaxRecord,
        message: StoredMessage,
        status: FaxStatus,
        detail: dict[str, Any],
        note: str,
    ) -> None:
        finished, reported = await self.store.finish_fax(
            job,
            owner=self.owner,
            now=self.clock(),
            status=status.value,
            detail=detail,
            note=note,
            report=NewJob(JobKind.REPORT, message.id),
        )
        if not finished:
            log.warning("lost the lease before recording", extra=event("lease lost", fax=fax.fax_id))
            return
        if self.metrics is not None:
            self.metrics.faxes_final.labels(outcome=status.value).inc()
        log.info(
            "fax %s",
            status.value,
            extra=event(status.value, job=message.id, fax=fax.fax_id, code=detail.get("error_code")),
        )
        if reported:
            self._nudge_reporter()
        if self.audit is not None:  # after the commit: the final state is never lost to it
            if status is FaxStatus.DELIVERED:
                pages = detail.get("pages")
                self.audit.delivered(message, fax_id=fax.fax_id, number=fax.destination, pages=pages)
            else:
                reason = f"{status.value}: {note}"
                self.audit.failed(message, reason=reason, fax_id=fax.fax_id, number=fax.destination)

    def _nudge_reporter(self) -> None:
        if self.on_report is not None:
            self.on_report()


def _current(status: str) -> FaxStatus:
    try:
        return FaxStatus(status)
    except ValueError:
        return FaxStatus.SUBMITTED


def _describe(seen: dict[str, Any]) -> str:
    text = f"eFax: {seen['raw_status'] or '(no status)'}"
    if seen.get("error_code"):
        text += f" {seen['error_code']}"
        if seen.get("error_message"):
            text += f" ({seen['error_message']})"
    return text

"""The queue at a glance and the received faxes of the last days, for the admin page.

``queue_overview`` sorts the outbound jobs (dispatch, track, report) into what a person
looks at first:

- held: waiting for a decision (eFax never confirmed a send; ``retry`` or ``cancel``);
- failing: deferred after an error, or failed or dead since ``since`` (the last days);
- in flight: queued, active, or waiting for their next look without an error;
- done today: mails whose dispatch ended ``done`` since midnight in ``zone``.

``received_faxes`` lists each received fax seen since ``since`` with, for every address
of its mailbox's ``deliver_to``, whether it was mailed, refused by the relay (with the
reply while the job still waits) or is still waiting.

``visible(mailbox_user_id)`` says which mailboxes the viewer may see; the rest are left
out whole (never shown masked: their numbers are not the viewer's business).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.operations.story import REPORT_SUFFIXES
from gateway.store.base import FaxRecord, Job, JobKind, JobState, ReceivedRecord, Store, StoredMessage

OUTBOUND = (JobKind.DISPATCH, JobKind.TRACK, JobKind.REPORT)
SCAN_LIMIT = 500  # jobs read per kind and state: the page is for a glance, the CLI for more


@dataclass(frozen=True)
class Row:
    job: Job
    message_id: str | None  # the mail the job belongs to (None: not found)
    message: StoredMessage | None
    fax: FaxRecord | None  # for a track job


@dataclass(frozen=True)
class QueueOverview:
    held: tuple[Row, ...]
    failing: tuple[Row, ...]
    in_flight: tuple[Row, ...]
    done_today: tuple[Row, ...]


def start_of_day(now: float, zone: ZoneInfo) -> float:
    local = datetime.fromtimestamp(now, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def _row(store: Store, job: Job) -> Row:
    fax: FaxRecord | None = None
    message_id: str | None
    if job.kind == JobKind.TRACK:
        fax = await store.fax(job.ref)
        message_id = fax.message_id if fax is not None else None
    elif job.kind == JobKind.REPORT:
        message_id = job.ref
        for suffix in REPORT_SUFFIXES[1:]:
            if job.ref.endswith(suffix):
                message_id = job.ref.removesuffix(suffix)
    else:
        message_id = job.ref
    message = await store.message(message_id) if message_id is not None else None
    return Row(job=job, message_id=message_id, message=message, fax=fax)


async def _rows(
    store: Store,
    states: Sequence[JobState],
    visible: Callable[[str], bool],
    keep: Callable[[Job], bool] = lambda job: True,
    kinds: Sequence[JobKind] = OUTBOUND,
) -> tuple[Row, ...]:
    jobs = [
        job
        for kind in kinds
        for state in states
        for job in await store.jobs(kind=kind, state=state, limit=SCAN_LIMIT)
        if keep(job)
    ]
    jobs.sort(key=lambda j: j.created_at, reverse=True)
    rows = [await _row(store, job) for job in jobs]
    return tuple(r for r in rows if r.message is not None and visible(r.message.mailbox_user_id))


async def queue_overview(
    store: Store, *, now: float, since: float, zone: ZoneInfo, visible: Callable[[str], bool]
) -> QueueOverview:
    today = start_of_day(now, zone)
    return QueueOverview(
        held=await _rows(store, [JobState.HELD], visible),
        failing=await _rows(
            store,
            [JobState.DEFERRED, JobState.FAILED, JobState.DEAD],
            visible,
            keep=lambda j: (j.state == JobState.DEFERRED and bool(j.last_error)) or j.created_at >= since,
        ),
        in_flight=await _rows(
            store,
            [JobState.QUEUED, JobState.ACTIVE, JobState.DEFERRED],
            visible,
            keep=lambda j: j.state != JobState.DEFERRED or not j.last_error,
        ),
        done_today=await _rows(
            store, [JobState.DONE], visible, keep=lambda j: j.created_at >= today, kinds=[JobKind.DISPATCH]
        ),
    )


@dataclass(frozen=True)
class AddressDelivery:
    address: str
    state: Literal["mailed", "refused", "waiting"]
    reply: str | None = None  # the relay's refusal


@dataclass(frozen=True)
class ReceivedRow:
    fax_id: str
    mailbox_user_id: str
    seen_at: float
    caller: str | None  # the calling number as eFax gave it
    pages: int | None
    state: str  # new | fetched | mailed | marked | done (see workers.deliver)
    job: Job
    addresses: tuple[AddressDelivery, ...]


def _deliveries(record: ReceivedRecord, job: Job, addresses: Sequence[str]) -> tuple[AddressDelivery, ...]:
    """Each address: mailed (in ``delivered_to``), refused, or still waiting.

    The deliverer ends a fax ``mailed`` only once every address was mailed or refused for
    good, so past that point a missing address was refused (the administrator was sent a
    notice with the relay's reply); while the job waits, the reply is in its payload.
    """
    mailed = {a.lower() for a in record.delivered_to}
    refused = {str(k).lower(): str(v) for k, v in dict(job.payload.get("refused", {})).items()}
    finished = record.state in ("mailed", "marked", "done")
    out = []
    for address in addresses:
        if address.lower() in mailed:
            out.append(AddressDelivery(address, "mailed"))
        elif address.lower() in refused or finished:
            out.append(AddressDelivery(address, "refused", refused.get(address.lower())))
        else:
            out.append(AddressDelivery(address, "waiting"))
    return tuple(out)


async def received_faxes(
    store: Store,
    deliver_to: Callable[[str], Sequence[str]],
    *,
    since: float,
    visible: Callable[[str], bool],
) -> tuple[ReceivedRow, ...]:
    """``deliver_to(user_id)``: the addresses the mailbox's faxes go to (settings)."""
    out: list[ReceivedRow] = []
    for job in await store.jobs(kind=JobKind.DELIVER, limit=SCAN_LIMIT):
        if job.created_at < since:
            continue
        record = await store.received(job.ref)
        if record is None or not visible(record.user_id):
            continue
        addresses = _deliveries(record, job, deliver_to(record.user_id))
        pages = record.metadata.get("pages")
        caller = record.metadata.get("originating_fax_number")
        out.append(
            ReceivedRow(
                fax_id=record.fax_id,
                mailbox_user_id=record.user_id,
                seen_at=record.seen_at,
                caller=caller if isinstance(caller, str) and caller else None,
                pages=pages if isinstance(pages, int) and not isinstance(pages, bool) else None,
                state=record.state,
                job=job,
                addresses=tuple(addresses),
            )
        )
    return tuple(out)

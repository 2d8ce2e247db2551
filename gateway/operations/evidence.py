"""Proof of transmission: the confirmation PDF of a mail's faxes, from what the store keeps.

``confirmation_pdf(store, id, ...)`` gathers, for a mail (its job id) or one of its faxes
(a fax id), the facts of each fax (``gateway.core.confirmation.Confirmation``) and
renders them, one page per fax. The reporter attaches it to the "delivered" report
(``Mailbox.report_attachment``); ``fax-gateway evidence ID`` writes it again later.

What it reads: the mail, its documents (their SHA-256, recorded when they were handed to
eFax), its faxes (eFax's pages, duration, end time, remote CSID as tracked) and its
events (when each fax was handed to eFax). The thumbnail is drawn from the first
document's bytes; once those were deleted (``database.keep_days``) the page carries the
record's facts and hashes only, and says why there is no picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.core import confirmation
from gateway.core.addressing import format_number
from gateway.core.confirmation import Confirmation, SentDocument
from gateway.core.notices import match_destinations
from gateway.core.result_codes import explain
from gateway.core.thumbnail import first_page_png
from gateway.core.tracking import FaxStatus
from gateway.operations.story import resolve
from gateway.store.base import Event, FaxRecord, Recipient, Store, StoredMessage

RESULTS = {
    FaxStatus.DELIVERED: ("Delivered", "eFax reported the transmission complete"),
    FaxStatus.CANCELLED: ("Cancelled", "eFax reported the fax cancelled"),
    FaxStatus.UNKNOWN: ("Not confirmed", "eFax never reported a final result while the gateway watched"),
    FaxStatus.SENDING: ("Still being sent", "eFax has not reported a final result yet"),
    FaxStatus.SUBMITTED: ("Waiting at eFax", "eFax has not reported a final result yet"),
}


@dataclass(frozen=True)
class Evidence:
    message: StoredMessage
    confirmations: tuple[Confirmation, ...]
    zone: ZoneInfo
    now: float

    def pdf(self, fax_ids: Sequence[str] | None = None) -> bytes:
        """Every confirmation (or those of ``fax_ids``), one page each."""
        chosen = [c for c in self.confirmations if fax_ids is None or c.fax_id in fax_ids]
        return confirmation.render(chosen, zone=self.zone, generated_at=self.now)


def _result(fax: FaxRecord) -> tuple[str, str]:
    try:
        status = FaxStatus(fax.status)
    except ValueError:
        status = FaxStatus.SUBMITTED
    if status is FaxStatus.FAILED:
        code = fax.detail.get("error_code")
        meaning = explain(code, fax.detail.get("error_message")).meaning.rstrip(".")
        return "Failed", meaning + (f" (eFax code {code})" if code else "")
    return RESULTS[status]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def _thumbnail(store: Store, message: StoredMessage, zone: ZoneInfo) -> tuple[bytes | None, str]:
    if not message.documents:
        return None, "no document"
    if message.purged_at is not None:
        day = datetime.fromtimestamp(message.purged_at, zone).strftime("%Y-%m-%d")
        return None, (
            f"No picture: the documents' bytes were deleted on {day} (database.keep_days). "
            "The hashes below were recorded when they were handed to eFax."
        )
    first = message.documents[0]
    content = b"".join([chunk async for chunk in store.document_chunks(first.id)])
    png = await asyncio.to_thread(first_page_png, first.document_type, content)  # off the event loop
    return png, "" if png is not None else "No picture: the first page could not be drawn."


def _recipients(message: StoredMessage, faxes: Sequence[FaxRecord]) -> list[Recipient | None]:
    numbers = [r.number for r in message.recipients]
    found = match_destinations(numbers, [f.destination for f in faxes])
    return [message.recipients[i] if i is not None else None for i in found]


def _confirmation(
    message: StoredMessage,
    fax: FaxRecord,
    recipient: Recipient | None,
    submitted: dict[str, float],
    *,
    from_number: str,
    cover_page: bool,
    thumbnail: tuple[bytes | None, str],
) -> Confirmation:
    d = fax.detail
    result, detail = _result(fax)
    return Confirmation(
        job_id=message.id,
        fax_id=fax.fax_id,
        result=result,
        result_detail=detail,
        destination=recipient.pretty if recipient is not None else fax.destination,
        recipient_name=recipient.name if recipient is not None else None,
        from_number=format_number(from_number) if from_number else "not configured",
        sender=message.header_from or message.envelope_from,
        subject=message.subject,
        accepted_at=message.received_at,
        submitted_at=submitted.get(fax.fax_id),
        completed_at=_float(d.get("completed_at")),
        pages=_int(d.get("pages")),
        duration_s=_int(d.get("duration_s")),
        attempts=_int(d.get("attempts")),
        remote_csid=d.get("remote_csid") if isinstance(d.get("remote_csid"), str) else None,
        cover_page=cover_page,
        documents=tuple(
            SentDocument(doc.filename, doc.detected, doc.document_type, doc.pages, doc.size, doc.sha256)
            for doc in message.documents
        ),
        thumbnail_png=thumbnail[0],
        thumbnail_note=thumbnail[1],
    )


def _submitted(events: Sequence[Event]) -> dict[str, float]:
    return {e.fax_id: e.at for e in events if e.action == "submitted" and e.fax_id}


async def evidence(
    store: Store,
    some_id: str,
    *,
    zone: ZoneInfo,
    now: float,
    from_number: str,
    cover_page: bool,
    only: Sequence[str] | None = None,
) -> Evidence | None:
    """The confirmation of a mail's faxes (or of the one fax named, or of the fax ids in
    ``only``); None when there is no such mail, or it has no fax (never handed to eFax)."""
    message_id, named = await resolve(store, some_id)
    message = await store.message(message_id)
    if message is None:
        return None
    faxes = await store.faxes(message.id)
    pairs = list(zip(faxes, _recipients(message, faxes), strict=True))
    wanted = {named.fax_id} if named is not None else set(only) if only is not None else None
    if wanted is not None:
        pairs = [(f, r) for f, r in pairs if f.fax_id in wanted]
    if not pairs:
        return None
    thumbnail = await _thumbnail(store, message, zone)
    submitted = _submitted(await store.events(message.id))
    confirmations = tuple(
        _confirmation(
            message,
            fax,
            recipient,
            submitted,
            from_number=from_number,
            cover_page=cover_page,
            thumbnail=thumbnail,
        )
        for fax, recipient in pairs
    )
    return Evidence(message, confirmations, zone, now)

"""What a "delivered" report carries: the transmission confirmation, and the fax itself.

Used by the reporter (``gateway.workers.report``). ``Mailbox.report_attachment``:

- ``confirmation`` (default): one PDF per delivered fax, ``confirmation-<fax id>.pdf``,
  one page (``gateway.operations.evidence``);
- ``confirmation+fax``: that, and each document as it was handed to eFax;
- ``none``: nothing.

Only final reports with at least one delivered fax carry anything; a failure, a "not yet
confirmed" or a held notice does not (there is no transmission to prove). A mail whose
bytes were already deleted (``database.keep_days``) gets the confirmation without its
thumbnail, and no documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.core import notices
from gateway.core.tracking import FaxStatus
from gateway.operations.evidence import evidence
from gateway.settings import Mailbox
from gateway.store.base import Store, StoredMessage


@dataclass(frozen=True)
class Attachment:
    filename: str
    maintype: str
    subtype: str
    content: bytes


def confirmation_name(fax_id: str) -> str:
    return f"confirmation-{fax_id}.pdf"


async def report_attachments(
    store: Store,
    message: StoredMessage,
    report: notices.Report,
    mailbox: Mailbox | None,
    *,
    zone: ZoneInfo,
    now: float,
    cover_page: bool,
) -> list[Attachment]:
    setting = mailbox.report_attachment if mailbox is not None else "confirmation"
    delivered = [o.fax_id for o in report.outcomes if o.status is FaxStatus.DELIVERED and o.fax_id]
    if report.kind != "final" or setting == "none" or not delivered:
        return []
    found = await evidence(
        store,
        message.id,
        zone=mailbox.zone(zone) if mailbox is not None else zone,
        now=now,
        from_number=mailbox.fax_number if mailbox is not None else "",
        cover_page=cover_page,
        only=delivered,
    )
    if found is None:
        return []
    out = [
        Attachment(confirmation_name(fax_id), "application", "pdf", found.pdf([fax_id]))
        for fax_id in delivered
        if any(c.fax_id == fax_id for c in found.confirmations)
    ]
    if setting == "confirmation+fax" and message.purged_at is None:
        for doc in message.documents:
            content = b"".join([chunk async for chunk in store.document_chunks(doc.id)])
            if doc.document_type == "TXT":
                out.append(Attachment(doc.filename or "fax.txt", "text", "plain", content))
            else:
                out.append(Attachment(doc.filename or "fax.pdf", "application", "pdf", content))
    return out

"""The stored message: what one accepted mail becomes in the store.

Consumes: the mail as its reader process saw it (``ReadMail``: the documents, cover
options, subject, To/Cc, Reply-To, Message-ID), the transaction's numbers (accepted and
deferred), the envelope sender, the raw bytes, who sent it and where its reports go.
Produces: the ``NewMessage`` that ``Store.accept_message`` commits with its ``dispatch``
job, its id (``gateway.core.ids``) and ``received_at`` from ``now``. Touches: nothing
(no I/O: the caller commits it). Settings: none.

A document whose content lies, base64-encoded, in the raw mail itself is stored as a
place in those bytes rather than as a second copy (``NewDocument``'s ``in_raw``).
"""

from __future__ import annotations

from email.utils import make_msgid, parseaddr

from gateway.core.addressing import FaxNumber, display_names
from gateway.core.documents import FaxDocument
from gateway.core.ids import new_job_id
from gateway.settings import Mailbox
from gateway.smtp.reading import ReadMail
from gateway.store.base import LeftOut, MessageOptions, NewDocument, NewMessage, Recipient


def new_message(
    mail: ReadMail,
    *,
    raw: bytes,
    recipients: list[tuple[str, FaxNumber]],
    deferred: list[FaxNumber],
    mailbox: Mailbox,
    envelope_from: str,
    header_from: str,
    report_to: str,
    auth: str,
    now: float,
) -> NewMessage:
    """The message to commit for ``mail``, sent by ``auth`` to ``recipients``
    (``(address, number)``, the address's display name in To/Cc naming the cover page)."""
    extraction = mail.extraction
    names = display_names(mail.to_cc)
    from_name = parseaddr(mail.from_field)[0]
    options = MessageOptions(
        cover=extraction.options.cover,
        resolution=extraction.options.resolution,
        cover_subject=extraction.subject,
        cover_message="" if extraction.body_is_document else extraction.body_text,
        from_name=from_name or header_from,
        body_is_document=extraction.body_is_document,
        left_out=tuple(LeftOut(x.filename, x.reason) for x in extraction.left_out),
        pages=extraction.pages,
        deferred=tuple(n.pretty for n in deferred),
    )
    return NewMessage(
        id=new_job_id(now),
        received_at=now,
        mailbox_user_id=mailbox.user_id,
        envelope_from=envelope_from,
        header_from=header_from,
        report_to=report_to,
        auth=auth,
        message_id=mail.message_id.strip() or make_msgid(domain="fax-gateway"),
        subject=mail.subject,
        recipients=[
            Recipient(number=n.wire, pretty=n.pretty, name=names.get(address.lower()))
            for address, n in recipients
        ],
        options=options,
        raw=raw,
        documents=[new_document(d, raw) for d in extraction.documents],
    )


def new_document(document: FaxDocument, raw: bytes) -> NewDocument:
    """The document to store, with where it lies, base64-encoded, in the very bytes stored
    as the raw mail when it does (NewDocument refuses a left-behind content without it)."""
    span = document.span
    in_raw = (span[1], span[2]) if span is not None and span[0] is raw else None
    return NewDocument(
        document.filename,
        document.document_type,
        document.detected,
        document.pages,
        document.content,
        in_raw,
        document.length,
    )

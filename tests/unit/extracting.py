"""What the documents tests share: extract a raw mail, and summarise what came out."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

from gateway.core.documents import Extraction, ExtractionLimits, extract_documents, parse_message
from tests import corpus


def extract(raw: bytes, **limits: object) -> Extraction:
    return extract_documents(parse_message(raw), ExtractionLimits(**limits))  # type: ignore[arg-type]


def summary(extraction: Extraction) -> list[tuple[str, str, int, str]]:
    """(filename, document_type, pages, detected) per document, in order."""
    return [(d.filename, d.document_type, d.pages, d.detected) for d in extraction.documents]


def mail(
    *parts: tuple[bytes, str, str | None], text: str = "See attached.\n", subject: str = "Test"
) -> bytes:
    """A mixed mail with a text body and attachments given as (bytes, mime type, filename)."""
    message = EmailMessage(policy=policy.default)
    message["From"] = corpus.FROM
    message["To"] = corpus.TO
    message["Subject"] = subject
    message["Message-ID"] = "<test@example.com>"
    message.set_content(text)
    for data, mime, filename in parts:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=policy.SMTP)

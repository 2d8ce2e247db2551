"""What the documents tests share: extract a raw mail, and summarise what came out."""

from __future__ import annotations

from gateway.core.documents import Extraction, ExtractionLimits, extract_documents, parse_message


def extract(raw: bytes, **limits: object) -> Extraction:
    return extract_documents(parse_message(raw), ExtractionLimits(**limits))  # type: ignore[arg-type]


def summary(extraction: Extraction) -> list[tuple[str, str, int, str]]:
    """(filename, document_type, pages, detected) per document, in order."""
    return [(d.filename, d.document_type, d.pages, d.detected) for d in extraction.documents]

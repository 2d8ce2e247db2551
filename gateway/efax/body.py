"""The POST /faxes JSON body, streamed: documents are base64-encoded on the fly.

A fax may carry up to 100 MB of base64 (eFax's limit), so the body is never built
in memory.  ``build_send_body`` checks the request against eFax's documented
limits, renders everything except the documents' contents as JSON up front, and
returns a ``SendBody`` whose ``content_length`` is exact (base64 of n bytes is
4 * ceil(n / 3) characters) and whose ``stream()`` yields::

    {"destinations":[...],"fax_options":{...},"client_data":{...},"documents":[
    {"document_type":"PDF","document_content":"<base64, in chunks>"}, ...
    ]}

Each document is read from ``DocumentSource.open()`` and encoded in slices whose
length is a multiple of 3, so the chunks concatenate to one valid base64 string.
Peak memory is about one source chunk plus ``ENCODE_SLICE`` bytes.  A document
that yields more or fewer bytes than its declared ``size`` stops the stream with
``DocumentSizeMismatch`` before the declared Content-Length is reached, so eFax
never receives a complete (and so never a processable) request.

Request-content problems are refused here as ``EfaxPermanentError`` with status 0.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import Destination, DocumentSource, FaxOptions

MAX_DESTINATIONS = 50  # eFax silently ignores the rest, so more is refused
MAX_DOCUMENTS = 25
MAX_BODY_BYTES = 100_000_000  # "100 MB total, including base64"
ENCODE_SLICE = 3 * 64 * 1024  # raw bytes per base64 chunk (a multiple of 3)
RESOLUTIONS = frozenset({"FINE", "STANDARD"})
RETRY_RANGES = {"non_billable": (1, 10), "billable": (1, 10), "human_answer": (1, 3)}


class DocumentSizeMismatch(Exception):
    """A DocumentSource yielded a different number of bytes than its size."""


@dataclass(frozen=True)
class SendBody:
    """A streamed POST /faxes body of exactly ``content_length`` bytes."""

    content_length: int
    prefix: bytes
    documents: tuple[tuple[bytes, DocumentSource], ...]  # (JSON head, source)
    suffix: bytes

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body; a fresh call starts over (documents are reopened).

        The JSON between documents rides along with the next base64 chunk rather than
        going out as a write of its own.
        """
        carry = self.prefix
        for index, (head, source) in enumerate(self.documents):
            carry += (b"," if index else b"") + head
            async for chunk in _base64_chunks(source):
                yield carry + chunk
                carry = b""
            carry += _DOC_TAIL
        yield carry + self.suffix


_DOC_TAIL = b'"}'


def b64_length(size: int) -> int:
    """Length of the padded base64 encoding of ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def build_send_body(
    destinations: Sequence[Destination],
    documents: Sequence[DocumentSource],
    options: FaxOptions,
    client_reference_id: str,
) -> SendBody:
    """Validate the request and prepare its streamed body."""
    _refuse_if(not destinations, "The fax has no destination.")
    _refuse_if(
        len(destinations) > MAX_DESTINATIONS,
        f"The fax has {len(destinations)} destinations; eFax takes at most {MAX_DESTINATIONS}.",
    )
    _refuse_if(not documents, "The fax has no document.")
    _refuse_if(
        len(documents) > MAX_DOCUMENTS,
        f"The fax has {len(documents)} documents; eFax takes at most {MAX_DOCUMENTS}.",
    )
    for dest in destinations:
        _refuse_if(not dest.fax_number.strip(), "A destination has an empty fax number.")
    for doc in documents:
        _refuse_if(doc.size < 0, "A document has a negative size.")
        _refuse_if(not doc.document_type.strip(), "A document has no document type (e.g. PDF).")

    envelope: dict[str, Any] = {
        "destinations": [_destination(dest) for dest in destinations],
        "fax_options": _fax_options(options),
        "client_data": {"client_reference_id": client_reference_id},
    }
    rendered = _dumps(envelope)
    prefix = rendered[:-1] + b',"documents":['
    heads = tuple(
        (
            b'{"document_type":' + _dumps(doc.document_type.strip().upper()) + b',"document_content":"',
            doc,
        )
        for doc in documents
    )
    suffix = b"]}"
    length = len(prefix) + len(suffix) + max(0, len(heads) - 1)
    length += sum(len(head) + b64_length(doc.size) + len(_DOC_TAIL) for head, doc in heads)
    _refuse_if(
        length > MAX_BODY_BYTES,
        f"The fax is {length / 1e6:.1f} MB once encoded; eFax takes at most "
        f"{MAX_BODY_BYTES / 1e6:.0f} MB per request.",
    )
    return SendBody(length, prefix, heads, suffix)


def _destination(dest: Destination) -> dict[str, str]:
    out = {"fax_number": dest.fax_number.strip()}
    if dest.to_name is not None:
        out["to_name"] = dest.to_name
    if dest.to_company is not None:
        out["to_company"] = dest.to_company
    return out


def _fax_options(options: FaxOptions) -> dict[str, Any]:
    out: dict[str, Any] = {"include_cover_page": bool(options.include_cover_page)}
    if options.image_resolution is not None:
        resolution = options.image_resolution.strip().upper()
        _refuse_if(
            resolution not in RESOLUTIONS,
            f"Image resolution {options.image_resolution!r} is not FINE or STANDARD.",
        )
        out["image_resolution"] = resolution
    if options.include_cover_page:
        cover = {
            key: value
            for key, value in (
                ("from_name", options.cover_from_name),
                ("subject", options.cover_subject),
                ("message", options.cover_message),
            )
            if value is not None
        }
        if cover:
            out["cover_page_options"] = cover
    retries = {
        key: value
        for key, value in (
            ("non_billable", options.retry_non_billable),
            ("billable", options.retry_billable),
            ("human_answer", options.retry_human_answer),
        )
        if value is not None
    }
    for key, value in retries.items():
        low, high = RETRY_RANGES[key]
        _refuse_if(
            not low <= value <= high,
            f"Retry option {key}={value} is outside eFax's range {low}-{high}.",
        )
    if retries:
        out["retry_options"] = retries
    if options.custom_csid is not None:
        out["custom_CSID"] = options.custom_csid
    return out


async def _base64_chunks(source: DocumentSource) -> AsyncIterator[bytes]:
    """Base64 of the source's bytes, in chunks that concatenate correctly."""
    carry = b""  # the 0-2 bytes of the last chunk beyond a multiple of 3
    seen = 0
    async for chunk in source.open():
        seen += len(chunk)
        if seen > source.size:
            raise DocumentSizeMismatch(
                f"A {source.document_type} document yielded more than its declared {source.size} bytes."
            )
        data = carry + chunk if carry else chunk
        usable = len(data) - len(data) % 3
        view = memoryview(data)
        for start in range(0, usable, ENCODE_SLICE):
            yield base64.b64encode(view[start : min(usable, start + ENCODE_SLICE)])
        carry = bytes(view[usable:])
    if seen != source.size:
        raise DocumentSizeMismatch(
            f"A {source.document_type} document yielded {seen} bytes, not its declared {source.size}."
        )
    if carry:
        yield base64.b64encode(carry)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _refuse_if(condition: bool, sentence: str) -> None:
    if condition:
        raise EfaxPermanentError(sentence + " Nothing was sent to eFax.", status=0)

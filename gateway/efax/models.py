"""The eFax client's own value types: what callers pass in and get back.

These are plain frozen dataclasses, independent of the JSON on the wire (see
``wire.py`` for that) and of the simulator (which has its own models on purpose:
sharing them would let a wrong field name pass every test).

Also here, because callers need them too:

- ``normalise_status``: eFax spells states several ways (``COMPLETE`` and
  ``COMPLETED``, ``IN PROGRESS`` and ``INPROGRESS``, ``CANCELED``...); this maps
  every spelling to one ``FaxState``.  Anything unknown is ``UNKNOWN`` (keep polling).
  A status alone never says "delivered": ``wire.final_state`` turns ``COMPLETE`` with
  a failure code (``E41``) into ``FAILED``.
- ``parse_timestamp``: ISO-8601 in the forms eFax uses (``Z``, ``+00:00``,
  ``+0000``, with or without fractions); always timezone-aware, never raises.
- ``check_fax_id``: a fax id goes into URL paths, so it must look like a UUID.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from gateway.efax.errors import EfaxPermanentError


class FaxState(StrEnum):
    """Where an outbound transmission stands, whatever eFax's spelling."""

    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


_STATE_BY_TOKEN = {
    "NEW": FaxState.IN_PROGRESS,
    "INPROGRESS": FaxState.IN_PROGRESS,
    "INPROGESS": FaxState.IN_PROGRESS,  # misspelling seen in the spec
    "PENDINGRETRY": FaxState.IN_PROGRESS,
    "COMPLETE": FaxState.DELIVERED,
    "COMPLETED": FaxState.DELIVERED,
    "ERROR": FaxState.FAILED,
    "FAILED": FaxState.FAILED,
    "CANCELED": FaxState.CANCELLED,
    "CANCELLED": FaxState.CANCELLED,
}

_STATUS_NOISE = re.compile(r"[\s_\-]+")


def normalise_status(raw: str | None) -> FaxState:
    """Map any eFax spelling of a transmission status to a ``FaxState``."""
    if not raw:
        return FaxState.UNKNOWN
    token = _STATUS_NOISE.sub("", raw).upper()
    return _STATE_BY_TOKEN.get(token, FaxState.UNKNOWN)


def parse_timestamp(raw: str | None) -> datetime | None:
    """Parse an eFax timestamp leniently; None when absent or unreadable.

    A timestamp without an offset is taken as UTC, so the result is always aware.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


_FAX_ID = re.compile(r"[0-9a-f-]{36}")


def check_fax_id(raw: str) -> str:
    """Return the fax id lower-cased, or raise EfaxPermanentError (status 0).

    eFax ids are UUIDs; anything else is refused before it reaches a URL path.
    """
    candidate = raw.strip().lower() if isinstance(raw, str) else ""
    if not _FAX_ID.fullmatch(candidate):
        raise EfaxPermanentError(
            "The fax id is not in eFax's format (36 hex digits and hyphens); nothing was sent to eFax.",
            status=0,
        )
    return candidate


@dataclass(frozen=True)
class Destination:
    """One recipient of an outbound fax; fax_number as eFax wants it (11 digits or +cc...)."""

    fax_number: str
    to_name: str | None = None
    to_company: str | None = None


@dataclass(frozen=True)
class DocumentSource:
    """One document to fax, read lazily so large files are never held in memory.

    ``size`` is the exact raw byte count; ``open()`` yields those raw bytes (not
    base64) in chunks and may be called again when the request is resent.
    """

    document_type: str
    size: int
    open: Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True)
class FaxOptions:
    """Per-fax options.  None means "not sent": eFax's default applies."""

    include_cover_page: bool = False
    cover_from_name: str | None = None
    cover_subject: str | None = None
    cover_message: str | None = None
    image_resolution: str | None = None  # "FINE" or "STANDARD"
    retry_non_billable: int | None = None  # 1-10, eFax default 5
    retry_billable: int | None = None  # 1-10, eFax default 2
    retry_human_answer: int | None = None  # 1-3
    custom_csid: str | None = None


@dataclass(frozen=True)
class SubmittedFax:
    """One fax created by POST /faxes (one per destination)."""

    fax_id: str
    destination_fax_number: str


@dataclass(frozen=True)
class FaxStatus:
    """Live state of one outbound fax, from transmission-details (or metadata)."""

    fax_id: str
    state: FaxState
    raw_status: str | None
    error_code: str | None  # E41, E51...; None on success ("", "0", "SFAX", "OK")
    error_message: str | None
    pages: int | None
    duration_s: int | None
    completed_at: datetime | None
    attempts: int | None
    source: str = "transmission-details"  # or "metadata", when no details path answered
    # The remote station id (CSID) eFax reports for the answering machine, when it reports
    # one (a metadata field, destination_fax_csid; unconfirmed elsewhere): None otherwise.
    remote_csid: str | None = None


@dataclass(frozen=True)
class FaxSummary:
    """One fax as the sent/received lists and the metadata call describe it."""

    fax_id: str
    direction: str | None  # "INBOUND" / "OUTBOUND" as eFax sent it, upper-cased
    state: FaxState
    pages: int | None
    duration_s: int | None
    completed_at: datetime | None
    originating_fax_number: str | None  # None also when eFax says "unavailable"
    originating_fax_tsid: str | None
    destination_fax_number: str | None
    image_downloaded: bool | None
    client_reference_id: str | None
    error_code: str | None
    error_message: str | None


@dataclass(frozen=True)
class ReceivedImage:
    """The image of a received fax; ``format`` is sniffed from the bytes."""

    fax_id: str
    file_name: str | None
    content: bytes
    format: str  # "PDF", "TIFF", or "UNKNOWN" when the bytes are neither

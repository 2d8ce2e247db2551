"""Fax records kept by the eFax simulator, and how their state moves with time.

One ``FaxRecord`` per fax_id: outbound ones are made by ``POST /faxes`` (one per
destination), inbound ones by ``/_sim/receive``. A record never stores its
transmission state; ``FaxRecord.status_at(now)`` derives it from the clock:

    created ──(first third of complete_after_s)── NEW
            ──(rest of complete_after_s)────────── INPROGRESS
            ──(at created + complete_after_s)──── COMPLETE (error_code SFAX)
                                                  or ERROR (error_code Exx)
    outcome NEVER: INPROGRESS forever.
    cancel accepted at t: CANCELED (E45) from t + cancel_delay_s, unless the
    fax reached its own final state first.

Inbound faxes are COMPLETE from the moment they are received.

``DEFAULT_OUTCOMES`` maps the last digits of a destination number to its
outcome; the state keeps a mutable copy. ``ERROR_MESSAGES`` gives the plain
error_message for each code (eFax's D-CHAR table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

SUCCESS_CODE = "SFAX"
NEVER = "NEVER"
CANCEL_CODE = "E45"

DEFAULT_OUTCOMES: Mapping[str, str] = MappingProxyType(
    {
        "0000": "E41",
        "0007": "E07",
        "0042": "E42",
        "0043": "E43",
        "0044": "E44",
        "0046": "E46",
        "0049": "E49",
        "0051": "E51",
        "0052": "E52",
        "0053": "E53",
        "9999": NEVER,
    }
)

ERROR_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        SUCCESS_CODE: "Success",
        "E06": "Unspecified system error",
        "E07": "Rast farm error",
        "E33": "Human answer",
        "E41": "Number busy",
        "E42": "No answer",
        "E43": "Human answer",
        "E44": "Interrupted fax transmission",
        "E45": "Transmission cancelled by sender",
        "E46": "Fax expired",
        "E49": "Communication error",
        "E51": "Destination fax number format invalid",
        "E52": "High-risk destination fax number",
        "E53": "Destination fax number not allowed",
    }
)


class Direction(StrEnum):
    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"


class FaxState(StrEnum):
    """Canonical states; the wire spelling is chosen by the config."""

    NEW = "NEW"
    INPROGRESS = "INPROGRESS"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    CANCELED = "CANCELED"

    @property
    def final(self) -> bool:
        return self in (FaxState.COMPLETE, FaxState.ERROR, FaxState.CANCELED)


@dataclass(frozen=True)
class Status:
    """A fax's state at one instant: the state, its error code, when it ended."""

    state: FaxState
    error_code: str  # "" while not final; SFAX or Exx once final
    completed_at: float | None  # simulator-clock seconds; None while not final


@dataclass(frozen=True)
class Document:
    document_type: str
    content: bytes


@dataclass
class FaxRecord:
    """Everything the simulator knows about one fax_id."""

    fax_id: str
    direction: Direction
    user_id: str
    created_at: float
    seq: int
    pages: int
    size: int
    app_id: str = ""
    transaction_id: str = ""
    destination_number: str = ""
    to_name: str = ""
    to_company: str = ""
    originating_number: str = "unavailable"
    originating_tsid: str = "unavailable"
    documents: list[Document] = field(default_factory=list)
    fax_options: dict[str, Any] = field(default_factory=dict)
    client_data: dict[str, Any] = field(default_factory=dict)
    outcome: str = SUCCESS_CODE  # SFAX, Exx or NEVER, fixed at creation
    complete_after_s: float = 0.0
    cancel_at: float | None = None
    image: bytes | None = None  # inbound faxes: the received PDF
    image_downloaded: bool = False
    deleted: bool = False
    final_notified: bool = False

    def natural_end(self) -> float | None:
        """When the fax reaches its outcome on its own; None if it never does."""
        if self.outcome == NEVER:
            return None
        return self.created_at + self.complete_after_s

    def status_at(self, now: float) -> Status:
        if self.direction is Direction.INBOUND:
            return Status(FaxState.COMPLETE, "", self.created_at)
        end = self.natural_end()
        cancel_first = self.cancel_at is not None and (end is None or self.cancel_at < end)
        if cancel_first and self.cancel_at is not None and now >= self.cancel_at:
            return Status(FaxState.CANCELED, CANCEL_CODE, self.cancel_at)
        if end is not None and now >= end:
            state = FaxState.COMPLETE if self.outcome == SUCCESS_CODE else FaxState.ERROR
            return Status(state, self.outcome, end)
        if now < self.created_at + self.complete_after_s / 3:
            return Status(FaxState.NEW, "", None)
        return Status(FaxState.INPROGRESS, "", None)


def outcome_for(number: str, outcomes: Mapping[str, str]) -> str:
    """Return the outcome for a destination number: the longest matching suffix wins."""
    digits = "".join(ch for ch in number if ch.isdigit())
    best = ""
    for suffix in outcomes:
        if digits.endswith(suffix) and len(suffix) > len(best):
            best = suffix
    return outcomes[best] if best else SUCCESS_CODE

"""The eFax Enterprise API client: the only package that talks HTTP to eFax.

- ``client.EfaxClient``: tokens, send, status, lists, images, cancel, delete.
- ``models``: the values it takes and returns (its own, never the simulator's).
- ``errors``: the exception tree; transient, outcome-unknown and permanent.
- ``body``, ``wire``, ``classify``, ``tokens``, ``paging``: the streamed send body,
  tolerant reply parsing, error classification, the shared bearer token, and reading
  every page of a list whatever ``pagination-offset`` counts.

Imported by the workers, ``check``/``queue``, ``gateway.app`` and the webhook (to read a
fax id); the only httpx user besides the simulator, which it never imports.
"""

from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxAuthError,
    EfaxConflict,
    EfaxError,
    EfaxForbidden,
    EfaxNotFound,
    EfaxOutcomeUnknown,
    EfaxPermanentError,
    EfaxTransientError,
)
from gateway.efax.models import (
    Destination,
    DocumentSource,
    FaxOptions,
    FaxState,
    FaxStatus,
    FaxSummary,
    ReceivedImage,
    SubmittedFax,
    normalise_status,
    parse_timestamp,
)

__all__ = [
    "Destination",
    "DocumentSource",
    "EfaxAuthError",
    "EfaxClient",
    "EfaxConflict",
    "EfaxError",
    "EfaxForbidden",
    "EfaxNotFound",
    "EfaxOutcomeUnknown",
    "EfaxPermanentError",
    "EfaxTransientError",
    "FaxOptions",
    "FaxState",
    "FaxStatus",
    "FaxSummary",
    "ReceivedImage",
    "SubmittedFax",
    "normalise_status",
    "parse_timestamp",
]

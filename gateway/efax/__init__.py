"""The eFax Enterprise API client: the only package that talks HTTP to eFax.

- ``client.EfaxClient``: tokens, send, status, lists, images, cancel, delete.
- ``models``: the values it takes and returns (its own, never the simulator's).
- ``errors``: the exception tree; transient, outcome-unknown and permanent.
- ``body``, ``wire``, ``classify``, ``tokens``: the streamed send body, tolerant
  reply parsing, error classification and the shared bearer token.
"""

from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxAuthError,
    EfaxConflict,
    EfaxError,
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

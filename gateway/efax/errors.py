"""Errors raised by the eFax client: every failure is decided here, once.

Callers never see an httpx exception.  Each failure of an eFax call is turned into
one of these classes at the edge, with the httpx exception (if any) kept as the
cause (``raise ... from err``)::

    EfaxError                    base; str(e) is a plain sentence without secrets
    ├── EfaxTransientError       try again later (.retry_after: seconds or None)
    │   │                          - network error before the request was sent
    │   │                          - 5xx, 429 (Retry-After honoured), unreadable reply
    │   └── EfaxOutcomeUnknown   only from send_fax: the fax MAY have been created
    │                              (connection lost or timed out after the body went
    │                              out, or a 5xx / unreadable reply to POST /faxes).
    │                              Reconcile with sent_candidates() first.
    └── EfaxPermanentError       do not retry (.status, .error_code)
        │                          - any other 4xx; status 0 = refused by the client
        │                            itself before anything was sent (bad fax id,
        │                            too many documents, ...)
        ├── EfaxAuthError        App ID / API key refused by POST /tokens, or 401
        │                          still there after one token renewal
        ├── EfaxForbidden        403 (another user's fax, or a route this server
        │                          does not have: API gateways answer 403 for those)
        ├── EfaxNotFound         404
        └── EfaxConflict         409 (cancel of a fax that already finished)

The sentence quotes what eFax said, whatever the shape of its error body (the
``{"errors": [...]}`` shape, a flat ``{"error_code", "developer_message"}``,
API Gateway's ``{"message"}`` / ``{"Message"}``, plain text; ``wire.error_details``),
so it reaches logs and reports; never a token, an API key or an Authorization header.
"""

from __future__ import annotations


class EfaxError(Exception):
    """Base class of every error the eFax client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class EfaxTransientError(EfaxError):
    """The call failed for a reason that may go away; try again later.

    ``retry_after`` is the delay in seconds eFax asked for (Retry-After), or None.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.args = (message, retry_after)  # so the error pickles and reprs fully
        self.retry_after = retry_after


class EfaxOutcomeUnknown(EfaxTransientError):
    """POST /faxes may or may not have created faxes; reconcile before resending."""


class EfaxPermanentError(EfaxError):
    """eFax (or the client, with status 0) refused the request; retrying will not help."""

    def __init__(self, message: str, status: int, error_code: str | None = None) -> None:
        super().__init__(message)
        self.args = (message, status, error_code)
        self.status = status
        self.error_code = error_code


class EfaxAuthError(EfaxPermanentError):
    """The App ID / API key pair was refused, or a fresh token was refused too."""


class EfaxForbidden(EfaxPermanentError):
    """eFax refused this path (403): not this user's fax, or no such route on this server."""


class EfaxNotFound(EfaxPermanentError):
    """eFax does not know this fax (404)."""


class EfaxConflict(EfaxPermanentError):
    """The fax's state forbids the request (409), e.g. cancelling a finished fax."""

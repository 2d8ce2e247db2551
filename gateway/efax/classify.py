"""Turning httpx failures and non-2xx replies into the client's errors.

The one place that decides transient versus permanent (see ``errors.py``):

==========================================  =====================  ===================
what happened                               POST /faxes            any other call
==========================================  =====================  ===================
ConnectError/ConnectTimeout/PoolTimeout/    EfaxTransientError     EfaxTransientError
ProxyError (nothing was sent)
any other transport error or timeout,       EfaxOutcomeUnknown     EfaxTransientError
or a reply httpx cannot decode
5xx                                         EfaxOutcomeUnknown     EfaxTransientError
429                                         EfaxTransientError     EfaxTransientError
401 (after one renewal), 403, 404, 409,     EfaxAuthError, EfaxForbidden, EfaxNotFound,
other 4xx                                   EfaxConflict, EfaxPermanentError
3xx (redirects are never followed)          EfaxPermanentError (check the base URL)
==========================================  =====================  ===================

Retry-After (seconds or HTTP-date) is kept on 429 and 5xx.  Sentences quote
eFax's own messages, cut to ``MAX_QUOTE`` characters and passed through the
client's ``redact`` so no secret can leak into a log or a report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx

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
from gateway.efax.wire import error_details, retry_after_s

MAX_QUOTE = 300
NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
Redact = Callable[[str], str]


def transport_error(err: httpx.RequestError, route: str, *, sending_fax: bool) -> EfaxError:
    """The error for an httpx failure during ``route`` (transport, or an undecodable reply)."""
    kind = type(err).__name__
    if isinstance(err, httpx.UnsupportedProtocol):
        return EfaxPermanentError(
            f"The eFax base URL is not an http(s) URL ({kind}); check efax.base_url.", status=0
        )
    if isinstance(err, NOTHING_SENT):
        return EfaxTransientError(f"Could not reach eFax for {route} ({kind}); nothing was sent.")
    if sending_fax:
        return EfaxOutcomeUnknown(
            f"The connection to eFax failed after the fax was sent ({kind}); eFax may have "
            "accepted it. Look for it in the sent list (sent_candidates) before sending it again."
        )
    return EfaxTransientError(f"The connection to eFax failed during {route} ({kind}).")


def status_error(response: httpx.Response, route: str, *, sending_fax: bool, redact: Redact) -> EfaxError:
    """The error for a non-2xx reply to ``route``."""
    status = response.status_code
    code, text = error_details(response.content, response.headers.get("content-type", ""))
    said = _quote(text, redact)
    label = f"{status} {code}" if code else str(status)
    if status == 429 or status >= 500:
        retry_after = retry_after_s(response.headers.get("retry-after"), datetime.now(UTC))
        if status == 429:
            return EfaxTransientError(
                f"eFax is rate-limiting requests ({route}, {label}){said}.", retry_after
            )
        if sending_fax:
            return EfaxOutcomeUnknown(
                f"eFax answered the fax submission with a server error ({label}){said}; "
                "it may have accepted it. Look for it in the sent list (sent_candidates) before "
                "sending it again.",
                retry_after,
            )
        return EfaxTransientError(f"eFax had a server error on {route} ({label}){said}.", retry_after)
    if 300 <= status < 400:
        where = response.headers.get("location", "elsewhere")
        return EfaxPermanentError(
            f"eFax redirected {route} to {_quote_plain(where, redact)} ({status}); redirects "
            "are not followed, so check efax.base_url.",
            status,
            code,
        )
    if status == 401:
        return EfaxAuthError(
            f"eFax refused the access token for {route} even after renewing it ({label}){said}.",
            status,
            code,
        )
    if status == 403:
        return EfaxForbidden(f"eFax refused {route} ({label}){said}.", status, code)
    if status == 404:
        return EfaxNotFound(f"eFax does not know this fax ({route}, {label}){said}.", status, code)
    if status == 409:
        return EfaxConflict(f"eFax refused {route} because of the fax's state ({label}){said}.", status, code)
    return EfaxPermanentError(f"eFax refused {route} ({label}){said}.", status, code)


def token_error(response: httpx.Response, *, redact: Redact) -> EfaxError:
    """The error for a non-2xx reply to POST /tokens."""
    status = response.status_code
    if status in (400, 401, 403):
        code, text = error_details(response.content, response.headers.get("content-type", ""))
        label = f"{status} {code}" if code else str(status)
        return EfaxAuthError(
            f"eFax refused the App ID and API key ({label}){_quote(text, redact)}; "
            "check efax.app_id and efax.api_key.",
            status,
            code,
        )
    error = status_error(response, "POST /tokens", sending_fax=False, redact=redact)
    if isinstance(error, EfaxNotFound):  # not "this fax": the URL is wrong
        return EfaxPermanentError(
            f"eFax has no token endpoint at this address ({status}); check efax.base_url.",
            status,
            error.error_code,
        )
    return error


def _quote(text: str | None, redact: Redact) -> str:
    return f': "{_quote_plain(text, redact)}"' if text else ""


def _quote_plain(text: str | None, redact: Redact) -> str:
    clean = redact(" ".join((text or "").split()))
    return clean if len(clean) <= MAX_QUOTE else clean[: MAX_QUOTE - 1] + "…"

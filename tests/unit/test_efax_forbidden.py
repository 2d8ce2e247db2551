"""A 403 is ``EfaxForbidden``: another user's fax, or a route the server does not have."""

from __future__ import annotations

import httpx

from gateway.efax.classify import status_error
from gateway.efax.errors import EfaxForbidden, EfaxNotFound, EfaxPermanentError


def test_403_is_forbidden_and_still_permanent_with_its_text() -> None:
    response = httpx.Response(403, json={"message": "Missing Authentication Token"})
    error = status_error(response, "GET /faxes/{id}/transmission-details", sending_fax=False, redact=str)
    assert isinstance(error, EfaxForbidden) and isinstance(error, EfaxPermanentError)
    assert not isinstance(error, EfaxNotFound)
    assert error.status == 403
    assert "Missing Authentication Token" in str(error)

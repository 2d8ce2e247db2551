"""Was the sender verified upstream? ``Authentication-Results`` (RFC 8601), read with authres.

For a gateway that takes mail relayed from the internet, ``policy.require_authentication_results``
asks for ``dmarc=pass``, ``spf=pass`` or either, as recorded by the upstream MTA named
in ``policy.authserv_id``. Only headers carrying that authserv-id count: the upstream
MTA must remove headers with its own id that arrive from outside (RFC 8601 section 5;
Postfix with OpenDMARC, rspamd and Exchange do). A pass counts only for the mail's own
identities: DMARC's ``header.from`` must be the From domain, SPF's ``smtp.mailfrom`` the
envelope sender's domain (when the MTA names them). The domain that counts is the one a
DMARC evaluator takes, the RFC5322.From domain (``from_domain``, as
``gateway.core.senders`` reads it): an SPF pass proves the envelope sender's domain only,
so it counts only when that domain is aligned with the From domain (the same, or one a
subdomain of the other, as DMARC's relaxed alignment) -- an SPF pass for
``evil.example`` says nothing about ``From: alice@example.com``. A ``fail`` next to a
``pass`` for the same method is treated as a fail.

Pure: header values in, ``None`` (verified) or the ``550 5.7.1`` reply out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import authres

Requirement = Literal["", "dmarc", "spf", "dmarc_or_spf"]

_PROPERTY = {"dmarc": ("header", "from"), "spf": ("smtp", "mailfrom")}


def _domain(value: str) -> str:
    return value.rpartition("@")[2].strip().strip("<>").lower().rstrip(".")


def _aligned(one: str, other: str) -> bool:
    """DMARC's relaxed alignment, without a public-suffix list: the same domain, or one
    a subdomain of the other (``mail.example.com`` and ``example.com``)."""
    if not one or not other:
        return False
    return one == other or one.endswith("." + other) or other.endswith("." + one)


def _results(headers: Iterable[str], authserv_id: str) -> list[tuple[str, str, dict[tuple[str, str], str]]]:
    """(method, result, {(ptype, property): value}) from the headers of ``authserv_id``."""
    found = []
    for value in headers:
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(" ".join(str(value).split()))
        except authres.AuthResError:
            continue
        if str(parsed.authserv_id).lower() != authserv_id.lower():
            continue
        for result in parsed.results:
            props = {(str(p.type).lower(), str(p.name).lower()): str(p.value) for p in result.properties}
            found.append((str(result.method).lower(), str(result.result).lower(), props))
    return found


def verify(
    headers: Iterable[str],
    *,
    requirement: Requirement,
    authserv_id: str,
    from_domain: str,
    mailfrom_domain: str,
) -> str | None:
    """None when the requirement holds; otherwise the SMTP reply saying what was found."""
    if not requirement:
        return None
    methods = ["dmarc", "spf"] if requirement == "dmarc_or_spf" else [requirement]
    results = _results(headers, authserv_id)
    own = {"dmarc": _domain(from_domain), "spf": _domain(mailfrom_domain)}
    seen: list[str] = []
    for method in methods:
        passed = failed = False
        for name, result, props in results:
            if name != method:
                continue
            seen.append(f"{name}={result}")
            named = props.get(_PROPERTY[method])
            if named is not None and _domain(named) != own[method]:
                continue  # about another domain: proves nothing for this mail
            if method == "spf" and not _aligned(own["spf"], own["dmarc"]):
                continue  # the envelope's domain passed, not the From domain people read
            if result == "pass":
                passed = True
            elif result in ("fail", "softfail", "permerror", "temperror", "none", "neutral", "policy"):
                failed = True
        if passed and not failed:
            return None
    wanted = " or ".join(f"{m}=pass" for m in methods)
    found = (
        f"it reported {', '.join(dict.fromkeys(seen))}"
        if seen
        else f"no Authentication-Results from {authserv_id} says so"
    )
    return (
        f"550 5.7.1 This gateway takes mail from outside only when {authserv_id} verified its "
        f"sender ({wanted}); {found}."
    )

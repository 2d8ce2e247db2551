"""EfaxClient: the gateway's only door to the eFax Enterprise API.

Consumes: App ID, API key, base URL; values from ``models`` (destinations,
streamed documents, options).  Produces: ``models`` values, or an ``errors``
exception whose class says what the caller should do (retry, reconcile, give up).
Touches: eFax over HTTPS with httpx; nothing else.

- One client per App ID per process: it holds the one bearer token
  (``tokens.TokenSource``), renews it ``token_refresh_margin_s`` (default 300 s)
  before expiry and once on a 401, then repeats the call once.
- Every fax call sends ``Authorization: Bearer``, ``user-id`` and
  ``Accept: application/json``.  Redirects are never followed.  Timeouts are
  explicit: connect (and pool) ``connect_timeout_s`` 10 s, read ``read_timeout_s``
  60 s, write ``write_timeout_s`` 120 s.  The client never retries on its own
  except after a 401: backoff belongs to the caller.
- POST /faxes streams its body (``body.py``); eFax has no idempotency key, so a
  submission whose fate is unknown raises ``EfaxOutcomeUnknown``: reconcile with
  ``sent_candidates(client_reference_id=...)`` before sending again.
- Status reads (``transmission_details``): ``GET /faxes/{id}/transmission-details``;
  when that path is refused as unknown (404, or 403 as API gateways answer for routes
  they lack), the other spelling ``transmission-detail``; when both are refused,
  ``GET /faxes/{id}/metadata`` (``FaxStatus.source`` says which answered). The working
  spelling is kept; when neither does, metadata alone is used for
  ``DETAILS_REPROBE_S`` (3600 s) before the details paths are tried again.
- Lists read every page, each fax once, whether ``pagination-offset`` counts records
  or pages (``paging``); the reading found is kept for later lists.
- ``calls`` counts requests by route ("POST /tokens", "GET /faxes/{id}/metadata");
  ``on_call``, when set, is called once per request with (route, status code or
  error name, seconds) so the gateway's metrics can time every call.
- Logs one DEBUG record per request (route, status, milliseconds, fax id);
  never a token, key or Authorization header.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from gateway.efax import paging, wire
from gateway.efax.body import DocumentSizeMismatch, SendBody, build_send_body
from gateway.efax.classify import status_error, token_error, transport_error
from gateway.efax.errors import (
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
    FaxStatus,
    FaxSummary,
    ReceivedImage,
    SubmittedFax,
    check_fax_id,
)
from gateway.efax.tokens import TokenSource

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME_S = 86400.0
MAX_PAGE_SIZE = 100  # eFax returns at most 100 faxes per list call
IMAGE_FORMATS = frozenset({"PDF", "TIFF"})
DETAILS_SUFFIXES = ("transmission-details", "transmission-detail")  # plural per FAXBOT/CLONE
DETAILS_REPROBE_S = 3600.0  # metadata only for this long once no details path answered
NO_SUCH_PATH = frozenset({403, 404})  # how servers refuse a path they lack (API gateways: 403)

T = TypeVar("T")
# "Bearer x" / "Basic x" values and JWTs, whoever they belong to
_CREDENTIAL_SHAPES = re.compile(
    r"(?<=\bBearer )\S+|(?<=\bBasic )\S+|\beyJ[\w-]+\.[\w-]+\.[\w-]*", re.IGNORECASE
)
# an echoed header or field: "Authorization: Token x", "api_key=x", '"secret_id": "x"'
_CREDENTIAL_FIELDS = re.compile(
    r"""(\bauthorization["']?\s*[:=]\s*["']?)[^"',;&}\r\n]+"""  # the scheme and its value
    r"""|(\b(?:api[_-]?key|access[_-]?token|secret[_-]?id|client[_-]?secret|password)"""
    r"""["']?\s*[:=]\s*["']?)(?!\[redacted\])[^\s"',;&}]+""",
    re.IGNORECASE,
)


class EfaxClient:
    """Async client for one eFax App ID.  Use as ``async with EfaxClient(...) as c``."""

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        api_key: str,
        connect_timeout_s: float = 10,
        read_timeout_s: float = 60,
        write_timeout_s: float = 120,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        token_refresh_margin_s: float = 300,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(
                connect=connect_timeout_s,
                read=read_timeout_s,
                write=write_timeout_s,
                pool=connect_timeout_s,
            ),
            headers={"Accept": "application/json", "User-Agent": "fax-gateway"},
        )
        credentials = base64.b64encode(f"{app_id}:{api_key}".encode()).decode("ascii")
        self._basic = f"Basic {credentials}"
        self._secrets = tuple(s for s in (api_key, credentials) if len(s) >= 4)
        self._tokens = TokenSource(self._fetch_token, clock=clock, margin_s=token_refresh_margin_s)
        self._calls: Counter[str] = Counter()
        self._details_suffixes = DETAILS_SUFFIXES
        self._clock = clock
        self._metadata_only_until = float("-inf")
        self._offset_unit: paging.OffsetUnit | None = None
        self.on_call: Callable[[str, str, float], None] | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def calls(self) -> Counter[str]:
        """Requests made so far, by route (live counter)."""
        return self._calls

    # -- account -----------------------------------------------------------------

    async def health(self) -> bool:
        """True when GET /health says ``"status": "UP"``; False on any failure."""
        try:
            response = await self._send(self._http.build_request("GET", "/health"), "GET /health")
            if response.status_code in (401, 403):  # in case production wants a token
                token = await self._tokens.get()
                request = self._http.build_request(
                    "GET", "/health", headers={"Authorization": f"Bearer {token}"}
                )
                response = await self._send(request, "GET /health")
            data = wire.load_json(response.content) if response.is_success else None
        except (EfaxError, wire.UnreadableReply):
            return False
        return isinstance(data, dict) and str(data.get("status", "")).upper() == "UP"

    async def check_credentials(self) -> None:
        """Fetch a new token now; raises EfaxAuthError or EfaxTransientError."""
        await self._tokens.force()

    async def ready_to_send(self) -> None:
        """Have a valid token at hand (fetching one only if needed), so that a send that
        follows makes no call but its ``POST /faxes``; raises like ``check_credentials``."""
        await self._tokens.get()

    # -- outbound ----------------------------------------------------------------

    async def send_fax(
        self,
        *,
        user_id: str,
        destinations: Sequence[Destination],
        documents: Sequence[DocumentSource],
        options: FaxOptions,
        client_reference_id: str,
        transaction_id: str,
    ) -> list[SubmittedFax]:
        """POST /faxes: one SubmittedFax per destination, in eFax's order.

        Raises EfaxOutcomeUnknown when the fax may have been created without the
        reply reaching us.  Exceptions raised by a DocumentSource propagate
        unchanged: the body is then incomplete, so eFax cannot have processed it.
        """
        body = build_send_body(destinations, documents, options, client_reference_id)
        headers = {"transaction-id": _header("transaction id", transaction_id, allow_empty=True)}
        try:
            response = await self._call(
                "POST", "POST /faxes", "/faxes", user_id=user_id, body=body, headers=headers
            )
        except DocumentSizeMismatch as err:
            raise EfaxPermanentError(
                f"{err} The request was cut off, so eFax did not receive the fax.", status=0
            ) from err
        return self._read(
            response,
            "POST /faxes",
            lambda body: wire.to_submitted(wire.load_json(body)),
            sending_fax=True,
        )

    async def sent_candidates(
        self, *, user_id: str, client_reference_id: str, since: float, max_pages: int = 10
    ) -> list[FaxSummary]:
        """Sent faxes that may be the one sent with ``client_reference_id`` at about ``since``.

        Nothing about the sent list is trusted alone (efax-api.md 4): ``search_text`` may
        search the client data, or be ignored, or match nothing; items may or may not carry
        the client reference; faxes in progress may or may not be listed. So three reads,
        each fax once in the answer: the search for the reference; the list unfiltered, at
        most ``max_pages`` pages (in-progress faxes, where listed); and the faxes completed
        since ``since`` (finished faxes past those pages). The caller decides what matches
        (``gateway.core.reconcile``).
        """
        if not client_reference_id:
            raise ValueError("client_reference_id must not be empty")
        after = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        reads: tuple[tuple[dict[str, str], int], ...] = (
            ({"search_text": client_reference_id}, paging.MAX_PAGES),
            ({}, max_pages),
            ({"min_completed_timestamp": after}, paging.MAX_PAGES),
        )
        found: dict[str, FaxSummary] = {}
        for params, pages in reads:
            listed = await self._all_pages(
                "GET /faxes/sent",
                "/faxes/sent",
                user_id=user_id,
                params=params,
                page_size=MAX_PAGE_SIZE,
                max_pages=pages,
            )
            for fax in listed:
                found.setdefault(fax.fax_id, fax)
        return list(found.values())

    async def transmission_details(self, *, user_id: str, fax_id: str) -> FaxStatus:
        """Live state of a sent fax: the details path in either spelling, else metadata.

        A details path refused as unknown (404 or 403) is tried in the other spelling;
        when both are refused, ``GET /faxes/{id}/metadata`` answers, and its own
        refusal is raised (EfaxNotFound: eFax does not know this fax).
        """
        fax_id = check_fax_id(fax_id)
        if self._clock() < self._metadata_only_until:
            return await self._status_from_metadata(user_id, fax_id)
        first, second = self._details_suffixes
        response = await self._details_or_none(first, user_id, fax_id)
        if response is None:
            response = await self._details_or_none(second, user_id, fax_id)
            if response is not None:
                self._details_suffixes = (second, first)  # this server spells it that way
        if response is not None:
            return self._read(
                response,
                "GET /faxes/{id}/transmission-details",
                lambda body: wire.to_status(_fax_object(body), fax_id),
            )
        status = await self._status_from_metadata(user_id, fax_id)
        self._metadata_only_until = self._clock() + DETAILS_REPROBE_S
        log.info(
            "eFax answers no transmission-details path; reading metadata instead",
            extra={"action": "efax.details", "fax_id": fax_id},
        )
        return status

    async def _details_or_none(self, suffix: str, user_id: str, fax_id: str) -> httpx.Response | None:
        """The details reply, or None when this path is refused as unknown (403, 404)."""
        try:
            return await self._details(suffix, user_id, fax_id)
        except EfaxPermanentError as err:
            if err.status in NO_SUCH_PATH:
                return None
            raise

    async def _status_from_metadata(self, user_id: str, fax_id: str) -> FaxStatus:
        route = "GET /faxes/{id}/metadata"
        response = await self._call("GET", route, f"/faxes/{fax_id}/metadata", user_id=user_id)
        return self._read(
            response, route, lambda body: wire.to_status(_fax_object(body), fax_id, source="metadata")
        )

    async def metadata(self, *, user_id: str, fax_id: str) -> FaxSummary:
        """The final summary of one sent or received fax."""
        fax_id = check_fax_id(fax_id)
        route = "GET /faxes/{id}/metadata"
        response = await self._call("GET", route, f"/faxes/{fax_id}/metadata", user_id=user_id)
        return self._read(response, route, lambda body: wire.to_summary(_fax_object(body), fax_id))

    async def cancel(self, *, user_id: str, fax_id: str) -> Literal["accepted", "conflict"]:
        """Ask eFax to cancel; "accepted" is not "cancelled" (check metadata later)."""
        fax_id = check_fax_id(fax_id)
        route = "POST /faxes/{id}/cancel"
        try:
            await self._call("POST", route, f"/faxes/{fax_id}/cancel", user_id=user_id)
        except EfaxConflict:
            return "conflict"
        return "accepted"

    # -- inbound -----------------------------------------------------------------

    async def list_received(
        self,
        *,
        user_id: str,
        image_downloaded: bool | None = False,
        offset: int = 0,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[FaxSummary]:
        """One page of received faxes (pagination-offset/-limit request headers, as given)."""
        page = await self._page(
            "GET /faxes/received",
            "/faxes/received",
            user_id=user_id,
            params=_downloaded_param(image_downloaded),
            offset=offset,
            limit=limit,
        )
        return page.faxes

    async def iter_received(
        self, *, user_id: str, image_downloaded: bool | None = False, page_size: int = 100
    ) -> AsyncIterator[FaxSummary]:
        """Every received fax matching the filter, each once.

        All pages are read before the first fax is yielded, so marking or deleting
        faxes while iterating cannot shift the offsets and skip some.
        """
        faxes = await self._all_pages(
            "GET /faxes/received",
            "/faxes/received",
            user_id=user_id,
            params=_downloaded_param(image_downloaded),
            page_size=page_size,
        )
        for fax in faxes:
            yield fax

    async def fetch_image(self, *, user_id: str, fax_id: str, desired_format: str = "PDF") -> ReceivedImage:
        """The fax image, decoded; ``format`` is sniffed from the bytes."""
        fax_id = check_fax_id(fax_id)
        wanted = desired_format.strip().upper()
        if wanted not in IMAGE_FORMATS:
            raise ValueError(f"desired_format must be PDF or TIFF, not {desired_format!r}")
        route = "GET /faxes/{id}/image"
        response = await self._call(
            "GET",
            route,
            f"/faxes/{fax_id}/image",
            user_id=user_id,
            params={"desired_format": wanted},
        )
        return self._read(response, route, lambda body: wire.to_image(wire.load_json(body), fax_id))

    async def mark_downloaded(self, *, user_id: str, fax_id: str, downloaded: bool = True) -> None:
        """PATCH the fax's image_downloaded flag."""
        fax_id = check_fax_id(fax_id)
        await self._call(
            "PATCH",
            "PATCH /faxes/{id}/metadata",
            f"/faxes/{fax_id}/metadata",
            user_id=user_id,
            json_body={"image_downloaded": downloaded},
        )

    async def delete_fax(self, *, user_id: str, fax_id: str) -> None:
        """DELETE the fax; one that is already gone (404) counts as deleted."""
        fax_id = check_fax_id(fax_id)
        try:
            await self._call("DELETE", "DELETE /faxes/{id}", f"/faxes/{fax_id}", user_id=user_id)
        except EfaxNotFound:
            log.debug("fax already gone", extra={"action": "efax.delete", "fax_id": fax_id})

    # -- plumbing ----------------------------------------------------------------

    async def _details(self, suffix: str, user_id: str, fax_id: str) -> httpx.Response:
        route = f"GET /faxes/{{id}}/{suffix}"
        return await self._call("GET", route, f"/faxes/{fax_id}/{suffix}", user_id=user_id)

    async def _all_pages(
        self,
        route: str,
        path: str,
        *,
        user_id: str,
        params: dict[str, str],
        page_size: int,
        max_pages: int = paging.MAX_PAGES,
    ) -> list[FaxSummary]:
        """Every page, each fax once, whatever pagination-offset counts (``paging``)."""

        async def fetch(offset: int) -> paging.Page:
            return await self._page(
                route, path, user_id=user_id, params=params, offset=offset, limit=page_size
            )

        faxes, unit = await paging.read_all(
            fetch, limit=page_size, unit=self._offset_unit, route=route, max_pages=max_pages
        )
        self._offset_unit = unit or self._offset_unit
        return faxes

    async def _page(
        self,
        route: str,
        path: str,
        *,
        user_id: str,
        params: dict[str, str],
        offset: int,
        limit: int,
    ) -> paging.Page:
        """One list page: the usable faxes, how many items eFax returned, first_record."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1-{MAX_PAGE_SIZE}, not {limit}")
        if offset < 0:
            raise ValueError(f"offset must not be negative, not {offset}")
        headers = {"pagination-offset": str(offset), "pagination-limit": str(limit)}
        response = await self._call("GET", route, path, user_id=user_id, params=params, headers=headers)
        items, first_record = self._read(response, route, _list_reply)
        faxes = []
        for item in items:
            try:
                parsed = wire.read_model(wire.WireFax, item)
                faxes.append(wire.to_summary(parsed, check_fax_id(parsed.fax_id or "")))
            except (wire.UnreadableReply, EfaxPermanentError):
                log.warning(
                    "skipped a listed fax without a usable fax_id",
                    extra={"action": "efax.list", "route": route},
                )
        return paging.Page(faxes, len(items), first_record)

    async def _call(
        self,
        method: str,
        route: str,
        path: str,
        *,
        user_id: str,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        body: SendBody | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One authenticated call; renews the token and repeats once on 401."""
        sending_fax = body is not None
        base = {"user-id": _header("user id", user_id), **(headers or {})}
        if body is not None:
            base["Content-Type"] = "application/json"
            base["Content-Length"] = str(body.content_length)
        parts = path.split("/")
        fax_id = parts[2] if len(parts) > 2 and len(parts[2]) == 36 else None
        for attempt in (1, 2):
            token = await self._tokens.get()
            request = self._http.build_request(
                method,
                path,
                params=params,
                json=json_body,
                content=body.stream() if body is not None else None,
                headers={**base, "Authorization": f"Bearer {token}"},
            )
            response = await self._send(request, route, sending_fax=sending_fax, fax_id=fax_id)
            if response.status_code == 401 and attempt == 1:
                await self._tokens.renew(token)
                continue
            if not response.is_success:
                raise status_error(response, route, sending_fax=sending_fax, redact=self._redact)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        request: httpx.Request,
        route: str,
        *,
        sending_fax: bool = False,
        fax_id: str | None = None,
    ) -> httpx.Response:
        """Send one request, count it, log it, and translate transport errors."""
        self._calls[route] += 1
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self._http.send(request)
            outcome = str(response.status_code)
            return response
        except httpx.RequestError as err:
            outcome = type(err).__name__
            raise transport_error(err, route, sending_fax=sending_fax) from err
        finally:
            elapsed = time.perf_counter() - started
            if self.on_call is not None:
                self.on_call(route, outcome, elapsed)
            elapsed_ms = round(elapsed * 1000)
            log.debug(
                "eFax %s -> %s in %d ms",
                route,
                outcome,
                elapsed_ms,
                extra={
                    "action": "efax.call",
                    "route": route,
                    "status": outcome,
                    "duration_ms": elapsed_ms,
                    "fax_id": fax_id,
                },
            )

    async def _fetch_token(self) -> tuple[str, float]:
        """POST /tokens with Basic auth; (access_token, lifetime in seconds)."""
        request = self._http.build_request(
            "POST",
            "/tokens",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": self._basic},
        )
        response = await self._send(request, "POST /tokens")
        if not response.is_success:
            raise token_error(response, redact=self._redact)
        token = self._read(
            response,
            "POST /tokens",
            lambda body: wire.read_model(wire.WireToken, wire.load_json(body)),
        )
        if not token.access_token:
            raise EfaxTransientError("eFax's token reply carried no access token.")
        lifetime = token.expires_in
        if lifetime is None or lifetime <= 0:
            lifetime = int(DEFAULT_TOKEN_LIFETIME_S)
        return token.access_token, float(lifetime)

    def _read(
        self,
        response: httpx.Response,
        route: str,
        parse: Callable[[bytes], T],
        *,
        sending_fax: bool = False,
    ) -> T:
        """Parse a 2xx body; an unreadable one is transient (or unknown, for a send)."""
        try:
            return parse(response.content)
        except wire.UnreadableReply as err:
            if sending_fax:
                raise EfaxOutcomeUnknown(
                    f"eFax accepted the fax ({response.status_code}) but its reply could not "
                    f"be read ({err}). Look for it in the sent list (sent_candidates) before "
                    "sending it again."
                ) from err
            raise EfaxTransientError(f"eFax's reply to {route} could not be read ({err}).") from err

    def _redact(self, text: str) -> str:
        """Remove our key and token, and anything shaped like a credential."""
        token = self._tokens.current
        for secret in (*self._secrets, *((token,) if token else ())):
            text = text.replace(secret, "[redacted]")
        text = _CREDENTIAL_SHAPES.sub("[redacted]", text)
        return _CREDENTIAL_FIELDS.sub(lambda m: f"{m.group(1) or m.group(2)}[redacted]", text)


def _header(name: str, value: str, *, allow_empty: bool = False) -> str:
    """A caller-supplied header value, refused if it cannot travel in HTTP."""
    if (not value and not allow_empty) or not (value.isascii() and value.isprintable()):
        raise EfaxPermanentError(
            f"The {name} is empty or has characters that cannot go in an HTTP header; "
            "nothing was sent to eFax.",
            status=0,
        )
    return value


def _list_reply(body: bytes) -> tuple[list[object], int | None]:
    data = wire.load_json(body)
    return wire.fax_list(data), wire.page_first_record(data)


def _fax_object(body: bytes) -> wire.WireFax:
    return wire.read_model(wire.WireFax, wire.load_json(body))


def _downloaded_param(image_downloaded: bool | None) -> dict[str, str]:
    return {} if image_downloaded is None else {"image_downloaded": str(image_downloaded).lower()}

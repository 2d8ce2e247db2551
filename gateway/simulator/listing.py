"""``GET /faxes/sent`` and ``GET /faxes/received``: filters and paging.

Request headers ``pagination-offset`` (record index, 0-based, default 0) and
``pagination-limit`` (default 100, values above 100 are cut to 100) select the
page; the faxes are ordered oldest first by creation, ties impossible.

Query filters (all optional, combined with AND):

- ``image_downloaded``: ``true`` / ``false``.
- ``min_completed_timestamp`` / ``max_completed_timestamp``: inclusive bounds,
  parsed leniently (``Z``, ``+00:00``, ``+0000``, any fraction, no offset =
  UTC, and a ``+`` that arrived as a space). Faxes not yet final never match a
  bound.
- ``search_text``: case-insensitive substring of any metadata value (client
  tracking data included) or of the request's ``transaction-id``.
- ``transmission_status``: compared with spaces and underscores removed
  (``IN PROGRESS`` = ``INPROGRESS``; ``COMPLETED`` = ``COMPLETE``).

Reply ``{"faxes": [metadata, ...]}``, plus ``first_record`` / ``last_record``
(1-based; both 0 on an empty page) when ``config.list_page_info`` is on. A bad
header or filter value is a 400 with the eFax error shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.faxes import FaxRecord, Status
from gateway.simulator.views import metadata

MAX_PAGE = 100

_SPACE_FOR_PLUS = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ][0-9:.]+) (\d{2}:?\d{2})$")
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


class ListError(ValueError):
    def __init__(self, element_name: str, message: str) -> None:
        super().__init__(message)
        self.element_name = element_name


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an ISO-8601 timestamp; raises ValueError when unreadable."""
    value = text.strip()
    spaced = _SPACE_FOR_PLUS.match(value)
    if spaced:
        value = f"{spaced.group(1)}+{spaced.group(2)}"
    value = _LONG_FRACTION.sub(r"\1", value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class ListQuery:
    offset: int = 0
    limit: int = MAX_PAGE
    image_downloaded: bool | None = None
    min_completed: float | None = None
    max_completed: float | None = None
    search_text: str | None = None
    transmission_status: str | None = None


def _squash(text: str) -> str:
    squashed = text.upper().replace(" ", "").replace("_", "")
    return "COMPLETE" if squashed == "COMPLETED" else squashed


def parse_list_query(headers: Mapping[str, str], params: Mapping[str, str]) -> ListQuery:
    """Read paging headers and filter parameters; raises ListError on a bad value."""
    numbers: dict[str, int] = {}
    for name, default in (("pagination-offset", 0), ("pagination-limit", MAX_PAGE)):
        raw = headers.get(name, "").strip()
        try:
            numbers[name] = int(raw) if raw else default
        except ValueError:
            raise ListError(name, f"{name} must be an integer") from None
    if numbers["pagination-offset"] < 0 or numbers["pagination-limit"] < 1:
        raise ListError("pagination", "offset must be >= 0 and limit >= 1")
    downloaded: bool | None = None
    if "image_downloaded" in params:
        flag = params["image_downloaded"].strip().lower()
        if flag not in ("true", "false"):
            raise ListError("image_downloaded", "image_downloaded must be true or false")
        downloaded = flag == "true"
    bounds: dict[str, float | None] = {}
    for name in ("min_completed_timestamp", "max_completed_timestamp"):
        try:
            bounds[name] = parse_timestamp(params[name]) if name in params else None
        except ValueError:
            raise ListError(name, f"{name} must be an ISO-8601 timestamp") from None
    status = params.get("transmission_status")
    return ListQuery(
        offset=numbers["pagination-offset"],
        limit=min(numbers["pagination-limit"], MAX_PAGE),
        image_downloaded=downloaded,
        min_completed=bounds["min_completed_timestamp"],
        max_completed=bounds["max_completed_timestamp"],
        search_text=params.get("search_text") or None,
        transmission_status=_squash(status) if status else None,
    )


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def _matches(query: ListQuery, fax: FaxRecord, status: Status) -> bool:
    if query.image_downloaded is not None and fax.image_downloaded != query.image_downloaded:
        return False
    done = status.completed_at
    if query.min_completed is not None and (done is None or done < query.min_completed):
        return False
    return query.max_completed is None or (done is not None and done <= query.max_completed)


def _text_matches(query: ListQuery, fax: FaxRecord, meta: dict[str, Any], search_mode: str) -> bool:
    if query.transmission_status is not None and query.transmission_status != _squash(
        str(meta["transmission_data"]["transmission_status"])
    ):
        return False
    if query.search_text is not None and search_mode != "ignored":
        if search_mode == "nothing":
            return False
        needle = query.search_text.lower()
        haystack = [*_strings(meta), fax.transaction_id, *_strings(fax.client_data)]
        return any(needle in text.lower() for text in haystack)
    return True


def list_reply(
    faxes: list[FaxRecord], query: ListQuery, now: float, config: SimulatorConfig
) -> dict[str, Any]:
    """Filter, page and render a list of faxes (already in listing order)."""
    textual = query.search_text is not None or query.transmission_status is not None
    selected: list[tuple[FaxRecord, Status]] = []
    for fax in faxes:
        status = fax.status_at(now)
        if not _matches(query, fax, status):
            continue
        if not config.list_in_progress and status.completed_at is None:
            continue
        if textual and not _text_matches(query, fax, metadata(fax, status, config), config.search_mode):
            continue
        selected.append((fax, status))
    page = [
        metadata(fax, status, config) for fax, status in selected[query.offset : query.offset + query.limit]
    ]
    if not config.list_client_data:
        for item in page:
            item.pop("client_tracking_data", None)
    reply: dict[str, Any] = {"faxes": page}
    if config.list_page_info:
        reply["first_record"] = query.offset + 1 if page else 0
        reply["last_record"] = query.offset + len(page) if page else 0
    return reply

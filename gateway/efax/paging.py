"""Reading every page of an eFax list, whatever ``pagination-offset`` counts.

efax-api.md §4.2: the request header ``pagination-offset`` may count records (0, 100,
200, ...) or pages (0, 1, 2, ... or 1, 2, 3, ...); which one is UNCONFIRMED. Reading it
the wrong way would silently skip every fax past the first page, so the reading is
found out, never assumed (``read_all``):

1. The first page is read at offset 0. A short page (fewer items than the limit) ends
   the list.
2. Unless the reading is already known, the next read is at offset 1 (the probe),
   judged by ``judge``:

   - by ``first_record`` when the reply carries it (UNCONFIRMED, 1-based): 2 means
     records, limit + 1 means pages counted from 0, 1 means pages counted from 1;
   - otherwise by fax ids: mostly the first page's ids again (shifted by one) means
     records; mostly new ids means pages counted from 0; exactly the first page again
     means offsets 0 and 1 both name the first page (pages counted from 1) or the
     server ignores the offset: offset 2 decides (new ids: pages from 1; the first page
     a third time: the offset is ignored, which is logged, and the list ends there);
   - an empty probe ends the list (nothing more under any reading).

3. Then on with that reading: records advance by the number of items returned, pages
   by one. The list ends on a short page, on a page with no new fax id (logged: the
   server repeats itself) or after ``max_pages`` pages (logged; default
   ``MAX_PAGES`` 1000). Each fax comes once, in eFax's order.

A list that changes between reads (a fax arriving at the top) shifts the records by
one or two: ids are compared by majority, and each fax id is kept once. Only a list
that changes between every two reads looks like an ignored offset; that ends with the
warning, never silently.

The reading found is returned so the client keeps it and later lists skip the probe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from gateway.efax.models import FaxSummary

log = logging.getLogger(__name__)

MAX_PAGES = 1000


class OffsetUnit(StrEnum):
    """What this server's ``pagination-offset`` counts."""

    RECORDS = "records"  # 0, 100, 200, ...
    PAGES_FROM_0 = "pages from 0"  # 0, 1, 2, ...
    PAGES_FROM_1 = "pages from 1"  # 1, 2, 3, ... (0 also gives the first page)


@dataclass(frozen=True)
class Page:
    """One list reply: the usable faxes, how many items eFax returned, its first_record."""

    faxes: list[FaxSummary]
    count: int
    first_record: int | None = None


Verdict = OffsetUnit | Literal["repeat", "end"]
FetchPage = Callable[[int], Awaitable[Page]]


def next_offset(unit: OffsetUnit, offset: int, count: int) -> int:
    """The offset of the page after the one read at ``offset`` (``count`` items)."""
    if unit is OffsetUnit.RECORDS:
        return offset + count
    if unit is OffsetUnit.PAGES_FROM_0:
        return offset + 1
    return max(offset, 1) + 1


def judge(first_ids: Sequence[str], probe: Page, offset: int, limit: int) -> Verdict:
    """What a read at ``offset`` (1 or 2) says about the reading, after a full first page."""
    if probe.count == 0:
        return "end"
    first_record = probe.first_record
    if first_record:
        by_record = {
            offset + 1: OffsetUnit.RECORDS,
            offset * limit + 1: OffsetUnit.PAGES_FROM_0,
            (offset - 1) * limit + 1: OffsetUnit.PAGES_FROM_1,
        }
        if offset == 2 and first_record == 1:
            return "repeat"  # the first page a third time: the offset is ignored
        if first_record in by_record:
            return by_record[first_record]
    ids = [fax.fax_id for fax in probe.faxes]
    first = set(first_ids)
    if set(ids) == first:
        return "repeat"
    shared = sum(1 for fax_id in ids if fax_id in first)
    if 2 * shared > len(ids):
        return OffsetUnit.RECORDS  # the same faxes, shifted by the offset
    return OffsetUnit.PAGES_FROM_0 if offset == 1 else OffsetUnit.PAGES_FROM_1


async def read_all(
    fetch: FetchPage,
    *,
    limit: int,
    unit: OffsetUnit | None,
    route: str,
    max_pages: int = MAX_PAGES,
) -> tuple[list[FaxSummary], OffsetUnit | None]:
    """Every fax of the list, each once; and the reading of the offset, if known now."""
    faxes: list[FaxSummary] = []
    seen: set[str] = set()

    def take(page: Page) -> int:
        new = 0
        for fax in page.faxes:
            if fax.fax_id not in seen:
                seen.add(fax.fax_id)
                faxes.append(fax)
                new += 1
        return new

    first = await fetch(0)
    take(first)
    if first.count < limit:
        return faxes, unit
    pages = 1
    offset = 0
    last = first
    if unit is None:
        first_ids = [fax.fax_id for fax in first.faxes]
        verdict: Verdict = "repeat"
        for offset in (1, 2):
            last = await fetch(offset)
            pages += 1
            verdict = judge(first_ids, last, offset, limit)
            if verdict != "repeat":
                break
        if not isinstance(verdict, OffsetUnit):
            if verdict == "repeat":
                _ignored(route)
            return faxes, unit  # "end": nothing past the first page, whatever the reading
        unit = verdict
        log.info(
            "eFax's pagination-offset counts %s",
            unit.value,
            extra={"action": "efax.pagination", "route": route, "unit": unit.value},
        )
        take(last)
        if last.count < limit:
            return faxes, unit
    while True:
        if pages >= max_pages:
            log.warning(
                "stopped listing after %d pages; more faxes may be listed than were read",
                pages,
                extra={"action": "efax.pagination", "route": route, "pages": pages},
            )
            return faxes, unit
        offset = next_offset(unit, offset, last.count)
        last = await fetch(offset)
        pages += 1
        if last.count and not take(last):
            _ignored(route, offset)
            return faxes, unit
        if last.count < limit:
            return faxes, unit


def _ignored(route: str, offset: int = 1) -> None:
    log.warning(
        "eFax repeated a page; it seems to ignore pagination-offset",
        extra={"action": "efax.pagination", "route": route, "offset": offset},
    )

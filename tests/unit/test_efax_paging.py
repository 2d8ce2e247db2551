"""Every page of a list, each fax once, whatever ``pagination-offset`` counts (gateway.efax.paging).

A fake list server that reads the offset as records, as pages from 0, as pages from 1,
or not at all, with and without ``first_record``; the client is driven through
``EfaxClient.iter_received`` over httpx.MockTransport.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.efax.client import EfaxClient
from gateway.efax.models import FaxState, FaxSummary
from gateway.efax.paging import OffsetUnit, Page, judge, next_offset, read_all

USER = "12345678-87654321"


def fax_ids(count: int, start: int = 0) -> list[str]:
    return [f"00000000-0000-4000-8000-{n:012x}" for n in range(start, start + count)]


class ListServer:
    """``unit``: records | pages0 | pages1 | ignored. ``arrivals``: after which calls a new
    fax arrives, at the top of the list (newest first), pushing the others down."""

    def __init__(
        self, total: int, unit: str, *, page_info: bool = False, arrivals: tuple[int, ...] = ()
    ) -> None:
        self.ids = fax_ids(total)
        self.unit = unit
        self.page_info = page_info
        self.arrivals = arrivals
        self.offsets: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokens":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 86399})
        offset = int(request.headers["pagination-offset"])
        limit = int(request.headers["pagination-limit"])
        self.offsets.append(offset)
        start = {
            "records": offset,
            "pages0": offset * limit,
            "pages1": max(offset - 1, 0) * limit,
            "ignored": 0,
        }[self.unit]
        page = self.ids[start : start + limit]
        body: dict[str, object] = {"faxes": [{"fax_id": i} for i in page]}
        if self.page_info:
            body["first_record"] = start + 1 if page else 0
            body["last_record"] = start + len(page) if page else 0
        if len(self.offsets) in self.arrivals:
            self.ids = fax_ids(1, start=10_000 + len(self.offsets)) + self.ids
        return httpx.Response(200, json=body)


async def listed(server: ListServer, page_size: int = 100, times: int = 1) -> list[list[str]]:
    transport = httpx.MockTransport(server)
    async with EfaxClient(
        base_url="https://efax.test", app_id="a", api_key="key-1", transport=transport
    ) as c:
        return [
            [fax.fax_id async for fax in c.iter_received(user_id=USER, page_size=page_size)]
            for _ in range(times)
        ]


@pytest.mark.parametrize("unit", ["records", "pages0", "pages1"])
@pytest.mark.parametrize("page_info", [False, True])
@pytest.mark.parametrize("total", [0, 99, 100, 101, 250, 300])
async def test_every_fax_is_listed_once_whatever_the_offset_counts(
    unit: str, page_info: bool, total: int
) -> None:
    server = ListServer(total, unit, page_info=page_info)
    first, again = await listed(server, times=2)
    assert first == again == fax_ids(total)


async def test_the_probe_is_paid_once_per_client() -> None:
    server = ListServer(250, "pages0")
    await listed(server, times=2)
    assert server.offsets == [0, 1, 2, 0, 1, 2]  # pages from 0: the probe at 1 is page two


async def test_pages_from_1_are_found_by_the_repeated_first_page() -> None:
    server = ListServer(250, "pages1")
    first, again = await listed(server, times=2)
    assert first == again == fax_ids(250)
    assert server.offsets == [0, 1, 2, 3, 0, 2, 3]


async def test_first_record_decides_without_comparing_ids() -> None:
    server = ListServer(250, "pages1", page_info=True)
    await listed(server)
    assert server.offsets == [0, 1, 2, 3]  # first_record 1 at offset 1: pages from 1 at once


async def test_a_server_ignoring_the_offset_is_read_three_times_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ListServer(250, "ignored")
    caplog.set_level(logging.WARNING, logger="gateway.efax")
    [got] = await listed(server, page_size=10)
    assert got == fax_ids(10)
    assert server.offsets == [0, 1, 2]
    assert "ignore pagination-offset" in caplog.text


@pytest.mark.parametrize("arrivals", [(1,), (2,), (1, 3)], ids=["before-probe", "after-probe", "twice"])
async def test_faxes_arriving_while_listing_do_not_hide_older_ones(arrivals: tuple[int, ...]) -> None:
    server = ListServer(250, "records", arrivals=arrivals)
    [got] = await listed(server)
    assert set(fax_ids(250)) <= set(got)
    assert len(got) == len(set(got))


async def test_an_endless_list_stops_after_max_pages(caplog: pytest.LogCaptureFixture) -> None:
    served: list[int] = []

    async def fetch(offset: int) -> Page:
        served.append(offset)
        ids = fax_ids(10, start=10 * len(served))  # always ten new faxes
        return Page([_fax(i) for i in ids], 10)

    caplog.set_level(logging.WARNING, logger="gateway.efax")
    faxes, unit = await read_all(fetch, limit=10, unit=OffsetUnit.RECORDS, route="GET /x", max_pages=5)
    assert len(served) == 5 and len(faxes) == 50 and unit is OffsetUnit.RECORDS
    assert "stopped listing after 5 pages" in caplog.text


def _fax(fax_id: str) -> FaxSummary:
    return FaxSummary(
        fax_id, None, FaxState.UNKNOWN, None, None, None, None, None, None, None, None, None, None
    )


def _page(ids: list[str], first_record: int | None = None) -> Page:
    return Page([_fax(i) for i in ids], len(ids), first_record)


@pytest.mark.parametrize(
    ("probe", "offset", "verdict"),
    [
        (_page(fax_ids(100, 1)), 1, OffsetUnit.RECORDS),
        (_page(fax_ids(99, 1)), 1, OffsetUnit.RECORDS),
        (_page(fax_ids(100, 100)), 1, OffsetUnit.PAGES_FROM_0),
        (_page(fax_ids(3, 100)), 1, OffsetUnit.PAGES_FROM_0),
        (_page(fax_ids(100)), 1, "repeat"),
        (_page(fax_ids(100, 100)), 2, OffsetUnit.PAGES_FROM_1),
        (_page(fax_ids(100, 2)), 2, OffsetUnit.RECORDS),
        (_page(fax_ids(100)), 2, "repeat"),
        (_page([]), 1, "end"),
        (_page(fax_ids(100, 500), first_record=2), 1, OffsetUnit.RECORDS),
        (_page(fax_ids(100, 500), first_record=101), 1, OffsetUnit.PAGES_FROM_0),
        (_page(fax_ids(100, 500), first_record=1), 1, OffsetUnit.PAGES_FROM_1),
        (_page(fax_ids(100), first_record=1), 2, "repeat"),
    ],
)
def test_judge(probe: Page, offset: int, verdict: object) -> None:
    assert judge(fax_ids(100), probe, offset, 100) == verdict


def test_next_offset() -> None:
    assert next_offset(OffsetUnit.RECORDS, 1, 100) == 101
    assert next_offset(OffsetUnit.PAGES_FROM_0, 1, 100) == 2
    assert next_offset(OffsetUnit.PAGES_FROM_1, 0, 100) == 2
    assert next_offset(OffsetUnit.PAGES_FROM_1, 2, 100) == 3

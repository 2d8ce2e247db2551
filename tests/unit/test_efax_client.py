"""EfaxClient request shapes, tokens and pagination, against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxAuthError, EfaxNotFound, EfaxPermanentError
from gateway.efax.models import Destination, DocumentSource, FaxOptions, FaxState

APP_ID = "app-42"
API_KEY = "key-0123456789abcdef"
USER = "12345678-87654321"
FAX_ID = "ea7382cf-8483-4bc5-954e-d3bc7074246a"

Answer = Callable[[httpx.Request], httpx.Response]


class FakeEfax:
    """Answers POST /tokens itself (tok-1, tok-2, ...) and other routes from ``routes``.

    A route maps "METHOD /path" to one answer, or a list of answers used in turn
    (the last one repeats).
    """

    def __init__(self, routes: dict[str, Answer | list[Answer]], expires_in: object = 86399):
        self.routes = routes
        self.expires_in = expires_in
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/tokens":
            self.tokens_issued += 1
            reply = {"access_token": f"tok-{self.tokens_issued}", "token_type": "bearer"}
            if self.expires_in is not None:
                reply["expires_in"] = self.expires_in  # type: ignore[assignment]
            return httpx.Response(200, json=reply)
        answers = self.routes[f"{request.method} {request.url.path}"]
        if isinstance(answers, list):
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        else:
            answer = answers
        return answer(request)

    def calls_to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def reply(status: int = 200, body: Any = None, **headers: str) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def client_for(fake: FakeEfax, **kwargs: Any) -> EfaxClient:
    return EfaxClient(
        base_url="https://efax.test",
        app_id=APP_ID,
        api_key=API_KEY,
        transport=httpx.MockTransport(fake),
        **kwargs,
    )


def document(data: bytes, chunk: int = 5) -> DocumentSource:
    async def open_() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return DocumentSource("PDF", len(data), open_)


async def send(client: EfaxClient, docs: list[bytes] | None = None) -> Any:
    return await client.send_fax(
        user_id=USER,
        destinations=[Destination("18665559999", to_name="Joe"), Destination("18555444333")],
        documents=[document(d) for d in (docs or [b"%PDF-1.4 one", b"%PDF-1.4 two!"])],
        options=FaxOptions(image_resolution="STANDARD"),
        client_reference_id="job-17",
        transaction_id="txn-17",
    )


SUBMITTED = [
    {"fax_id": FAX_ID, "destination_fax_number": "8665559999"},
    {"fax_id": "057BE5C6-C358-4B37-BD46-C2A5C33B9F89", "destination_fax_number": "8555444333"},
]


# -- tokens and request shapes ------------------------------------------------------


async def test_token_request_shape() -> None:
    fake = FakeEfax({})
    async with client_for(fake) as client:
        await client.check_credentials()
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.url == "https://efax.test/tokens"
    expected = base64.b64encode(f"{APP_ID}:{API_KEY}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert request.content == b"grant_type=client_credentials"
    assert "user-id" not in request.headers


async def test_send_fax_request_shape() -> None:
    fake = FakeEfax({"POST /faxes": reply(201, SUBMITTED)})
    async with client_for(fake) as client:
        submitted = await send(client)
    assert [s.fax_id for s in submitted] == [FAX_ID, "057be5c6-c358-4b37-bd46-c2a5c33b9f89"]
    assert submitted[0].destination_fax_number == "8665559999"
    (request,) = fake.calls_to("/faxes")
    assert request.headers["authorization"] == "Bearer tok-1"
    assert request.headers["user-id"] == USER
    assert request.headers["transaction-id"] == "txn-17"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert "transfer-encoding" not in request.headers
    assert int(request.headers["content-length"]) == len(request.content)
    body = json.loads(request.content)
    assert body["destinations"] == [
        {"fax_number": "18665559999", "to_name": "Joe"},
        {"fax_number": "18555444333"},
    ]
    assert body["client_data"] == {"client_reference_id": "job-17"}
    assert body["fax_options"] == {"include_cover_page": False, "image_resolution": "STANDARD"}
    decoded = [base64.b64decode(d["document_content"]) for d in body["documents"]]
    assert decoded == [b"%PDF-1.4 one", b"%PDF-1.4 two!"]
    assert {d["document_type"] for d in body["documents"]} == {"PDF"}


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_send_fax_accepts_any_2xx_and_wrapped_reply(status: int) -> None:
    fake = FakeEfax({"POST /faxes": reply(status, {"faxes": SUBMITTED[:1]})})
    async with client_for(fake) as client:
        assert [s.fax_id for s in await send(client)] == [FAX_ID]


async def test_401_renews_token_once_and_resends_the_whole_body() -> None:
    fake = FakeEfax({"POST /faxes": [reply(401, {"message": "Unauthorized"}), reply(201, SUBMITTED)]})
    async with client_for(fake) as client:
        await send(client, [b"%PDF-1.4 " + bytes(range(256)) * 40])
        assert client.calls["POST /faxes"] == 2
        assert client.calls["POST /tokens"] == 2
    first, second = fake.calls_to("/faxes")
    assert first.headers["authorization"] == "Bearer tok-1"
    assert second.headers["authorization"] == "Bearer tok-2"
    assert first.content == second.content
    doc = json.loads(second.content)["documents"][0]["document_content"]
    assert base64.b64decode(doc) == b"%PDF-1.4 " + bytes(range(256)) * 40


async def test_401_twice_is_an_auth_error() -> None:
    fake = FakeEfax({"GET /faxes/" + FAX_ID + "/metadata": reply(401, {"message": "Unauthorized"})})
    async with client_for(fake) as client:
        with pytest.raises(EfaxAuthError) as caught:
            await client.metadata(user_id=USER, fax_id=FAX_ID)
    assert caught.value.status == 401
    assert fake.tokens_issued == 2


async def test_token_is_shared_by_concurrent_calls() -> None:
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": reply(200, {"fax_id": FAX_ID})})
    async with client_for(fake) as client:
        results = await asyncio.gather(*(client.metadata(user_id=USER, fax_id=FAX_ID) for _ in range(20)))
        assert client.calls["POST /tokens"] == 1
        assert client.calls["GET /faxes/{id}/metadata"] == 20
    assert len(results) == 20
    assert fake.tokens_issued == 1


async def test_concurrent_401s_share_one_renewal() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer tok-1":
            return httpx.Response(401, json={"errors": [{"error_code": "UNAUTHORIZED"}]})
        return httpx.Response(200, json={"fax_id": FAX_ID})

    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": answer})
    async with client_for(fake) as client:
        await client.check_credentials()
        await asyncio.gather(*(client.metadata(user_id=USER, fax_id=FAX_ID) for _ in range(20)))
    assert fake.tokens_issued == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("expires_in", "still_fresh_at", "refreshed_at"),
    [
        (3600, 3299, 3301),  # renewed 300 s before expiry
        (None, 86099, 86101),  # missing: 24 h assumed
        ("soon", 86099, 86101),  # garbage: 24 h assumed
        ("7200", 6899, 6901),  # a number in a string
        (60, 29, 31),  # short-lived: renewed at half its life
    ],
)
async def test_token_refreshed_before_expiry(
    expires_in: object, still_fresh_at: float, refreshed_at: float
) -> None:
    clock = FakeClock()
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": reply(200, {})}, expires_in=expires_in)
    async with client_for(fake, clock=clock) as client:
        await client.metadata(user_id=USER, fax_id=FAX_ID)
        clock.now += still_fresh_at
        await client.metadata(user_id=USER, fax_id=FAX_ID)
        assert fake.tokens_issued == 1
        clock.now += refreshed_at - still_fresh_at
        await client.metadata(user_id=USER, fax_id=FAX_ID)
        assert fake.tokens_issued == 2
    assert fake.requests[-1].headers["authorization"] == "Bearer tok-2"


async def test_check_credentials_forces_a_fetch() -> None:
    fake = FakeEfax({})
    async with client_for(fake) as client:
        await client.check_credentials()
        await client.check_credentials()
    assert fake.tokens_issued == 2


# -- health ----------------------------------------------------------------------


async def test_health_needs_no_token() -> None:
    fake = FakeEfax({"GET /health": reply(200, {"status": "UP", "diskSpace": {"status": "UP"}})})
    async with client_for(fake) as client:
        assert await client.health() is True
    (request,) = fake.requests
    assert "authorization" not in request.headers


async def test_health_retries_with_a_token_when_asked_for_one() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "authorization" not in request.headers:
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"status": "UP"})

    fake = FakeEfax({"GET /health": answer})
    async with client_for(fake) as client:
        assert await client.health() is True


@pytest.mark.parametrize(
    "answer",
    [
        reply(200, {"status": "DOWN"}),
        reply(503, {"status": "UP"}),
        reply(200, b"UP"),
        reply(200, ["UP"]),
    ],
)
async def test_health_false_when_not_up(answer: Answer) -> None:
    async with client_for(FakeEfax({"GET /health": answer})) as client:
        assert await client.health() is False


async def test_health_false_on_network_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with client_for(FakeEfax({"GET /health": refuse})) as client:
        assert await client.health() is False


# -- per-fax endpoints -----------------------------------------------------------


DETAILS = {
    "fax_id": FAX_ID,
    "direction": "OUTBOUND",
    "transmission_data": {
        "transmission_status": "ERROR",
        "error_code": "E41",
        "error_message": "Number busy",
        "total_pages_sent": 0,
        "total_duration": 0,
        "completed_timestamp": "2024-05-10T15:07:01.000Z",
    },
    "attempts": [{"attempt_number": 1}, {"attempt_number": 2}],
}


async def test_transmission_details() -> None:
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/transmission-details": reply(200, DETAILS)})
    async with client_for(fake) as client:
        status = await client.transmission_details(user_id=USER, fax_id=FAX_ID.upper())
    assert (status.fax_id, status.state, status.error_code) == (FAX_ID, FaxState.FAILED, "E41")
    assert status.attempts == 2
    assert fake.requests[-1].headers["user-id"] == USER


async def test_transmission_details_falls_back_to_singular_path_and_remembers() -> None:
    fake = FakeEfax(
        {
            f"GET /faxes/{FAX_ID}/transmission-details": reply(404, {"message": "Not Found"}),
            f"GET /faxes/{FAX_ID}/transmission-detail": reply(200, DETAILS),
        }
    )
    async with client_for(fake) as client:
        await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        assert client.calls["GET /faxes/{id}/transmission-details"] == 1
        assert client.calls["GET /faxes/{id}/transmission-detail"] == 2


async def test_transmission_details_of_unknown_fax() -> None:
    fake = FakeEfax(
        {
            f"GET /faxes/{FAX_ID}/transmission-details": reply(404, {}),
            f"GET /faxes/{FAX_ID}/transmission-detail": reply(404, {}),
            f"GET /faxes/{FAX_ID}/metadata": reply(404, {}),
        }
    )
    async with client_for(fake) as client:
        with pytest.raises(EfaxNotFound):
            await client.transmission_details(user_id=USER, fax_id=FAX_ID)


async def test_metadata() -> None:
    meta = {
        "fax_id": FAX_ID,
        "direction": "OUTBOUND",
        "fax_status": "STORED",
        "pages": 2,
        "transmission_data": {"transmission_status": "COMPLETE", "error_code": "SFAX"},
        "client_tracking_data": {"client_reference_id": "job-17"},
    }
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": reply(200, meta)})
    async with client_for(fake) as client:
        summary = await client.metadata(user_id=USER, fax_id=FAX_ID)
    assert (summary.state, summary.pages, summary.error_code) == (FaxState.DELIVERED, 2, None)
    assert summary.client_reference_id == "job-17"


async def test_fetch_image() -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256))
    image = {"fax_id": FAX_ID, "file_name": f"{FAX_ID}.pdf", "image": base64.b64encode(pdf).decode()}
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/image": reply(200, image)})
    async with client_for(fake) as client:
        received = await client.fetch_image(user_id=USER, fax_id=FAX_ID)
        with pytest.raises(ValueError):
            await client.fetch_image(user_id=USER, fax_id=FAX_ID, desired_format="GIF")
    assert (received.content, received.format, received.file_name) == (pdf, "PDF", f"{FAX_ID}.pdf")
    assert fake.requests[-1].url.params["desired_format"] == "PDF"


async def test_mark_downloaded() -> None:
    fake = FakeEfax({f"PATCH /faxes/{FAX_ID}/metadata": reply(200, {"fax_id": FAX_ID})})
    async with client_for(fake) as client:
        await client.mark_downloaded(user_id=USER, fax_id=FAX_ID)
        await client.mark_downloaded(user_id=USER, fax_id=FAX_ID, downloaded=False)
    first, second = fake.calls_to(f"/faxes/{FAX_ID}/metadata")
    assert json.loads(first.content) == {"image_downloaded": True}
    assert json.loads(second.content) == {"image_downloaded": False}
    assert first.headers["content-type"] == "application/json"


@pytest.mark.parametrize("answer", [reply(204), reply(200, {}), reply(404, {"message": "gone"})])
async def test_delete_fax(answer: Answer) -> None:
    fake = FakeEfax({f"DELETE /faxes/{FAX_ID}": answer})
    async with client_for(fake) as client:
        await client.delete_fax(user_id=USER, fax_id=FAX_ID)
    assert len(fake.calls_to(f"/faxes/{FAX_ID}")) == 1


async def test_cancel() -> None:
    conflict = {"errors": [{"error_code": "FAX_COMPLETE", "developer_message": "fax already completed"}]}
    path = f"POST /faxes/{FAX_ID}/cancel"
    async with client_for(FakeEfax({path: reply(202, b"ACCEPTED")})) as client:
        assert await client.cancel(user_id=USER, fax_id=FAX_ID) == "accepted"
    async with client_for(FakeEfax({path: reply(409, conflict)})) as client:
        assert await client.cancel(user_id=USER, fax_id=FAX_ID) == "conflict"
    async with client_for(FakeEfax({path: reply(404, {})})) as client:
        with pytest.raises(EfaxNotFound):
            await client.cancel(user_id=USER, fax_id=FAX_ID)


@pytest.mark.parametrize("bad", ["../tokens", "", "ea7382cf/8483-4bc5-954e-d3bc7074246a", "x" * 36])
async def test_bad_fax_id_never_reaches_the_wire(bad: str) -> None:
    fake = FakeEfax({})
    async with client_for(fake) as client:
        for call in (client.metadata, client.transmission_details, client.delete_fax):
            with pytest.raises(EfaxPermanentError) as caught:
                await call(user_id=USER, fax_id=bad)
            assert caught.value.status == 0
    assert fake.requests == []


async def test_bad_user_id_never_reaches_the_wire() -> None:
    fake = FakeEfax({})
    async with client_for(fake) as client:
        for bad in ("", "a\r\nX-Evil: 1", "ünicode"):
            with pytest.raises(EfaxPermanentError):
                await client.metadata(user_id=bad, fax_id=FAX_ID)
    assert fake.requests == []


# -- lists -----------------------------------------------------------------------


def fax_ids(count: int, start: int = 0) -> list[str]:
    return [f"00000000-0000-4000-8000-{n:012x}" for n in range(start, start + count)]


def received_server(total: int, ignore_offset: bool = False) -> Answer:
    ids = fax_ids(total)

    def answer(request: httpx.Request) -> httpx.Response:
        offset = 0 if ignore_offset else int(request.headers["pagination-offset"])
        limit = int(request.headers["pagination-limit"])
        page = [{"fax_id": i, "image_downloaded": False} for i in ids[offset : offset + limit]]
        return httpx.Response(200, json={"faxes": page})

    return answer


@pytest.mark.parametrize(
    ("total", "first", "again"),
    [
        (0, [0], [0]),
        (1, [0], [0]),
        (99, [0], [0]),
        (100, [0, 1], [0, 100]),  # the probe at offset 1 says records, and is short: the end
        (250, [0, 1, 101, 201], [0, 100, 200]),  # the reading found is kept for the next list
    ],
)
async def test_iter_received_reads_every_page_once(total: int, first: list[int], again: list[int]) -> None:
    fake = FakeEfax({"GET /faxes/received": received_server(total)})
    async with client_for(fake) as client:
        got = [fax.fax_id async for fax in client.iter_received(user_id=USER)]
        assert got == fax_ids(total)
        requests = fake.calls_to("/faxes/received")
        assert [int(r.headers["pagination-offset"]) for r in requests] == first
        fake.requests.clear()
        assert [fax.fax_id async for fax in client.iter_received(user_id=USER)] == fax_ids(total)
        assert [int(r.headers["pagination-offset"]) for r in fake.calls_to("/faxes/received")] == again
    assert {r.headers["pagination-limit"] for r in requests} == {"100"}
    assert {r.url.params["image_downloaded"] for r in requests} == {"false"}


async def test_iter_received_stops_when_the_server_ignores_offsets() -> None:
    fake = FakeEfax({"GET /faxes/received": received_server(250, ignore_offset=True)})
    async with client_for(fake) as client:
        got = [fax.fax_id async for fax in client.iter_received(user_id=USER, page_size=10)]
    assert got == fax_ids(10)
    assert len(fake.calls_to("/faxes/received")) == 3  # offsets 0, 1 and 2 all give page one


async def test_iter_received_is_safe_against_marking_during_iteration() -> None:
    downloaded: set[str] = set()
    ids = fax_ids(25)

    def answer(request: httpx.Request) -> httpx.Response:
        pending = [i for i in ids if i not in downloaded]
        offset = int(request.headers["pagination-offset"])
        limit = int(request.headers["pagination-limit"])
        return httpx.Response(200, json={"faxes": [{"fax_id": i} for i in pending[offset:][:limit]]})

    fake = FakeEfax({"GET /faxes/received": answer})
    async with client_for(fake) as client:
        seen = []
        async for fax in client.iter_received(user_id=USER, page_size=10):
            seen.append(fax.fax_id)
            downloaded.add(fax.fax_id)
    assert seen == ids


async def test_list_received_one_page() -> None:
    fake = FakeEfax({"GET /faxes/received": received_server(30)})
    async with client_for(fake) as client:
        page = await client.list_received(user_id=USER, image_downloaded=None, offset=5, limit=10)
        with pytest.raises(ValueError):
            await client.list_received(user_id=USER, limit=101)
    assert [fax.fax_id for fax in page] == fax_ids(10, start=5)
    (request,) = fake.calls_to("/faxes/received")
    assert "image_downloaded" not in request.url.params
    assert request.headers["pagination-offset"] == "5"


async def test_list_tolerates_bare_arrays_and_skips_unusable_items() -> None:
    items = [{"fax_id": FAX_ID}, {"fax_id": "not-a-uuid"}, {"no": "id"}, 7]
    fake = FakeEfax({"GET /faxes/received": reply(200, items)})
    async with client_for(fake) as client:
        page = await client.list_received(user_id=USER)
    assert [fax.fax_id for fax in page] == [FAX_ID]


async def test_sent_candidates_reads_the_search_the_list_and_the_finished_faxes_each_fax_once() -> None:
    ids = fax_ids(150)

    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.headers["pagination-offset"])
        limit = int(request.headers["pagination-limit"])
        items = [{"fax_id": i} for i in ids[offset : offset + limit]]  # search ignored, no client data
        return httpx.Response(200, json={"faxes": items})

    fake = FakeEfax({"GET /faxes/sent": answer})
    async with client_for(fake) as client:
        found = await client.sent_candidates(user_id=USER, client_reference_id="job-17", since=1_700_000_000)
    assert [fax.fax_id for fax in found] == ids  # each once, in eFax's order
    params = [dict(r.url.params) for r in fake.calls_to("/faxes/sent")]
    assert {"search_text": "job-17"} in params
    assert {} in params
    assert {"min_completed_timestamp": "2023-11-14T22:13:20+00:00"} in params


# -- counters and logs -----------------------------------------------------------


async def test_one_debug_line_per_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.efax")
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": reply(200, {})})
    async with client_for(fake) as client:
        await client.metadata(user_id=USER, fax_id=FAX_ID)
        assert dict(client.calls) == {"POST /tokens": 1, "GET /faxes/{id}/metadata": 1}
    records = [r for r in caplog.records if getattr(r, "action", None) == "efax.call"]
    assert [(r.levelno, r.route, r.status) for r in records] == [  # type: ignore[attr-defined]
        (logging.DEBUG, "POST /tokens", "200"),
        (logging.DEBUG, "GET /faxes/{id}/metadata", "200"),
    ]
    assert records[1].fax_id == FAX_ID  # type: ignore[attr-defined]
    assert all(isinstance(r.duration_ms, int) for r in records)  # type: ignore[attr-defined]


async def test_redirects_are_not_followed() -> None:
    fake = FakeEfax({f"GET /faxes/{FAX_ID}/metadata": reply(302, {}, location="https://evil.test/x")})
    async with client_for(fake) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await client.metadata(user_id=USER, fax_id=FAX_ID)
    assert caught.value.status == 302
    assert "base_url" in str(caught.value)
    assert all(r.url.host == "efax.test" for r in fake.requests)


async def test_sent_candidates_reads_the_unfiltered_list_no_further_than_its_page_cap() -> None:
    counter = iter(range(10**6))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params:  # the search and the finished-since read: nothing
            return httpx.Response(200, json={"faxes": []})
        items = [{"fax_id": f"00000000-0000-4000-8000-{next(counter):012d}"} for _ in range(100)]
        return httpx.Response(200, json={"faxes": items})  # an endless list of new faxes

    fake = FakeEfax({"GET /faxes/sent": answer})
    async with client_for(fake) as client:
        found = await client.sent_candidates(user_id=USER, client_reference_id="job-1", since=0, max_pages=3)
    unfiltered = [r for r in fake.calls_to("/faxes/sent") if not r.url.params]
    assert len(unfiltered) <= 4 and len(found) == 100 * len(unfiltered)  # 3 pages (and a probe at most)

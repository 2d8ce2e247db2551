"""The eFax client on the points efax-api.md leaves open, one exact shape at a time.

Status paths refused with 403 as well as 404, the create reply's shapes through
send_fax, error sentences of every body shape without secrets; httpx.MockTransport
answers. The reply parsing alone (COMPLETE with a failure code among it):
test_efax_wire_shapes.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.efax.client import DETAILS_REPROBE_S, EfaxClient
from gateway.efax.errors import EfaxNotFound, EfaxPermanentError
from gateway.efax.models import Destination, DocumentSource, FaxOptions, FaxState

API_KEY = "key-0123456789abcdef"
USER = "12345678-87654321"
FAX_ID = "ea7382cf-8483-4bc5-954e-d3bc7074246a"
OTHER_ID = "057be5c6-c358-4b37-bd46-c2a5c33b9f89"

Answer = Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fake:
    """POST /tokens answers tok-1; other "METHOD /path" keys answer from ``routes``;
    anything else is 403 ``Missing Authentication Token``, as API Gateway answers."""

    def __init__(self, routes: dict[str, Answer]) -> None:
        self.routes = routes
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokens":
            return httpx.Response(200, json={"access_token": "tok-1", "expires_in": 86399})
        self.paths.append(request.url.path)
        answer = self.routes.get(f"{request.method} {request.url.path}")
        if answer is None:
            return httpx.Response(403, json={"message": "Missing Authentication Token"})
        return answer(request)


def reply(status: int, body: Any = None, content: bytes | None = None, **headers: str) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return answer


def client_for(fake: Fake, clock: Clock | None = None) -> EfaxClient:
    return EfaxClient(
        base_url="https://efax.test",
        app_id="app-42",
        api_key=API_KEY,
        transport=httpx.MockTransport(fake),
        clock=clock or Clock(),
    )


def details(status: str, code: str = "", message: str = "") -> dict[str, Any]:
    return {
        "fax_id": FAX_ID,
        "transmission_data": {"transmission_status": status, "error_code": code, "error_message": message},
    }


DETAILS_PATH = f"GET /faxes/{FAX_ID}/transmission-details"
DETAIL_PATH = f"GET /faxes/{FAX_ID}/transmission-detail"
METADATA_PATH = f"GET /faxes/{FAX_ID}/metadata"


# -- 1. status paths refused with 403 ------------------------------------------------


async def test_a_status_path_answering_403_falls_back_to_the_other_spelling_and_keeps_it() -> None:
    fake = Fake({DETAIL_PATH: reply(200, details("COMPLETE", "SFAX"))})  # the plural is 403
    async with client_for(fake) as client:
        first = await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        second = await client.transmission_details(user_id=USER, fax_id=FAX_ID)
    assert first.state is second.state is FaxState.DELIVERED
    assert first.source == "transmission-details"
    assert fake.paths == [
        f"/faxes/{FAX_ID}/transmission-details",
        *[f"/faxes/{FAX_ID}/transmission-detail"] * 2,
    ]


@pytest.mark.parametrize("refusal", [403, 404])
async def test_both_status_paths_refused_fall_back_to_metadata_for_an_hour(refusal: int) -> None:
    refused = reply(refusal, {"message": "Missing Authentication Token"})
    metadata = {"fax_id": FAX_ID, "fax_status": "ERROR", **details("ERROR", "E42", "No answer")}
    fake = Fake({DETAILS_PATH: refused, DETAIL_PATH: refused, METADATA_PATH: reply(200, metadata)})
    clock = Clock()
    async with client_for(fake, clock) as client:
        status = await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        assert (status.state, status.error_code, status.error_message) == (
            FaxState.FAILED,
            "E42",
            "No answer",
        )
        assert status.source == "metadata" and status.raw_status == "ERROR"
        assert len(fake.paths) == 3
        await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        assert fake.paths[3:] == [f"/faxes/{FAX_ID}/metadata"]  # no details path tried again yet
        clock.now += DETAILS_REPROBE_S
        await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        assert len(fake.paths) == 7  # the details paths are tried again after the hour
        assert client.calls["GET /faxes/{id}/metadata"] == 3


async def test_when_metadata_refuses_too_its_error_is_raised_and_nothing_is_remembered() -> None:
    fake = Fake({METADATA_PATH: reply(404, {"errors": [{"error_code": "NOT_FOUND"}]})})
    async with client_for(fake) as client:
        with pytest.raises(EfaxNotFound):
            await client.transmission_details(user_id=USER, fax_id=FAX_ID)
        with pytest.raises(EfaxNotFound):
            await client.transmission_details(user_id=USER, fax_id=FAX_ID)
    assert len(fake.paths) == 6  # both spellings each time: unknown fax, not unknown paths


async def test_a_403_on_every_path_is_raised_as_refused_with_its_text() -> None:
    async with client_for(Fake({})) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await client.transmission_details(user_id=USER, fax_id=FAX_ID)
    assert caught.value.status == 403
    assert "Missing Authentication Token" in str(caught.value)


# -- 3. the create reply's shapes --------------------------------------------------------

ONE = {"fax_id": FAX_ID.upper(), "destination_fax_number": "8665559999"}
TWO = {"fax_id": OTHER_ID, "destination_fax_number": "8555444333"}


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ([ONE, TWO], [FAX_ID, OTHER_ID]),
        ({"faxes": [ONE, TWO]}, [FAX_ID, OTHER_ID]),
        (ONE, [FAX_ID]),
        ({"faxes": ONE}, [FAX_ID]),
    ],
    ids=["list", "faxes", "object", "faxes-object"],
)
async def test_send_fax_reads_the_create_reply_in_each_shape(body: Any, ids: list[str]) -> None:
    fake = Fake({"POST /faxes": reply(201, body)})
    async with client_for(fake) as client:
        submitted = await client.send_fax(
            user_id=USER,
            destinations=[Destination("18665559999")],
            documents=[DocumentSource("TXT", 2, lambda: _chunks(b"hi"))],
            options=FaxOptions(),
            client_reference_id="job-1",
            transaction_id="job-1",
        )
    assert [fax.fax_id for fax in submitted] == ids
    assert submitted[0].destination_fax_number == "8665559999"


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


# -- 4. error bodies of other shapes -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"error_code": "E100", "developer_message": "fax_number 123 is invalid"},
        {"Message": "fax_number 123 is invalid"},
        {"message": "fax_number 123 is invalid"},
        b"fax_number 123 is invalid",
    ],
    ids=["flat", "Message", "message", "text"],
)
async def test_the_error_sentence_quotes_each_shape_but_never_a_secret(body: Any) -> None:
    echo = f" (you sent Authorization: Bearer tok-1, key {API_KEY})"
    if isinstance(body, bytes):
        answer = reply(400, content=body + echo.encode(), **{"content-type": "text/plain"})
    else:
        key = next(k for k in body if k != "error_code")
        answer = reply(400, {**body, key: body[key] + echo})
    fake = Fake({METADATA_PATH: answer})
    async with client_for(fake) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await client.metadata(user_id=USER, fax_id=FAX_ID)
    sentence = str(caught.value)
    assert "fax_number 123 is invalid" in sentence
    assert "tok-1" not in sentence and API_KEY not in sentence
    assert caught.value.status == 400
    assert caught.value.error_code == (body.get("error_code") if isinstance(body, dict) else None)
    json.dumps(sentence)  # a plain string, fit for a log line


async def test_echoed_credentials_of_any_scheme_are_masked_in_the_sentence() -> None:
    echoed = (
        'Rejected: Authorization: Token abc123xyz; api_key=k-999 "secret_id": "s-77" '
        "access_token=eyJhbGciOi.eyJzdWIi.c2ln password: hunter2"
    )
    fake = Fake({METADATA_PATH: reply(400, {"message": echoed})})
    async with client_for(fake) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await client.metadata(user_id=USER, fax_id=FAX_ID)
    sentence = str(caught.value)
    assert "Rejected" in sentence
    for secret in ("abc123xyz", "k-999", "s-77", "eyJhbGciOi", "hunter2"):
        assert secret not in sentence, sentence

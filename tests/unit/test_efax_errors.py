"""How EfaxClient classifies failures, and that no secret ever leaks."""

from __future__ import annotations

import base64
import logging
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxAuthError,
    EfaxConflict,
    EfaxError,
    EfaxNotFound,
    EfaxOutcomeUnknown,
    EfaxPermanentError,
    EfaxTransientError,
)
from gateway.efax.models import Destination, DocumentSource, FaxOptions

APP_ID = "app-42"
API_KEY = "sekret-KEY-9f8e7d6c5b4a"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.sekret-token.sig"
USER = "12345678-87654321"
FAX_ID = "ea7382cf-8483-4bc5-954e-d3bc7074246a"
BASIC = base64.b64encode(f"{APP_ID}:{API_KEY}".encode()).decode()

Answer = Callable[[httpx.Request], httpx.Response]
Call = Callable[[EfaxClient], Awaitable[Any]]


def token_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 86399})


def client_with(answer: Answer, tokens: Answer = token_reply) -> EfaxClient:
    def route(request: httpx.Request) -> httpx.Response:
        return tokens(request) if request.url.path == "/tokens" else answer(request)

    return EfaxClient(
        base_url="https://efax.test",
        app_id=APP_ID,
        api_key=API_KEY,
        transport=httpx.MockTransport(route),
    )


def raising(exc_type: type[httpx.RequestError]) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom")

    return answer


def status(code: int, body: Any = None, **headers: str) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(code, content=body, headers=headers)
        return httpx.Response(code, json=body if body is not None else {}, headers=headers)

    return answer


async def _doc() -> AsyncIterator[bytes]:
    yield b"%PDF-1.4"


async def send_fax(client: EfaxClient) -> Any:
    return await client.send_fax(
        user_id=USER,
        destinations=[Destination("18665559999")],
        documents=[DocumentSource("PDF", 8, _doc)],
        options=FaxOptions(),
        client_reference_id="job-1",
        transaction_id="txn-1",
    )


async def get_metadata(client: EfaxClient) -> Any:
    return await client.metadata(user_id=USER, fax_id=FAX_ID)


async def cancel(client: EfaxClient) -> Any:
    return await client.cancel(user_id=USER, fax_id=FAX_ID)


ERROR_400 = {
    "errors": [
        {
            "element_name": "destinations[0].fax_number",
            "user_message": "Invalid fax number",
            "developer_message": "fax_number must be 11 digits",
            "more_info": "",
            "error_code": "100",
        }
    ],
    "transaction_id": "txn-1",
}


@pytest.mark.parametrize(
    ("call", "answer", "expected", "not_expected"),
    [
        (send_fax, raising(httpx.ConnectError), EfaxTransientError, EfaxOutcomeUnknown),
        (send_fax, raising(httpx.ConnectTimeout), EfaxTransientError, EfaxOutcomeUnknown),
        (send_fax, raising(httpx.PoolTimeout), EfaxTransientError, EfaxOutcomeUnknown),
        (send_fax, raising(httpx.ReadTimeout), EfaxOutcomeUnknown, None),
        (send_fax, raising(httpx.WriteTimeout), EfaxOutcomeUnknown, None),
        (send_fax, raising(httpx.WriteError), EfaxOutcomeUnknown, None),
        (send_fax, raising(httpx.ReadError), EfaxOutcomeUnknown, None),
        (send_fax, raising(httpx.RemoteProtocolError), EfaxOutcomeUnknown, None),
        (send_fax, raising(httpx.DecodingError), EfaxOutcomeUnknown, None),
        (send_fax, status(503, b"Service Unavailable"), EfaxOutcomeUnknown, None),
        (
            send_fax,
            status(500, {"errors": [{"error_code": "INTERNAL_SERVER_ERROR"}]}),
            EfaxOutcomeUnknown,
            None,
        ),
        (send_fax, status(201, b"<html>ok</html>"), EfaxOutcomeUnknown, None),
        (send_fax, status(201, []), EfaxOutcomeUnknown, None),
        (send_fax, status(429, b"Too Many Requests."), EfaxTransientError, EfaxOutcomeUnknown),
        (send_fax, status(400, ERROR_400), EfaxPermanentError, EfaxAuthError),
        (send_fax, status(403, {"message": "Forbidden"}), EfaxPermanentError, EfaxAuthError),
        (get_metadata, raising(httpx.ConnectError), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, raising(httpx.ReadTimeout), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, raising(httpx.RemoteProtocolError), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, raising(httpx.DecodingError), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, status(503), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, status(502, b"<html>Bad Gateway</html>"), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, status(200, b"not json"), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, status(200, [1, 2]), EfaxTransientError, EfaxOutcomeUnknown),
        (get_metadata, status(404, {"errors": [{"error_code": "NOT_FOUND"}]}), EfaxNotFound, None),
        (get_metadata, status(422, {}), EfaxPermanentError, EfaxNotFound),
        (cancel, status(500), EfaxTransientError, EfaxOutcomeUnknown),
    ],
)
async def test_classification(
    call: Call,
    answer: Answer,
    expected: type[EfaxError],
    not_expected: type[EfaxError] | None,
) -> None:
    async with client_with(answer) as client:
        with pytest.raises(expected) as caught:
            await call(client)
    if not_expected is not None:
        assert not isinstance(caught.value, not_expected)


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout])
async def test_transport_errors_keep_their_cause(exc_type: type[httpx.TransportError]) -> None:
    async with client_with(raising(exc_type)) as client:
        with pytest.raises(EfaxTransientError) as caught:
            await send_fax(client)
    assert isinstance(caught.value.__cause__, exc_type)


async def test_429_retry_after_seconds() -> None:
    async with client_with(status(429, b"Too Many Requests.", **{"Retry-After": "7"})) as client:
        with pytest.raises(EfaxTransientError) as caught:
            await send_fax(client)
    assert not isinstance(caught.value, EfaxOutcomeUnknown)
    assert caught.value.retry_after == 7.0
    assert "Too Many Requests." in str(caught.value)


async def test_429_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    async with client_with(status(429, {"message": "slow down"}, **{"Retry-After": when})) as client:
        with pytest.raises(EfaxTransientError) as caught:
            await get_metadata(client)
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


async def test_503_retry_after_is_kept() -> None:
    async with client_with(status(503, b"", **{"Retry-After": "30"})) as client:
        with pytest.raises(EfaxTransientError) as caught:
            await get_metadata(client)
    assert caught.value.retry_after == 30.0


async def test_400_is_permanent_with_efax_message() -> None:
    async with client_with(status(400, ERROR_400)) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await send_fax(client)
    error = caught.value
    assert (error.status, error.error_code) == (400, "100")
    assert "Invalid fax number" in str(error)
    assert "fax_number must be 11 digits" in str(error)


async def test_409_on_other_calls_is_a_conflict() -> None:
    async with client_with(status(409, {"message": "busy"})) as client:
        with pytest.raises(EfaxConflict):
            await client.mark_downloaded(user_id=USER, fax_id=FAX_ID)


@pytest.mark.parametrize("code", [400, 401, 403])
async def test_refused_credentials(code: int) -> None:
    tokens = status(code, {"error": "invalid_client", "error_description": "Bad credentials"})
    async with client_with(status(200, {}), tokens=tokens) as client:
        with pytest.raises(EfaxAuthError) as caught:
            await client.check_credentials()
        with pytest.raises(EfaxAuthError):
            await get_metadata(client)
    assert caught.value.status == code
    assert "Bad credentials" in str(caught.value)
    assert "app_id" in str(caught.value)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (raising(httpx.ConnectError), EfaxTransientError),
        (status(503), EfaxTransientError),
        (status(429, b"Too Many Requests."), EfaxTransientError),
        (status(200, {"token_type": "bearer"}), EfaxTransientError),
        (status(200, b"<html/>"), EfaxTransientError),
        (status(404), EfaxPermanentError),
    ],
)
async def test_token_endpoint_failures(tokens: Answer, expected: type[EfaxError]) -> None:
    async with client_with(status(200, {}), tokens=tokens) as client:
        with pytest.raises(expected) as caught:
            await send_fax(client)
    assert not isinstance(caught.value, EfaxAuthError | EfaxNotFound | EfaxOutcomeUnknown)


# -- secrets ----------------------------------------------------------------------


def echoing(code: int) -> Answer:
    """A server that quotes every secret it saw back in its error message."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen = f"{request.headers.get('authorization')} {API_KEY} {TOKEN} {BASIC}"
        body = {"errors": [{"user_message": f"bad request {seen}", "error_code": "100"}]}
        return httpx.Response(code, json=body)

    return answer


async def test_secrets_never_in_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[EfaxError] = []
    for answer in (echoing(400), echoing(500), echoing(429), raising(httpx.ReadTimeout)):
        async with client_with(answer) as client:
            for call in (send_fax, get_metadata):
                try:
                    await call(client)
                except EfaxError as err:
                    failures.append(err)
    async with client_with(status(200, {}), tokens=echoing(401)) as client:
        try:
            await client.check_credentials()
        except EfaxError as err:
            failures.append(err)
    assert len(failures) == 9
    logged = [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    assert any("efax.call" in text for text in logged)
    for text in [str(e) for e in failures] + [repr(e) for e in failures] + logged:
        for secret in (API_KEY, TOKEN, BASIC, "sekret"):
            assert secret not in text
    assert any("[redacted]" in str(e) for e in failures)


@pytest.mark.parametrize(
    "error",
    [
        EfaxError("plain"),
        EfaxTransientError("later", 7.0),
        EfaxOutcomeUnknown("maybe", None),
        EfaxPermanentError("no", 400, "100"),
        EfaxAuthError("key", 401),
        EfaxNotFound("gone", 404, "NOT_FOUND"),
        EfaxConflict("done", 409, "CONFLICT"),
    ],
)
def test_errors_read_as_sentences_and_survive_pickling(error: EfaxError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) == error.message
    assert vars(copy) == vars(error)

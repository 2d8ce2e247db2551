"""EfaxClient against the real eFax simulator over loopback.

The two were written separately from efax-api.md and share no code; these tests
are where a wrong field name, path or header on either side shows up.  The
simulator is driven only through its /_sim/ control endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter

from gateway.efax.client import EfaxClient
from gateway.efax.errors import (
    EfaxAuthError,
    EfaxNotFound,
    EfaxOutcomeUnknown,
    EfaxPermanentError,
    EfaxTransientError,
)
from gateway.efax.models import Destination, DocumentSource, FaxOptions, FaxState, FaxSummary
from gateway.simulator.server import start_simulator
from gateway.simulator.state import SimulatorConfig

USER = "12345678-87654321"
OK_NUMBER = "13235551212"
BUSY_NUMBER = "13235550000"


class Sim:
    """The running simulator and a plain HTTP client for its control endpoints."""

    def __init__(self, base_url: str, control: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.control = control

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.control.post(path, json=body)
        assert response.is_success, response.text
        return response.json()

    async def get(self, url: str, /, **params: str) -> Any:
        response = await self.control.get(url, params=params)
        assert response.is_success, response.text
        return response.json()

    async def fault(self, **fault: Any) -> None:
        await self.post("/_sim/faults", fault)

    async def advance(self, seconds: float) -> None:
        await self.post("/_sim/clock", {"advance_s": seconds})


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with (
        await start_simulator(SimulatorConfig(complete_after_s=30)) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=10) as control,
    ):
        yield Sim(running.base_url, control)


@pytest.fixture
async def client(sim: Sim) -> AsyncIterator[EfaxClient]:
    async with EfaxClient(base_url=sim.base_url, app_id="app-1", api_key="key-1", read_timeout_s=10) as efax:
        yield efax


def pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def source(data: bytes, document_type: str = "PDF", chunk: int = 64 * 1024) -> DocumentSource:
    async def open_() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return DocumentSource(document_type, len(data), open_)


async def send(client: EfaxClient, *numbers: str, ref: str = "job-1", data: bytes = b"") -> Any:
    return await client.send_fax(
        user_id=USER,
        destinations=[Destination(n, to_name="Front desk") for n in numbers or (OK_NUMBER,)],
        documents=[source(data or pdf(2))],
        options=FaxOptions(include_cover_page=True, cover_subject="Hello", image_resolution="FINE"),
        client_reference_id=ref,
        transaction_id=f"txn-{ref}",
    )


async def test_health(client: EfaxClient) -> None:
    assert await client.health() is True


async def test_send_then_delivered(sim: Sim, client: EfaxClient) -> None:
    document = pdf(2)
    first, second = await send(client, OK_NUMBER, "+442079460958", data=document)
    assert first.destination_fax_number.endswith("3235551212")

    stored = await sim.get(f"/_sim/faxes/{first.fax_id}")
    assert base64.b64decode(stored["documents"][0]["document_content"]) == document
    assert stored["client_reference_id"] == "job-1"
    assert stored["transaction_id"] == "txn-job-1"
    assert stored["user_id"] == USER

    status = await client.transmission_details(user_id=USER, fax_id=first.fax_id)
    assert status.state is FaxState.IN_PROGRESS
    await sim.advance(60)
    for fax in (first, second):
        status = await client.transmission_details(user_id=USER, fax_id=fax.fax_id)
        assert status.state is FaxState.DELIVERED, status
        assert (status.error_code, status.error_message) == (None, None)
        assert status.pages == 3  # two pages and the cover page
        assert status.completed_at is not None
        summary = await client.metadata(user_id=USER, fax_id=fax.fax_id)
        assert summary.state is FaxState.DELIVERED
        assert summary.direction == "OUTBOUND"
        assert summary.client_reference_id == "job-1"
    found = await ours(client, "job-1")
    assert {fax.fax_id for fax in found} == {first.fax_id, second.fax_id}
    assert client.calls["POST /tokens"] == 1


async def ours(client: EfaxClient, reference: str) -> list[FaxSummary]:
    """The sent faxes that carry this client reference."""
    listed = await client.sent_candidates(user_id=USER, client_reference_id=reference, since=0)
    return [fax for fax in listed if fax.client_reference_id == reference]


async def test_busy_number_fails_with_e41(sim: Sim, client: EfaxClient) -> None:
    (fax,) = await send(client, BUSY_NUMBER)
    await sim.advance(3600)
    status = await client.transmission_details(user_id=USER, fax_id=fax.fax_id)
    assert status.state is FaxState.FAILED
    assert status.error_code == "E41"
    assert status.error_message
    summary = await client.metadata(user_id=USER, fax_id=fax.fax_id)
    assert (summary.state, summary.error_code) == (FaxState.FAILED, "E41")


async def test_lost_reply_is_outcome_unknown_and_reconciled(sim: Sim, client: EfaxClient) -> None:
    await send(client, ref="job-other")
    await sim.fault(kind="drop_after", method="POST", path="/faxes", count=1)
    with pytest.raises(EfaxOutcomeUnknown):
        await send(client, ref="job-lost")
    found = await ours(client, "job-lost")
    assert len(found) == 1
    faxes = await sim.get("/_sim/faxes", direction="OUTBOUND")
    assert [f["fax_id"] for f in faxes if f["client_reference_id"] == "job-lost"] == [found[0].fax_id]


async def test_dropped_before_processing_is_still_unknown_but_nothing_exists(
    sim: Sim, client: EfaxClient
) -> None:
    await client.check_credentials()
    await sim.fault(kind="drop", method="POST", path="/faxes", count=1)
    with pytest.raises(EfaxOutcomeUnknown):
        await send(client, ref="job-dropped")
    assert await ours(client, "job-dropped") == []


async def test_server_error_on_send_is_unknown_and_on_reads_transient(sim: Sim, client: EfaxClient) -> None:
    await sim.fault(kind="status", status=503, method="POST", path="/faxes", count=1)
    with pytest.raises(EfaxOutcomeUnknown):
        await send(client)
    (fax,) = await send(client)
    await sim.fault(kind="status", status=500, method="GET", path="/faxes/{id}/metadata", count=1)
    with pytest.raises(EfaxTransientError) as caught:
        await client.metadata(user_id=USER, fax_id=fax.fax_id)
    assert not isinstance(caught.value, EfaxOutcomeUnknown)
    assert (await client.metadata(user_id=USER, fax_id=fax.fax_id)).fax_id == fax.fax_id


@pytest.mark.parametrize("plain", [False, True])
async def test_rate_limited_with_retry_after(sim: Sim, client: EfaxClient, plain: bool) -> None:
    await sim.fault(kind="rate_limit", method="POST", path="/faxes", count=1, retry_after=7, plain=plain)
    with pytest.raises(EfaxTransientError) as caught:
        await send(client, ref="job-429")
    assert not isinstance(caught.value, EfaxOutcomeUnknown)
    assert caught.value.retry_after == 7.0
    assert await ours(client, "job-429") == []
    await send(client, ref="job-429")
    assert len(await ours(client, "job-429")) == 1


async def test_expired_token_is_renewed_once(sim: Sim, client: EfaxClient) -> None:
    (fax,) = await send(client)
    await sim.post("/_sim/tokens/expire", {})
    await client.metadata(user_id=USER, fax_id=fax.fax_id)
    await sim.post("/_sim/tokens/expire", {})
    (again,) = await send(client, ref="job-2")
    assert client.calls["POST /tokens"] == 3
    statuses = [r["status"] for r in await sim.get("/_sim/requests", path="/faxes")]
    assert statuses == [201, 401, 201]
    stored = await sim.get(f"/_sim/faxes/{again.fax_id}")
    assert base64.b64decode(stored["documents"][0]["document_content"]).startswith(b"%PDF")


async def test_wrong_api_key_is_an_auth_error() -> None:
    config = SimulatorConfig(credentials={"app-1": "right-key"})
    async with (
        await start_simulator(config) as running,
        EfaxClient(base_url=running.base_url, app_id="app-1", api_key="wrong-key") as efax,
    ):
        with pytest.raises(EfaxAuthError) as caught:
            await efax.check_credentials()
        assert "wrong-key" not in str(caught.value)
        with pytest.raises(EfaxAuthError):
            await efax.list_received(user_id=USER)


async def test_received_faxes_each_processed_once(sim: Sim, client: EfaxClient) -> None:
    injected = await sim.post(
        "/_sim/receive",
        {"user_id": USER, "count": 250, "pages": 2, "from_number": "13105550199", "tsid": "ACME"},
    )
    expected = set(injected["fax_ids"])
    assert len(expected) == 250
    await sim.post("/_sim/receive", {"user_id": "99999999-99999999", "count": 3})

    listed = [fax async for fax in client.iter_received(user_id=USER)]
    assert len(listed) == 250
    assert {fax.fax_id for fax in listed} == expected
    assert client.calls["GET /faxes/received"] == 4  # offsets 0, 1 (the probe: records), 101, 201
    assert all(fax.image_downloaded is False and fax.pages == 2 for fax in listed)
    assert listed[0].originating_fax_number is not None
    assert listed[0].completed_at is not None

    in_flight = asyncio.Semaphore(10)

    async def process(index: int, fax_id: str) -> None:
        async with in_flight:
            image = await client.fetch_image(user_id=USER, fax_id=fax_id)
            assert image.format == "PDF"
            assert image.content.startswith(b"%PDF")
            await client.mark_downloaded(user_id=USER, fax_id=fax_id)
            if index % 2:  # delete half of them
                await client.delete_fax(user_id=USER, fax_id=fax_id)

    await asyncio.gather(*(process(n, fax.fax_id) for n, fax in enumerate(listed)))
    assert client.calls["GET /faxes/{id}/image"] == 250
    assert client.calls["POST /tokens"] == 1
    assert [fax async for fax in client.iter_received(user_id=USER)] == []
    remaining = [f async for f in client.iter_received(user_id=USER, image_downloaded=True)]
    assert len(remaining) == 125
    assert all(fax.image_downloaded for fax in remaining)

    gone = listed[1].fax_id
    await client.delete_fax(user_id=USER, fax_id=gone)  # already deleted: still fine
    with pytest.raises(EfaxNotFound):
        await client.metadata(user_id=USER, fax_id=gone)


async def test_tiff_image(sim: Sim, client: EfaxClient) -> None:
    (fax_id,) = (await sim.post("/_sim/receive", {"user_id": USER, "pages": 1}))["fax_ids"]
    image = await client.fetch_image(user_id=USER, fax_id=fax_id, desired_format="TIFF")
    assert image.format == "TIFF"


async def test_cancel_accepted_then_conflict(sim: Sim, client: EfaxClient) -> None:
    (pending,) = await send(client, ref="job-cancel")
    assert await client.cancel(user_id=USER, fax_id=pending.fax_id) == "accepted"
    await sim.advance(60)
    status = await client.transmission_details(user_id=USER, fax_id=pending.fax_id)
    assert status.state is FaxState.CANCELLED

    (done,) = await send(client, ref="job-done")
    await sim.advance(60)
    assert await client.cancel(user_id=USER, fax_id=done.fax_id) == "conflict"

    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(EfaxNotFound):
        await client.cancel(user_id=USER, fax_id=unknown)
    with pytest.raises(EfaxNotFound):
        await client.transmission_details(user_id=USER, fax_id=unknown)


async def test_validation_error_is_permanent_with_efax_message(client: EfaxClient) -> None:
    with pytest.raises(EfaxPermanentError) as caught:
        await client.send_fax(
            user_id=USER,
            destinations=[Destination("12")],
            documents=[source(pdf(1))],
            options=FaxOptions(),
            client_reference_id="job-bad",
            transaction_id="txn-bad",
        )
    assert caught.value.status == 400
    assert "eFax refused POST /faxes (400" in str(caught.value)


async def test_large_document_streams_intact(sim: Sim, client: EfaxClient) -> None:
    data = b"%PDF-1.4\n" + os.urandom(12 * 1024 * 1024)
    (fax,) = await send(client, data=data)
    stored = await sim.get(f"/_sim/faxes/{fax.fax_id}")
    content = base64.b64decode(stored["documents"][0]["document_content"])
    assert hashlib.sha256(content).digest() == hashlib.sha256(data).digest()
    (request,) = [r for r in await sim.get("/_sim/requests", path="/faxes") if r["method"] == "POST"]
    assert request["status"] == 201


async def test_read_timeout_on_send_is_unknown_and_on_reads_transient(sim: Sim) -> None:
    async with EfaxClient(base_url=sim.base_url, app_id="app-1", api_key="key-1", read_timeout_s=0.3) as efax:
        await sim.fault(kind="slow", delay_s=1.0, method="POST", path="/faxes", count=1)
        with pytest.raises(EfaxOutcomeUnknown):
            await send(efax, ref="job-slow")
        await sim.fault(kind="slow", delay_s=1.0, method="GET", path="/faxes/sent", count=1)
        with pytest.raises(EfaxTransientError) as caught:
            await efax.sent_candidates(user_id=USER, client_reference_id="job-slow", since=0)
        assert not isinstance(caught.value, EfaxOutcomeUnknown)


VARIANTS = [
    {"status_complete_spelling": "COMPLETED", "status_inprogress_spelling": "IN PROGRESS"},
    {"drop_leading_one": False, "create_status": 200, "cancel_reply_text": "ACCEPTED"},
    {"timestamp_style": "compact", "list_page_info": True, "image_marks_downloaded": True},
    {"timestamp_style": "offset"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(v))
async def test_tolerates_each_unconfirmed_variant(
    sim: Sim, client: EfaxClient, variant: dict[str, Any]
) -> None:
    response = await sim.control.patch("/_sim/config", json=variant)
    assert response.is_success, response.text
    (fax,) = await send(client, ref="job-variant")
    assert fax.destination_fax_number.endswith("3235551212")
    status = await client.transmission_details(user_id=USER, fax_id=fax.fax_id)
    assert status.state is FaxState.IN_PROGRESS
    (other,) = await send(client, ref="job-cancelled")
    assert await client.cancel(user_id=USER, fax_id=other.fax_id) == "accepted"
    await sim.advance(60)
    status = await client.transmission_details(user_id=USER, fax_id=fax.fax_id)
    assert status.state is FaxState.DELIVERED
    assert status.completed_at is not None
    summary = await client.metadata(user_id=USER, fax_id=other.fax_id)
    assert summary.state is FaxState.CANCELLED

    await sim.post("/_sim/receive", {"user_id": USER, "count": 120})
    listed = [f async for f in client.iter_received(user_id=USER)]
    assert len({f.fax_id for f in listed}) == 120
    assert all(f.completed_at is not None for f in listed)

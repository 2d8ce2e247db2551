"""EfaxClient against the simulator switched to each answer efax-api.md leaves open.

Over loopback, like test_client_vs_simulator.py: which status paths exist and how an
unknown route answers, a failure reported as COMPLETE with its code, the create reply's
shape, error body shapes, and what ``pagination-offset`` counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxNotFound, EfaxPermanentError
from gateway.efax.models import Destination, DocumentSource, FaxOptions, FaxState, SubmittedFax
from gateway.simulator.server import start_simulator
from gateway.simulator.state import SimulatorConfig

USER = "12345678-87654321"
OK_NUMBER = "13235551212"
BUSY_NUMBER = "13235550000"  # the simulator: E41 when final
API_KEY = "key-contract-1"


class Sim:
    def __init__(self, control: httpx.AsyncClient) -> None:
        self.control = control

    async def configure(self, **changes: Any) -> None:
        response = await self.control.patch("/_sim/config", json=changes)
        assert response.is_success, response.text

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.control.post(path, json=body)
        assert response.is_success, response.text
        return response.json()

    async def requests(self, path: str) -> list[dict[str, Any]]:
        response = await self.control.get("/_sim/requests", params={"path": path})
        return list(response.json())


@pytest.fixture
async def running() -> AsyncIterator[tuple[Sim, EfaxClient]]:
    async with (
        await start_simulator(SimulatorConfig(complete_after_s=30)) as sim,
        httpx.AsyncClient(base_url=sim.base_url, timeout=10) as control,
        EfaxClient(base_url=sim.base_url, app_id="app-1", api_key=API_KEY, read_timeout_s=10) as client,
    ):
        yield Sim(control), client


async def send(client: EfaxClient, *numbers: str) -> list[SubmittedFax]:
    async def body() -> AsyncIterator[bytes]:
        yield b"Hello.\n"

    return await client.send_fax(
        user_id=USER,
        destinations=[Destination(n) for n in numbers or (OK_NUMBER,)],
        documents=[DocumentSource("TXT", 7, body)],
        options=FaxOptions(),
        client_reference_id="job-1",
        transaction_id="txn-1",
    )


@pytest.mark.parametrize("paths", ["both", "plural", "singular", "none"])
@pytest.mark.parametrize("unknown", [404, 403])
async def test_status_reads_find_a_path_that_answers(
    running: tuple[Sim, EfaxClient], paths: str, unknown: int
) -> None:
    sim, client = running
    await sim.configure(status_paths=paths, unknown_route_status=unknown)
    ok, busy = (await send(client, OK_NUMBER))[0], (await send(client, BUSY_NUMBER))[0]
    status = await client.transmission_details(user_id=USER, fax_id=ok.fax_id)
    assert status.state is FaxState.IN_PROGRESS
    assert status.source == ("metadata" if paths == "none" else "transmission-details")
    await sim.post("/_sim/clock", {"advance_s": 60})
    assert (await client.transmission_details(user_id=USER, fax_id=ok.fax_id)).state is FaxState.DELIVERED
    failed = await client.transmission_details(user_id=USER, fax_id=busy.fax_id)
    assert (failed.state, failed.error_code, failed.error_message) == (FaxState.FAILED, "E41", "Number busy")
    refused = [
        r
        for r in await sim.requests("/faxes/{id}/transmission-details")
        + await sim.requests("/faxes/{id}/transmission-detail")
        if r["status"] == unknown
    ]
    assert len(refused) == {"both": 0, "plural": 0, "singular": 1, "none": 2}[paths]  # then remembered


async def test_an_unknown_fax_is_still_not_found_when_every_route_answers_403(
    running: tuple[Sim, EfaxClient],
) -> None:
    sim, client = running
    await sim.configure(status_paths="none", unknown_route_status=403)
    with pytest.raises(EfaxNotFound):
        await client.transmission_details(user_id=USER, fax_id="ea7382cf-8483-4bc5-954e-d3bc7074246a")


@pytest.mark.parametrize("spelling", ["COMPLETE", "COMPLETED"])
async def test_a_failure_reported_as_complete_is_failed_with_its_code(
    running: tuple[Sim, EfaxClient], spelling: str
) -> None:
    sim, client = running
    await sim.configure(failure_status="COMPLETE", status_complete_spelling=spelling)
    busy, ok = (await send(client, BUSY_NUMBER))[0], (await send(client, OK_NUMBER))[0]
    await sim.post("/_sim/clock", {"advance_s": 60})
    status = await client.transmission_details(user_id=USER, fax_id=busy.fax_id)
    assert (status.raw_status, status.state, status.error_code) == (spelling, FaxState.FAILED, "E41")
    assert status.error_message == "Number busy"
    summary = await client.metadata(user_id=USER, fax_id=busy.fax_id)
    assert (summary.state, summary.error_code) == (FaxState.FAILED, "E41")
    assert (await client.metadata(user_id=USER, fax_id=ok.fax_id)).state is FaxState.DELIVERED


@pytest.mark.parametrize("shape", ["list", "object", "faxes"])
async def test_the_create_reply_is_understood_in_each_shape(
    running: tuple[Sim, EfaxClient], shape: str
) -> None:
    sim, client = running
    await sim.configure(create_reply_shape=shape)
    [one] = await send(client)
    two = await send(client, OK_NUMBER, BUSY_NUMBER)
    assert one.destination_fax_number.endswith("3235551212")
    assert [f.destination_fax_number[-4:] for f in two] == ["1212", "0000"]
    created = (await sim.control.get("/_sim/faxes")).json()
    assert {f["fax_id"] for f in created} == {one.fax_id, *(f.fax_id for f in two)}


@pytest.mark.parametrize("shape", ["efax", "flat", "Message", "message", "text"])
async def test_error_bodies_of_each_shape_reach_the_sentence(
    running: tuple[Sim, EfaxClient], shape: str
) -> None:
    sim, client = running
    await sim.configure(error_body_shape=shape)
    with pytest.raises(EfaxPermanentError) as caught:
        await send(client, "12")  # too short: a validation error
    sentence = str(caught.value)
    assert caught.value.status == 400
    assert "fax_number" in sentence, sentence
    with pytest.raises(EfaxNotFound) as missing:
        await client.metadata(user_id=USER, fax_id="ea7382cf-8483-4bc5-954e-d3bc7074246a")
    assert "Fax not found" in str(missing.value)
    token = client._tokens.current
    assert token and token not in sentence and API_KEY not in sentence


@pytest.mark.parametrize("unit", ["records", "pages"])
@pytest.mark.parametrize("page_info", [False, True])
async def test_250_received_faxes_are_listed_each_once(
    running: tuple[Sim, EfaxClient], unit: str, page_info: bool
) -> None:
    sim, client = running
    await sim.configure(pagination_offset_unit=unit, list_page_info=page_info)
    expected = (await sim.post("/_sim/receive", {"user_id": USER, "count": 250}))["fax_ids"]
    for _ in range(2):  # the second time with the reading already known
        listed = [fax.fax_id async for fax in client.iter_received(user_id=USER)]
        assert listed == expected
    for fax_id in expected[:120]:
        await client.mark_downloaded(user_id=USER, fax_id=fax_id)
    assert [f.fax_id async for f in client.iter_received(user_id=USER)] == expected[120:]
    assert [f.fax_id async for f in client.iter_received(user_id=USER, image_downloaded=None)] == expected

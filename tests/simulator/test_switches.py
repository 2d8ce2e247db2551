"""The simulator's switches for points efax-api.md leaves open, each answering both ways.

``status_paths`` / ``unknown_route_status``, ``failure_status``, ``create_reply_shape``,
``error_body_shape``, ``pagination_offset_unit`` and ``webhook_body_shape``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.errorshape import reshape
from gateway.simulator.state import SimulatorState
from tests.simulator.conftest import USER, FakeClock, fax_body

Headers = dict[str, str]


async def configure(client: httpx.AsyncClient, **changes: Any) -> None:
    reply = await client.patch("/_sim/config", json=changes)
    assert reply.status_code == 200, reply.text


async def send(client: httpx.AsyncClient, headers: Headers, *numbers: str) -> Any:
    reply = await client.post("/faxes", json=fax_body(*numbers), headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


@pytest.mark.parametrize(
    ("paths", "plural", "singular"),
    [("both", 200, 200), ("plural", 200, None), ("singular", None, 200), ("none", None, None)],
)
@pytest.mark.parametrize("unknown", [404, 403])
async def test_status_paths_and_the_answer_to_an_unknown_route(
    client: httpx.AsyncClient,
    headers: Headers,
    paths: str,
    plural: int | None,
    singular: int | None,
    unknown: int,
) -> None:
    await configure(client, status_paths=paths, unknown_route_status=unknown)
    [fax] = await send(client, headers)
    got = [
        await client.get(f"/faxes/{fax['fax_id']}/{suffix}", headers=headers)
        for suffix in ("transmission-details", "transmission-detail")
    ]
    assert [r.status_code for r in got] == [plural or unknown, singular or unknown]
    for reply in got:
        if reply.status_code == 403:
            assert reply.json() == {"message": "Missing Authentication Token"}
        elif reply.status_code == 404:
            assert reply.json()["errors"][0]["error_code"] == "NOT_FOUND"
    assert (await client.get(f"/faxes/{fax['fax_id']}/metadata", headers=headers)).status_code == 200
    nowhere = await client.get("/no/such/route", headers=headers)
    assert nowhere.status_code == unknown


async def test_a_failure_can_be_reported_as_complete_with_its_code(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock
) -> None:
    await configure(client, failure_status="COMPLETE", status_complete_spelling="COMPLETED")
    [busy] = await send(client, headers, "13235550000")
    clock.advance(60)
    data = (await client.get(f"/faxes/{busy['fax_id']}/transmission-details", headers=headers)).json()
    td = data["transmission_data"]
    assert (td["transmission_status"], td["error_code"], td["error_message"]) == (
        "COMPLETED",
        "E41",
        "Number busy",
    )
    assert data["attempts"][0]["attempt_status"] == "COMPLETED"
    meta = (await client.get(f"/faxes/{busy['fax_id']}/metadata", headers=headers)).json()
    assert meta["fax_status"] == "COMPLETED" and meta["transmission_data"]["error_code"] == "E41"


@pytest.mark.parametrize("shape", ["list", "object", "faxes"])
async def test_the_create_reply_in_each_shape(
    client: httpx.AsyncClient, headers: Headers, shape: str
) -> None:
    await configure(client, create_reply_shape=shape)
    one = await send(client, headers)
    two = await send(client, headers, "13235551212", "13235551213")
    if shape == "list":
        assert isinstance(one, list) and len(one) == 1 and len(two) == 2
    elif shape == "object":
        assert set(one) == {"fax_id", "destination_fax_number"}
        assert isinstance(two, list) and len(two) == 2  # one object cannot carry two faxes
    else:
        assert len(one["faxes"]) == 1 and len(two["faxes"]) == 2


@pytest.mark.parametrize(
    ("shape", "content_type", "expected"),
    [
        ("flat", "application/json", {"error_code": "NOT_FOUND", "user_message": "Fax not found"}),
        ("Message", "application/json", {"Message": "Fax not found"}),
        ("message", "application/json", {"message": "Fax not found"}),
        ("text", "text/plain", "Fax not found"),
    ],
)
async def test_error_bodies_in_each_shape(
    client: httpx.AsyncClient, headers: Headers, shape: str, content_type: str, expected: Any
) -> None:
    await configure(client, error_body_shape=shape)
    reply = await client.get("/faxes/ea7382cf-8483-4bc5-954e-d3bc7074246a/metadata", headers=headers)
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith(content_type)
    assert int(reply.headers["content-length"]) == len(reply.content)
    if isinstance(expected, str):
        assert reply.text == expected
    else:
        assert expected.items() <= reply.json().items()
    refused = await client.get("/faxes/sent", headers={"Authorization": headers["Authorization"]})
    assert refused.status_code == 400 and "user-id" in refused.text  # every error, not only 404s


async def test_error_shapes_keep_the_cancel_conflicts_transaction_id(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock
) -> None:
    await configure(client, error_body_shape="message")
    [fax] = await send(client, headers)
    clock.advance(60)
    reply = await client.post(f"/faxes/{fax['fax_id']}/cancel", headers={**headers, "transaction-id": "t-9"})
    assert reply.status_code == 409 and reply.headers["transaction-id"] == "t-9"
    assert reply.json() == {"message": "Fax already completed; fax already completed messaging"}


def test_reshape_leaves_other_bodies_alone() -> None:
    assert reshape(b'{"message": "Missing Authentication Token"}', "flat") is None
    assert reshape(b"not json", "text") is None
    assert reshape(b'{"errors": [{"user_message": "x"}]}', "efax") is None


@pytest.mark.parametrize("unit", ["records", "pages"])
async def test_pagination_offset_counts_records_or_pages(
    client: httpx.AsyncClient, headers: Headers, unit: str
) -> None:
    await configure(client, pagination_offset_unit=unit, list_page_info=True)
    ids = (await client.post("/_sim/receive", json={"user_id": USER, "count": 25})).json()["fax_ids"]
    paging = {"pagination-offset": "2", "pagination-limit": "10"}
    reply = (await client.get("/faxes/received", headers={**headers, **paging})).json()
    start = 2 if unit == "records" else 20
    assert [f["fax_id"] for f in reply["faxes"]] == ids[start : start + 10]
    assert reply["first_record"] == start + 1  # first_record always counts records


def test_a_bad_switch_value_is_refused() -> None:
    for changes in (
        {"status_paths": "some"},
        {"unknown_route_status": 500},
        {"failure_status": "FAILED"},
        {"create_reply_shape": "tuple"},
        {"error_body_shape": "xml"},
        {"pagination_offset_unit": "bytes"},
        {"webhook_body_shape": "soap"},
    ):
        with pytest.raises(ValueError, match=next(iter(changes))):
            SimulatorConfig(**changes)


@pytest.mark.parametrize("shape", ["metadata", "nested", "no_fax_id", "inline_image"])
def test_webhook_bodies_in_each_shape(shape: str) -> None:
    state = SimulatorState(SimulatorConfig(webhook_body_shape=shape, webhook_inbound_url="http://x/hook"))
    [fax_id] = state.receive(USER, pages=2)
    [note] = state.due_notifications()
    body = json.loads(note.body)
    if shape == "metadata":
        assert body["fax_id"] == fax_id and body["direction"] == "INBOUND"
    elif shape == "nested":
        assert body["event"] == "fax.received" and body["data"]["fax"]["fax_id"] == fax_id
        assert "fax_id" not in body
    elif shape == "no_fax_id":
        assert body == {"event": "fax.received", "direction": "INBOUND", "user_id": USER}
    else:
        assert body["fax_id"] == fax_id
        assert base64.b64decode(body["image"]).startswith(b"%PDF")

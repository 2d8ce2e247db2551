"""The eFax simulator over loopback HTTP: auth, sending, states, cancel, lists,
images, faults, webhooks and validation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from gateway.simulator.documents import blank_pdf
from gateway.simulator.server import RunningSimulator, start_simulator
from gateway.simulator.state import SimulatorConfig
from tests.simulator.conftest import USER, FakeClock, fax_body, get_token, txt, wait_until

Headers = dict[str, str]


def doc(document_type: str, content: str) -> dict[str, str]:
    return {"document_type": document_type, "document_content": content}


def assert_error_shape(body: dict[str, Any], error_code: str | None = None) -> None:
    assert isinstance(body["transaction_id"], str) and body["transaction_id"]
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {
            "element_name",
            "user_message",
            "developer_message",
            "more_info",
            "error_code",
        }
    if error_code is not None:
        assert body["errors"][0]["error_code"] == error_code


async def send(client: httpx.AsyncClient, headers: Headers, *numbers: str, **extra: Any) -> list[str]:
    reply = await client.post("/faxes", json=fax_body(*numbers, **extra), headers=headers)
    assert reply.status_code == 201, reply.text
    return [item["fax_id"] for item in reply.json()]


async def details(client: httpx.AsyncClient, headers: Headers, fax_id: str) -> dict[str, Any]:
    reply = await client.get(f"/faxes/{fax_id}/transmission-details", headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["transmission_data"])


# -- auth -------------------------------------------------------------------


async def test_token_flow_and_auth_errors(client: httpx.AsyncClient) -> None:
    reply = await client.post("/tokens", auth=("app", "key"), data={"grant_type": "client_credentials"})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "jti"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 86400, "read write")

    missing_grant = await client.post("/tokens", auth=("app", "key"), data={})
    assert missing_grant.status_code == 400
    assert_error_shape(missing_grant.json(), "BAD_REQUEST")
    no_basic = await client.post("/tokens", data={"grant_type": "client_credentials"})
    assert no_basic.status_code == 401

    token = body["access_token"]
    lower = await client.get("/faxes/sent", headers={"Authorization": f"bearer {token}", "user-id": USER})
    assert lower.status_code == 200
    for bad in ({"user-id": USER}, {"Authorization": "Bearer nope", "user-id": USER}):
        reply = await client.get("/faxes/sent", headers=bad)
        assert reply.status_code == 401
        assert_error_shape(reply.json(), "UNAUTHORIZED")
    no_user = await client.get("/faxes/sent", headers={"Authorization": f"Bearer {token}"})
    assert no_user.status_code == 400
    assert no_user.json()["errors"][0]["element_name"] == "user-id"
    assert (await client.get("/health")).json() == {"status": "UP"}


async def test_configured_credentials_reject_bad_keys(clock: FakeClock) -> None:
    config = SimulatorConfig(clock=clock, credentials={"app": "secret"})
    async with await start_simulator(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        form = {"grant_type": "client_credentials"}
        bad = await http.post("/tokens", auth=("app", "wrong"), data=form)
        assert bad.status_code == 401
        assert_error_shape(bad.json(), "UNAUTHORIZED")
        assert (await http.post("/tokens", auth=("other", "secret"), data=form)).status_code == 401
        assert (await http.post("/tokens", auth=("app", "secret"), data=form)).status_code == 200


async def test_expired_and_revoked_tokens_are_401(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock, sim: RunningSimulator
) -> None:
    assert (await client.get("/faxes/sent", headers=headers)).status_code == 200
    assert (await client.post("/_sim/tokens/expire")).json() == {"expired": 1}
    reply = await client.get("/faxes/sent", headers=headers)
    assert reply.status_code == 401
    assert_error_shape(reply.json(), "UNAUTHORIZED")

    token = await get_token(client)
    fresh = {"Authorization": f"Bearer {token}", "user-id": USER}
    clock.advance(86400)
    assert (await client.get("/faxes/sent", headers=fresh)).status_code == 401

    sim.state.config.token_revokes_previous = True
    first = await get_token(client)
    await get_token(client)
    revoked = {"Authorization": f"Bearer {first}", "user-id": USER}
    assert (await client.get("/faxes/sent", headers=revoked)).status_code == 401


# -- sending and states -------------------------------------------------------


async def test_send_progresses_new_inprogress_complete(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock
) -> None:
    reply = await client.post(
        "/faxes",
        json=fax_body("18665550101", "+442079460958", fax_options={"include_cover_page": True}),
        headers={**headers, "transaction-id": "order-7"},
    )
    assert reply.status_code == 201
    created = reply.json()
    assert [c["destination_fax_number"] for c in created] == ["8665550101", "+442079460958"]
    fax_id = created[0]["fax_id"]
    assert fax_id == fax_id.lower() and len(fax_id) == 36

    first = await details(client, headers, fax_id)
    assert first["transmission_status"] == "NEW"
    assert first["completed_timestamp"] is None
    clock.advance(11)
    assert (await details(client, headers, fax_id))["transmission_status"] == "INPROGRESS"
    clock.advance(20)
    done = await details(client, headers, fax_id)
    assert (done["transmission_status"], done["error_code"]) == ("COMPLETE", "SFAX")
    assert done["total_pages_sent"] == 2  # one TXT page plus the cover page
    assert done["total_duration"] == 60
    assert done["completed_timestamp"].endswith("Z")
    alias = await client.get(f"/faxes/{fax_id}/transmission-detail", headers=headers)
    assert alias.json()["transmission_data"]["transmission_status"] == "COMPLETE"

    meta = (await client.get(f"/faxes/{fax_id}/metadata", headers=headers)).json()
    assert (meta["direction"], meta["fax_status"], meta["pages"]) == ("OUTBOUND", "COMPLETE", 2)
    assert meta["routing_data"]["to_name"] == "Joe"
    assert meta["transmission_data"]["error_code"] == "SFAX"
    full = (await client.get(f"/_sim/faxes/{fax_id}")).json()
    assert full["transaction_id"] == "order-7"
    assert full["user_id"] == USER
    assert base64.b64decode(full["documents"][0]["document_content"]) == b"hello\n"


@pytest.mark.parametrize(
    ("changes", "complete", "inprogress"),
    [
        ({}, "COMPLETE", "INPROGRESS"),
        ({"status_complete_spelling": "COMPLETED"}, "COMPLETED", "INPROGRESS"),
        ({"status_inprogress_spelling": "IN PROGRESS"}, "COMPLETE", "IN PROGRESS"),
    ],
)
async def test_status_spellings(
    client: httpx.AsyncClient,
    headers: Headers,
    clock: FakeClock,
    changes: dict[str, str],
    complete: str,
    inprogress: str,
) -> None:
    assert (await client.patch("/_sim/config", json=changes)).status_code == 200
    [fax_id] = await send(client, headers)
    clock.advance(15)
    assert (await details(client, headers, fax_id))["transmission_status"] == inprogress
    clock.advance(15)
    assert (await details(client, headers, fax_id))["transmission_status"] == complete
    bad = await client.patch("/_sim/config", json={"status_complete_spelling": "DONE"})
    assert bad.status_code == 400


async def test_outcomes_by_number_suffix(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock
) -> None:
    await client.post("/_sim/outcomes", json={"suffix": "1234", "error_code": "E53"})
    busy, never, custom, ok = await send(
        client, headers, "13235550000", "13235559999", "13235551234", "13235550101"
    )
    clock.advance(3600)
    expected = {busy: ("ERROR", "E41"), never: ("INPROGRESS", ""), custom: ("ERROR", "E53")}
    expected[ok] = ("COMPLETE", "SFAX")
    for fax_id, (state, code) in expected.items():
        data = await details(client, headers, fax_id)
        assert (data["transmission_status"], data["error_code"]) == (state, code)
    assert (await details(client, headers, busy))["error_message"] == "Number busy"


async def test_cancel_then_conflict(client: httpx.AsyncClient, headers: Headers, clock: FakeClock) -> None:
    pending, finished = await send(client, headers, "13235550101", "13235550102")
    reply = await client.post(f"/faxes/{pending}/cancel", headers=headers)
    assert reply.status_code == 202
    data = await details(client, headers, pending)
    assert (data["transmission_status"], data["error_code"]) == ("CANCELED", "E45")

    clock.advance(60)
    tid = {**headers, "transaction-id": "cancel-42"}
    for fax_id in (pending, finished):
        conflict = await client.post(f"/faxes/{fax_id}/cancel", headers=tid)
        assert conflict.status_code == 409
        assert conflict.headers["transaction-id"] == "cancel-42"
        assert_error_shape(conflict.json())
        assert conflict.json()["errors"][0]["developer_message"].startswith("fax already com")
    unknown = await client.post("/faxes/00000000-0000-4000-8000-000000000000/cancel", headers=headers)
    assert unknown.status_code == 404


async def test_other_users_faxes_are_404(client: httpx.AsyncClient, headers: Headers) -> None:
    [fax_id] = await send(client, headers)
    other = {**headers, "user-id": "99999999-00000000"}
    assert (await client.get(f"/faxes/{fax_id}/metadata", headers=other)).status_code == 404
    assert (await client.get("/faxes/sent", headers=other)).json() == {"faxes": []}


# -- lists --------------------------------------------------------------------


async def test_received_list_pages_over_250_faxes(
    client: httpx.AsyncClient, headers: Headers, sim: RunningSimulator
) -> None:
    reply = await client.post(
        "/_sim/receive", json={"user_id": USER, "from_number": "+13235550199", "count": 250}
    )
    ids = reply.json()["fax_ids"]
    assert len(ids) == 250
    await client.patch("/_sim/config", json={"list_page_info": True})
    seen: list[str] = []
    offset = 0
    while True:
        page = await client.get(
            "/faxes/received",
            headers={**headers, "pagination-offset": str(offset), "pagination-limit": "100"},
        )
        body = page.json()
        seen += [f["fax_id"] for f in body["faxes"]]
        if body["faxes"]:
            assert body["first_record"] == offset + 1
            assert body["last_record"] == offset + len(body["faxes"])
        if len(body["faxes"]) < 100:
            break
        offset += 100
    assert seen == ids  # oldest first, every fax exactly once
    item = (await client.get("/faxes/received", headers=headers)).json()["faxes"][0]
    assert item["direction"] == "INBOUND" and item["image_downloaded"] is False
    assert item["originating_fax_number"] == "+13235550199"
    too_big = await client.get("/faxes/received", headers={**headers, "pagination-limit": "500"})
    assert len(too_big.json()["faxes"]) == 100


async def test_sent_list_search_and_timestamps(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock
) -> None:
    await send(client, headers, client_data={"client_reference_id": "JOB-123"})
    clock.advance(60)
    await send(client, headers, client_data={"client_reference_id": "JOB-456"})
    await client.post("/faxes", json=fax_body(), headers={**headers, "transaction-id": "TX-9"})

    listed = (await client.get("/faxes/sent", headers=headers)).json()["faxes"]
    assert [f["client_tracking_data"]["client_reference_id"] for f in listed] == [
        "JOB-123",
        "JOB-456",
        "",
    ]
    assert listed[1]["completed_timestamp"] is None  # still in progress, listed anyway
    assert listed[0]["transmission_data"]["transmission_status"] == "COMPLETE"

    async def search(**params: str) -> list[dict[str, Any]]:
        reply = await client.get("/faxes/sent", headers=headers, params=params)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["faxes"])

    found = await search(search_text="job-456")
    assert [f["client_tracking_data"]["client_reference_id"] for f in found] == ["JOB-456"]
    assert len(await search(search_text="TX-9")) == 1
    completed = listed[0]["completed_timestamp"]
    for spelling in (completed, completed.replace("Z", "+00:00"), completed.replace(".000Z", "+0000")):
        assert len(await search(min_completed_timestamp=spelling)) == 1
    assert await search(max_completed_timestamp="2000-01-01T00:00:00Z") == []
    bad = await client.get("/faxes/sent", headers=headers, params={"min_completed_timestamp": "x"})
    assert bad.status_code == 400


# -- images, metadata, delete -----------------------------------------------


async def test_image_patch_delete(client: httpx.AsyncClient, headers: Headers) -> None:
    pdf = blank_pdf(3)
    reply = await client.post(
        "/_sim/receive",
        json={"user_id": USER, "pdf_base64": base64.b64encode(pdf).decode(), "tsid": "ACME"},
    )
    [fax_id] = reply.json()["fax_ids"]

    pdf_params = {"desired_format": "PDF"}
    image = (await client.get(f"/faxes/{fax_id}/image", params=pdf_params, headers=headers)).json()
    assert image["fax_id"] == fax_id and image["file_name"] == f"{fax_id}.pdf"
    assert base64.b64decode(image["image"]) == pdf
    tiff = (await client.get(f"/faxes/{fax_id}/image?desired_format=TIFF", headers=headers)).json()
    assert tiff["file_name"].endswith(".tiff")
    with Image.open(io.BytesIO(base64.b64decode(tiff["image"]))) as picture:
        assert picture.format == "TIFF" and getattr(picture, "n_frames", 1) == 3

    not_downloaded = {"image_downloaded": "false"}
    listed = await client.get("/faxes/received", headers=headers, params=not_downloaded)
    assert len(listed.json()["faxes"]) == 1
    meta_url = f"/faxes/{fax_id}/metadata"
    patched = await client.patch(meta_url, json={"image_downloaded": True}, headers=headers)
    assert patched.status_code == 200 and patched.json()["image_downloaded"] is True
    listed = await client.get("/faxes/received", headers=headers, params=not_downloaded)
    assert listed.json()["faxes"] == []
    bad_patch = await client.patch(meta_url, json={"image_downloaded": "yes"}, headers=headers)
    assert bad_patch.status_code == 400

    assert (await client.delete(f"/faxes/{fax_id}", headers=headers)).status_code == 204
    assert (await client.delete(f"/faxes/{fax_id}", headers=headers)).status_code == 404
    gone = await client.get(f"/faxes/{fax_id}/image", headers=headers)
    assert gone.status_code == 404
    assert_error_shape(gone.json(), "102")
    assert gone.json()["errors"][0]["element_name"] == "image_fax"
    assert (await client.get(f"/_sim/faxes/{fax_id}")).json()["deleted"] is True


# -- faults -------------------------------------------------------------------


async def test_rate_limit_faults(client: httpx.AsyncClient, headers: Headers) -> None:
    await client.post(
        "/_sim/faults",
        json={"method": "GET", "path": "/faxes/sent", "kind": "rate_limit", "retry_after": 7},
    )
    await client.post("/_sim/faults", json={"path": "/faxes/sent", "kind": "rate_limit", "plain": True})
    first = await client.get("/faxes/sent", headers=headers)
    assert first.status_code == 429 and first.headers["retry-after"] == "7"
    assert_error_shape(first.json(), "TOO_MANY_REQUESTS")
    second = await client.get("/faxes/sent", headers=headers)
    assert second.status_code == 429 and "retry-after" not in second.headers
    assert second.text == "Too Many Requests."
    assert second.headers["content-type"].startswith("text/plain")
    assert (await client.get("/faxes/sent", headers=headers)).status_code == 200

    await client.post("/_sim/faults", json={"path": "/faxes/{id}/metadata", "kind": "status", "count": 2})
    [fax_id] = await send(client, headers)
    for expected in (503, 503, 200):
        reply = await client.get(f"/faxes/{fax_id}/metadata", headers=headers)
        assert reply.status_code == expected
    await client.post("/_sim/faults", json={"kind": "status", "status": 500, "count": None})
    assert (await client.get("/health")).status_code == 500
    assert (await client.delete("/_sim/faults")).json() == {"faults": []}
    assert (await client.get("/health")).status_code == 200
    bad = await client.post("/_sim/faults", json={"kind": "explode"})
    assert bad.status_code == 400


async def test_drop_and_drop_after_break_the_connection(
    client: httpx.AsyncClient, headers: Headers, sim: RunningSimulator
) -> None:
    sim.state.add_fault("drop", method="POST", path="/faxes")
    with pytest.raises(httpx.TransportError):
        await client.post("/faxes", json=fax_body(client_data={"client_reference_id": "D1"}), headers=headers)
    sim.state.add_fault("drop_after", method="POST", path="/faxes")
    with pytest.raises(httpx.TransportError):
        await client.post("/faxes", json=fax_body(client_data={"client_reference_id": "D2"}), headers=headers)

    listed = (await client.get("/faxes/sent", headers=headers)).json()["faxes"]
    assert [f["client_tracking_data"]["client_reference_id"] for f in listed] == ["D2"]
    log = (await client.get("/_sim/requests", params={"method": "POST", "path": "/faxes"})).json()
    assert [(r["fault"], r["status"]) for r in log] == [("drop", None), ("drop_after", 201)]
    # The connection pool recovers: the next request works.
    assert (await client.get("/faxes/sent", headers=headers)).status_code == 200


async def test_slow_fault_delays_the_reply(client: httpx.AsyncClient, sim: RunningSimulator) -> None:
    sim.state.add_fault("slow", path="/health", delay_s=0.2)
    started = time.monotonic()
    assert (await client.get("/health")).status_code == 200
    assert time.monotonic() - started >= 0.2


# -- webhooks -----------------------------------------------------------------


class WebhookSink:
    """A tiny HTTP server that records POSTs; the first ``fail_first`` get 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> WebhookSink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append((headers, body))
        status = "500 Oops" if len(self.received) <= self.fail_first else "200 OK"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()


async def test_webhooks_signed_and_retried(
    client: httpx.AsyncClient, headers: Headers, clock: FakeClock, sim: RunningSimulator
) -> None:
    async with WebhookSink(fail_first=1) as sink:
        changes = {
            "webhook_inbound_url": sink.url,
            "webhook_outbound_url": sink.url,
            "webhook_secret": "s3cret",
            "webhook_retry_delay_s": 0.01,
        }
        assert (await client.patch("/_sim/config", json=changes)).status_code == 200
        [inbound] = (await client.post("/_sim/receive", json={"user_id": USER})).json()["fax_ids"]
        await wait_until(lambda: len(sink.received) == 2)  # one 500, then the retry
        [outbound] = await send(client, headers)
        clock.advance(30)
        await wait_until(lambda: len(sink.received) == 3)

        for hook_headers, body in sink.received:
            expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert hook_headers["x-hmac-signature"] == expected
        ids = [httpx.Response(200, content=body).json()["fax_id"] for _, body in sink.received]
        assert ids == [inbound, inbound, outbound]
        outbound_body = httpx.Response(200, content=sink.received[2][1]).json()
        assert outbound_body["transmission_data"]["transmission_status"] == "COMPLETE"
        notes = (await client.get("/notifications", headers=headers)).json()
        await wait_until(lambda: all(n.sent_status == "SUCCESSFUL" for n in sim.state.notifications))
        assert {n["fax_direction"] for n in notes} == {"INBOUND", "OUTBOUND"}
        assert sim.state.notifications[0].attempts == 2


# -- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "element"),
    [
        ({"documents": [txt()]}, "destinations"),
        (fax_body("123"), "destinations[0].fax_number"),
        (fax_body("1866555010a"), "destinations[0].fax_number"),
        ({**fax_body(), "documents": []}, "documents"),
        ({**fax_body(), "documents": [txt()] * 26}, "documents"),
        ({**fax_body(), "documents": [doc("pdf", "AA==")]}, "documents[0].document_type"),
        ({**fax_body(), "documents": [doc("PDF", "%%%")]}, "documents[0].document_content"),
        (fax_body(fax_options={"image_resolution": "HIGH"}), "fax_options.image_resolution"),
        (fax_body(fax_options={"retry_options": {"billable": 11}}), "retry_options.billable"),
        (fax_body(fax_options={"retry_options": {"human_answer": 0}}), "retry_options.human_answer"),
    ],
)
async def test_validation_errors_are_400(
    client: httpx.AsyncClient, headers: Headers, body: dict[str, Any], element: str
) -> None:
    reply = await client.post("/faxes", json=body, headers={**headers, "transaction-id": "v-1"})
    assert reply.status_code == 400
    assert_error_shape(reply.json(), "100")
    assert reply.json()["transaction_id"] == "v-1"
    assert any(e["element_name"].endswith(element) for e in reply.json()["errors"])


async def test_limits(client: httpx.AsyncClient, headers: Headers, sim: RunningSimulator) -> None:
    numbers = [f"1323555{i:04d}" for i in range(1, 56)]
    created = (await client.post("/faxes", json=fax_body(*numbers), headers=headers)).json()
    assert len(created) == 50  # the 5 beyond 50 are ignored
    assert len(sim.state.sent_faxes()) == 50
    sim.state.config.max_body_bytes = 1000
    big = fax_body(fax_options={"cover_page_options": {"message": "x" * 2000}})
    reply = await client.post("/faxes", json=big, headers=headers)
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["element_name"] == "body"
    not_json = await client.post("/faxes", content=b"{", headers=headers)
    assert not_json.status_code == 400


# -- control side ---------------------------------------------------------------


async def test_request_log_stats_and_reset(
    client: httpx.AsyncClient, headers: Headers, sim: RunningSimulator
) -> None:
    [fax_id] = await send(client, headers)
    await details(client, headers, fax_id)
    await details(client, headers, fax_id)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["GET /faxes/{id}/transmission-details"] == 2
    assert stats["POST /faxes"] == 1 and stats["POST /tokens"] == 1
    log = (await client.get("/_sim/requests")).json()
    assert "authorization" not in str(log).lower() and "Bearer" not in str(log)
    assert log[1]["user_id"] == USER and log[1]["status"] == 201
    assert (await client.post("/_sim/clock", json={"advance_s": 31})).json()["offset_s"] == 31
    assert (await details(client, headers, fax_id))["transmission_status"] == "COMPLETE"
    summary = (await client.get("/_sim/faxes")).json()
    assert [(f["fax_id"], f["state"]) for f in summary] == [(fax_id, "COMPLETE")]

    assert (await client.post("/_sim/reset")).json() == {"reset": True}
    assert sim.state.faxes == {} and sim.state.requests == []
    assert (await client.get("/faxes/sent", headers=headers)).status_code == 401

"""eFax's webhook in shapes nobody confirmed, over real HTTP to the running gateway.

A correctly signed notification of any shape is answered 202 and only triggers reads
through the API: the fax named anywhere in it is read by id, a notification naming no
fax makes every mailbox be polled, and an image sent inline is never used. Only a bad
signature or an oversize body is refused. The poll interval is 60 s, so a mail within
a few seconds shows the webhook caused it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE, ALICE_USER, make_pdf, requests_to, sim_get
from tests.e2e.inbound_helpers import done, fax_id, mailboxes, receive, running, settings
from tests.helpers import wait_until
from tests.sink import Received, SmtpSink

SECRET = "whsec-shapes-do-not-log"
HEADER = "X-HMAC-Signature"


@pytest.fixture
async def gw(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    config = settings(
        tmp_path, simulator, sink, mailboxes=mailboxes([ALICE]), inbound={"webhook_secret": SECRET}
    )
    async with running(config, monkeypatch, tmp_path) as gateway:
        yield gateway


def hook_url(gw: Gateway) -> str:
    assert gw.http_server is not None
    return f"{gw.http_server.base_url}/webhooks/efax"


async def post(gw: Gateway, body: bytes, signature: str | None = None, **headers: str) -> httpx.Response:
    if signature is None:
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(hook_url(gw), content=body, headers={HEADER: signature, **headers})


async def configure(sim: RunningSimulator, **changes: object) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        (await client.patch("/_sim/config", json=changes)).raise_for_status()


async def polls(sim: RunningSimulator) -> int:
    return len(await requests_to(sim, "GET", "/faxes/received")())


async def mailed(sink: SmtpSink, fid: str) -> Received:
    found: list[Received] = await wait_until(
        lambda: [m for m in sink.messages if fax_id(m) == fid], timeout=3
    )
    [message] = found
    return message


@pytest.mark.parametrize("shape", ["metadata", "nested", "no_fax_id", "inline_image"])
async def test_the_simulators_notification_of_each_shape_gets_the_fax_mailed(
    gw: Gateway, simulator: RunningSimulator, sink: SmtpSink, shape: str
) -> None:
    await configure(
        simulator, webhook_inbound_url=hook_url(gw), webhook_secret=SECRET, webhook_body_shape=shape
    )
    before = await polls(simulator)
    [fid] = await receive(simulator, ALICE_USER)
    await mailed(sink, fid)
    [note] = await sim_get(simulator, "/_sim/webhooks")
    assert note["sent_status"] == "SUCCESSFUL" and note["last_status"] == 202
    read_by_id = await requests_to(simulator, "GET", f"/faxes/{fid}/metadata")()
    if shape == "no_fax_id":
        assert await polls(simulator) > before and read_by_id == []  # found by polling
    else:
        assert await polls(simulator) == before and len(read_by_id) >= 1  # read by its id
    await wait_until(done(gw, 1))


async def test_an_inline_image_is_never_used(
    gw: Gateway, simulator: RunningSimulator, sink: SmtpSink
) -> None:
    real = make_pdf(pages=2, marker="what eFax stored")
    [fid] = await receive(simulator, ALICE_USER, pdf_base64=base64.b64encode(real).decode())
    forged = make_pdf(pages=1, marker="what the notification claims")
    body = json.dumps(
        {"fax_id": fid, "direction": "INBOUND", "pages": 1, "image": base64.b64encode(forged).decode()}
    ).encode()
    assert (await post(gw, body)).status_code == 202
    message = await mailed(sink, fid)
    [attachment] = list(message.message.iter_attachments())
    assert attachment.get_content() == real


@pytest.mark.parametrize(
    "shape",
    ["deep", "fax-object", "camel", "list", "sns", "form", "array", "bad-direction"],
)
async def test_a_fax_id_anywhere_in_the_body_is_read_by_id(
    gw: Gateway, simulator: RunningSimulator, sink: SmtpSink, shape: str
) -> None:
    [fid] = await receive(simulator, ALICE_USER)
    bodies = {
        "deep": {"event": {"payload": {"items": [{"fax_id": fid.upper()}]}}},
        "fax-object": {"type": "inbound", "fax": {"id": fid}},
        "camel": {"FaxId": fid, "FaxDirection": "inbound"},
        "list": {"fax_ids": [fid, "not-an-id"]},
        "sns": {"Type": "Notification", "Message": json.dumps({"fax_id": fid, "direction": "INBOUND"})},
        "array": [{"fax_id": fid}],
        "bad-direction": {"fax_id": fid, "direction": "SIDEWAYS"},
    }
    before = await polls(simulator)
    if shape == "form":
        response = await post(gw, f"fax_id={fid}&direction=INBOUND".encode())
    else:
        response = await post(gw, json.dumps(bodies[shape]).encode())
    assert response.status_code == 202, response.text
    assert response.json()["fax_ids"] == [fid]
    await mailed(sink, fid)
    assert await polls(simulator) == before  # read by id, not by a poll


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b"[]", b'{"event": "fax.received"}', b'{"fax_id": "../../tokens"}', b""],
    ids=["text", "empty-array", "no-id", "bad-id", "empty"],
)
async def test_a_body_naming_no_fax_polls_every_mailbox(
    gw: Gateway, simulator: RunningSimulator, sink: SmtpSink, body: bytes
) -> None:
    [fid] = await receive(simulator, ALICE_USER)
    before = await polls(simulator)
    response = await post(gw, body)
    assert response.status_code == 202
    assert response.json() == {"accepted": True, "fax_ids": [], "polling": True}
    await mailed(sink, fid)
    assert await polls(simulator) > before
    paths = [r["path"] for r in await sim_get(simulator, "/_sim/requests")]
    assert "/faxes/../../tokens/metadata" not in paths


async def test_only_a_bad_signature_or_an_oversize_body_is_refused(
    gw: Gateway, simulator: RunningSimulator
) -> None:
    body = json.dumps({"fax_id": str(uuid.uuid4())}).encode()
    assert (await post(gw, body, signature="0" * 64)).status_code == 401
    assert (await post(gw, body, signature="")).status_code == 401
    big = json.dumps({"fax_id": str(uuid.uuid4()), "image": "A" * 1_000_001}).encode()
    assert (await post(gw, big)).status_code == 400
    before = await polls(simulator)
    assert (await post(gw, b"\x00\xff binary")).status_code == 202
    await wait_until(lambda: _more_polls(simulator, before))


async def _more_polls(simulator: RunningSimulator, before: int) -> bool:
    return await polls(simulator) > before

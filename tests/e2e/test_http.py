"""The HTTP side of serve: /healthz, /readyz, /metrics and eFax's webhook, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind
from tests.e2e.conftest import ALICE, ALICE_USER, requests_to, sim_get
from tests.e2e.inbound_helpers import done, mailboxes, ok_patches, poller, receive, running, settings
from tests.helpers import wait_until
from tests.sink import SmtpSink

SECRET = "whsec-test-do-not-log"
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


def url(gw: Gateway) -> str:
    assert gw.http_server is not None
    return str(gw.http_server.base_url)


def sign(body: bytes, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


async def post_webhook(gw: Gateway, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url(gw), timeout=10) as client:
        return await client.post("/webhooks/efax", content=body, headers=headers or {})


async def get(gw: Gateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url(gw), timeout=10) as client:
        return await client.get(path)


async def test_healthz_and_readyz_when_all_is_well(gw: Gateway) -> None:
    live = await get(gw, "/healthz")
    assert live.status_code == 200 and live.text == "ok\n"
    readers = gw.readers
    assert readers is not None
    assert await readers.wait_ready(20)  # a reader starts beside the rest, ready soon after
    ready = await get(gw, "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "ready": True,
        "checks": {"store": "ok", "efax": "ok", "readers": "ok", "polls": "ok"},
    }


async def test_readyz_says_not_ready_until_a_reader_is(gw: Gateway) -> None:
    readers = gw.readers
    assert readers is not None
    await readers.stop()  # none left: mails would get 451
    ready = await get(gw, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["readers"].startswith("none ready")


async def test_readyz_fails_when_the_last_poll_is_older_than_three_intervals(gw: Gateway) -> None:
    assert gw.store is not None
    await gw.store.record_poll(ALICE_USER, now=time.time() - 3 * 60 - 5, ok=True)
    ready = await get(gw, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["polls"].startswith(f"stale: {ALICE_USER}")


async def test_readyz_fails_when_efax_is_unreachable(gw: Gateway, simulator: RunningSimulator) -> None:
    await simulator.stop()
    ready = await get(gw, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["efax"] == "unreachable"


async def test_metrics_count_jobs_faxes_polls_and_efax_calls(
    gw: Gateway, simulator: RunningSimulator
) -> None:
    await receive(simulator, ALICE_USER, count=2)
    await poller(gw).poll_once()
    await wait_until(done(gw, 2))
    response = await get(gw, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'faxgw_jobs{kind="deliver",state="done"} 2.0' in text
    assert 'faxgw_jobs{kind="dispatch",state="queued"} 0.0' in text
    assert "faxgw_faxes_received_total 2.0" in text
    assert "faxgw_received_delivered_total 2.0" in text
    assert 'faxgw_efax_call_seconds_count{outcome="200",route="GET /faxes/received"}' in text
    assert 'faxgw_efax_call_seconds_count{outcome="200",route="PATCH /faxes/{id}/metadata"} 2.0' in text
    assert "faxgw_poll_lag_seconds" in text
    assert "faxgw_smtp_sessions_total" in text


async def test_a_signed_webhook_delivers_the_fax_within_2_s_without_a_poll(
    gw: Gateway, simulator: RunningSimulator, sink: SmtpSink
) -> None:
    async with httpx.AsyncClient(base_url=simulator.base_url) as client:
        changes = {"webhook_inbound_url": url(gw) + "/webhooks/efax", "webhook_secret": SECRET}
        (await client.patch("/_sim/config", json=changes)).raise_for_status()
    lists_before = len(await requests_to(simulator, "GET", "/faxes/received")())
    started = time.monotonic()
    [fid] = await receive(simulator, ALICE_USER)
    await wait_until(lambda: sink.messages, timeout=2)
    assert time.monotonic() - started < 2
    assert [str(m.message["X-Fax-Id"]) for m in sink.messages] == [fid]
    assert len(await requests_to(simulator, "GET", "/faxes/received")()) == lists_before  # no poll
    await wait_until(done(gw, 1))
    assert await ok_patches(simulator) == [fid]
    [note] = await sim_get(simulator, "/_sim/webhooks")
    assert note["sent_status"] == "SUCCESSFUL" and note["last_status"] == 202


async def test_unsigned_and_forged_webhooks_are_refused_with_one_log_line_each(
    gw: Gateway, simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    [fid] = await receive(simulator, ALICE_USER)
    body = json.dumps({"fax_id": fid, "direction": "INBOUND"}).encode()
    caplog.set_level(logging.INFO, logger="gateway")
    unsigned = await post_webhook(gw, body)
    forged = await post_webhook(gw, body, {HEADER: sign(body, "guessed-secret").hex()})
    tampered = await post_webhook(gw, body + b" ", {HEADER: sign(body).hex()})
    assert [r.status_code for r in (unsigned, forged, tampered)] == [401, 401, 401]
    refusals = [r for r in caplog.records if r.name.startswith("gateway.http")]
    assert len(refusals) == 3
    assert all("webhook refused" in r.getMessage() for r in refusals)
    assert SECRET not in caplog.text and sign(body).hex() not in caplog.text
    assert await requests_to(simulator, "GET", f"/faxes/{fid}/metadata")() == []  # nothing was read
    assert gw.store is not None and await gw.store.received(fid) is None


async def test_signatures_in_hex_of_either_case_or_base64_are_accepted(gw: Gateway) -> None:
    for encoding in ("hex-upper", "hex-lower", "base64", "base64url-unpadded", "sha256="):
        body = json.dumps({"fax_id": str(uuid.uuid4()), "direction": "INBOUND"}).encode()
        digest = sign(body)
        value = {
            "hex-upper": digest.hex().upper(),
            "hex-lower": digest.hex(),
            "base64": base64.b64encode(digest).decode(),
            "base64url-unpadded": base64.urlsafe_b64encode(digest).decode().rstrip("="),
            "sha256=": "sha256=" + digest.hex(),
        }[encoding]
        response = await post_webhook(gw, body, {HEADER: value})
        assert response.status_code == 202, (encoding, response.text)


async def test_a_signed_body_of_an_unexpected_shape_gets_202(gw: Gateway) -> None:
    """Only a trigger: a poll when no fax id is found (tests/e2e/test_webhook_shapes.py)."""
    bodies = {
        "not-json": b"not json",
        "array": b"[]",
        "no-fax-id": b'{"direction": "INBOUND"}',
        "bad-fax-id": b'{"fax_id": "../../tokens"}',
        "bad-direction": b'{"fax_id": "ec048b91-3589-489b-8e95-a067e50d92a8", "direction": "SIDEWAYS"}',
    }
    for name, body in bodies.items():
        response = await post_webhook(gw, body, {HEADER: sign(body).hex()})
        assert response.status_code == 202, name


async def test_a_body_larger_than_webhook_max_bytes_gets_400(gw: Gateway) -> None:
    body = json.dumps({"fax_id": str(uuid.uuid4()), "pad": "x" * 1_000_001}).encode()
    response = await post_webhook(gw, body, {HEADER: sign(body).hex()})
    assert response.status_code == 400


async def test_an_outbound_notification_makes_the_tracking_job_due_now(gw: Gateway) -> None:
    assert gw.store is not None
    fid = str(uuid.uuid4())
    later = time.time() + 3600
    await gw.store.enqueue(JobKind.TRACK, fid, {}, now=time.time(), run_after=later)
    body = json.dumps({"fax_id": fid, "direction": "OUTBOUND"}).encode()
    response = await post_webhook(gw, body, {HEADER: sign(body).hex()})
    assert response.status_code == 202
    job = await gw.store.find_job(JobKind.TRACK, fid)
    assert job is not None
    assert job.run_after < later or job.state != "queued"  # due now (or already taken by the tracker)


async def test_the_webhook_is_refused_when_no_secret_is_configured(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, simulator, sink, mailboxes=mailboxes([ALICE]))
    async with running(config, monkeypatch, tmp_path) as gateway:
        body = json.dumps({"fax_id": str(uuid.uuid4())}).encode()
        response = await post_webhook(gateway, body, {HEADER: sign(body, "").hex()})
    assert response.status_code == 403


async def test_an_outbound_notification_reports_a_delivered_fax_without_waiting_for_the_schedule(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next scheduled status read is an hour away; the signed webhook makes it now."""
    import hashlib
    import hmac

    import httpx

    from tests.e2e.conftest import gateway_settings, pdf_mail, sim_get, smtp_send
    from tests.helpers import wait_until

    monkeypatch.chdir(tmp_path)
    config = gateway_settings(
        tmp_path,
        simulator.base_url,
        tracking={"first_check_s": 3600},
        inbound={"webhook_secret": "outbound-hook-secret"},
        workers={"poll_idle_s": 5},  # idle workers would not look again for 5 s
    )
    async with Gateway(config) as gateway:
        assert (await smtp_send(gateway.smtp_port, pdf_mail())).code == 250
        [fax] = await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))
        await wait_until(lambda: _state_is(simulator, fax["fax_id"], "COMPLETE"))
        body = json.dumps({"fax_id": fax["fax_id"], "direction": "OUTBOUND"}).encode()
        signature = hmac.new(b"outbound-hook-secret", body, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(base_url=gateway.http_server.base_url) as client:
            started = time.monotonic()
            response = await client.post("/webhooks/efax", content=body, headers={HEADER: signature})
        assert response.status_code == 202
        reports = tmp_path / "mail" / "new"
        await wait_until(lambda: reports.exists() and any(reports.iterdir()), timeout=2)
        assert time.monotonic() - started < 2
    [report] = list(reports.iterdir())
    assert b"Subject: Fax delivered: Contract" in report.read_bytes()


async def _state_is(simulator: RunningSimulator, fax_id: str, state: str) -> bool:
    from tests.e2e.conftest import sim_get

    fax: dict[str, Any] = await sim_get(simulator, f"/_sim/faxes/{fax_id}")
    return str(fax["state"]) == state

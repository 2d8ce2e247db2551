"""Mail in, fax out: smtplib -> gateway SMTP -> store -> dispatcher -> simulator, all real."""

from __future__ import annotations

import base64
import io
import sqlite3
from email.message import EmailMessage
from typing import Any

from pypdf import PdfReader

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import ALICE_USER, make_pdf, pdf_mail, requests_to, sim_get, sim_post, smtp_send
from tests.helpers import wait_until


async def one_fax(sim: RunningSimulator, timeout: float = 5.0) -> dict[str, Any]:
    faxes = await wait_until(lambda: sim_get(sim, "/_sim/faxes"), timeout=timeout)
    assert len(faxes) == 1, faxes
    full: dict[str, Any] = await sim_get(sim, f"/_sim/faxes/{faxes[0]['fax_id']}")
    return full


async def test_pdf_attachment_is_faxed_once_with_the_mailbox_user_id(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    pdf = make_pdf(pages=2, marker="the contract")
    result = await smtp_send(gateway.smtp_port, pdf_mail(to="1-323-555-1212@fax.local", pdf=pdf))
    assert result.code == 250 and result.text.startswith("2.0.0 Ok: queued as ")
    job_id = result.job_id

    fax = await one_fax(simulator)
    posts = await requests_to(simulator, "POST", "/faxes")()
    assert len(posts) == 1
    assert fax["user_id"] == ALICE_USER
    assert fax["transaction_id"] == job_id
    assert fax["client_data"]["client_reference_id"] == job_id
    assert fax["destination_fax_number"] in ("13235551212", "3235551212")
    documents = fax["documents"]
    assert len(documents) == 1 and documents[0]["document_type"] == "PDF"
    assert base64.b64decode(documents[0]["document_content"]) == pdf
    tokens = await requests_to(simulator, "POST", "/tokens")()
    assert len(tokens) == 1

    await wait_until(lambda: _dispatch_state(gateway, job_id, "done"))
    # The PDF was faxed from its base64 text in the stored mail: it is not stored twice.
    with sqlite3.connect(gateway.settings.database.url.removeprefix("sqlite:///")) as conn:
        stored = conn.execute("SELECT length(content), raw_start FROM documents").fetchall()
    assert len(stored) == 1 and stored[0][0] == 0 and stored[0][1] > 0


async def _dispatch_state(gateway: Gateway, job_id: str, state: str) -> bool:
    assert gateway.store is not None
    job = await gateway.store.find_job("dispatch", job_id)  # type: ignore[arg-type]
    return job is not None and job.state == state


async def test_international_and_several_recipients_in_one_mail(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    gateway.settings.policy.allowed_countries = ["US", "GB"]
    msg = pdf_mail(to='"Bob Smith" <13235551212@fax.local>, "+44 20 7946 0958"@fax.local')
    result = await smtp_send(
        gateway.smtp_port, msg, rcpts=["13235551212@fax.local", '"+44 20 7946 0958"@fax.local']
    )
    assert result.code == 250, result
    faxes = await wait_until(lambda: _at_least(lambda: sim_get(simulator, "/_sim/faxes"), 2))
    full = [await sim_get(simulator, f"/_sim/faxes/{f['fax_id']}") for f in faxes]
    assert len(await requests_to(simulator, "POST", "/faxes")()) == 1  # one request, two faxes
    assert sorted((f["destination_fax_number"].lstrip("1"), f["to_name"] or None) for f in full) == [
        ("+442079460958", None),
        ("3235551212", "Bob Smith"),
    ]


async def test_body_only_mail_is_faxed_as_its_text(gateway: Gateway, simulator: RunningSimulator) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "13235551212@fax.local"
    msg["Subject"] = "Note"
    msg.set_content("Please call me back about the invoice.\n")
    assert (await smtp_send(gateway.smtp_port, msg)).code == 250
    fax = await one_fax(simulator)
    [document] = fax["documents"]
    assert document["document_type"] == "PDF"  # set by the gateway, not eFax's text renderer
    pdf = PdfReader(io.BytesIO(base64.b64decode(document["document_content"])), strict=True)
    assert "call me back" in pdf.pages[0].extract_text()


async def test_transient_errors_are_retried_into_exactly_one_fax(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    """A 429 is a refusal before any work: retried (a 5xx is an unknown outcome, test_never_twice)."""
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "POST", "path": "/faxes", "kind": "rate_limit", "retry_after": 0, "count": 3},
    )
    assert (await smtp_send(gateway.smtp_port, pdf_mail())).code == 250
    await one_fax(simulator)
    posts = await wait_until(lambda: _at_least(requests_to(simulator, "POST", "/faxes"), 4))
    assert [p["status"] for p in posts] == [429, 429, 429, 201]
    assert len(await sim_get(simulator, "/_sim/faxes")) == 1


async def _at_least(read, n: int):  # type: ignore[no-untyped-def]
    items = await read()
    return items if len(items) >= n else None


async def test_connection_dropped_after_the_fax_was_created_sends_no_second_fax(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop_after", "count": 1}
    )
    result = await smtp_send(gateway.smtp_port, pdf_mail())
    assert result.code == 250
    await wait_until(lambda: _dispatch_state(gateway, result.job_id, "done"), timeout=10)
    assert len(await sim_get(simulator, "/_sim/faxes")) == 1
    assert len(await requests_to(simulator, "POST", "/faxes")()) == 1
    sent_lists = await requests_to(simulator, "GET", "/faxes/sent")()
    assert sent_lists, "the dispatcher must look for the fax before sending again"
    assert gateway.store is not None
    faxes = await gateway.store.faxes(result.job_id)
    assert len(faxes) == 1


async def test_stale_token_is_renewed_once(gateway: Gateway, simulator: RunningSimulator) -> None:
    assert (await smtp_send(gateway.smtp_port, pdf_mail())).code == 250
    await one_fax(simulator)
    await sim_post(simulator, "/_sim/tokens/expire", {})
    second = pdf_mail()
    second.replace_header("Message-ID", "<original-2@example.com>")
    result = await smtp_send(gateway.smtp_port, second)
    await wait_until(lambda: _dispatch_state(gateway, result.job_id, "done"))
    assert len(await sim_get(simulator, "/_sim/faxes")) == 2
    assert len(await requests_to(simulator, "POST", "/tokens")()) == 2
    statuses = [p["status"] for p in await requests_to(simulator, "POST", "/faxes")()]
    assert statuses == [201, 401, 201]


async def test_permanent_refusal_fails_the_job_with_the_reason(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "POST", "path": "/faxes", "kind": "status", "status": 400, "count": 1},
    )
    result = await smtp_send(gateway.smtp_port, pdf_mail())
    await wait_until(lambda: _dispatch_state(gateway, result.job_id, "failed"))
    assert gateway.store is not None
    job = await gateway.store.find_job("dispatch", result.job_id)  # type: ignore[arg-type]
    assert job is not None and job.last_error
    assert len(await requests_to(simulator, "POST", "/faxes")()) == 1


async def test_failed_lookup_after_unknown_outcome_never_sends_blind(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    """drop_after creates the fax but loses the reply; the look-up then fails twice."""
    await sim_post(
        simulator, "/_sim/faults", {"method": "POST", "path": "/faxes", "kind": "drop_after", "count": 1}
    )
    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "GET", "path": "/faxes/sent", "kind": "status", "status": 503, "count": 2},
    )
    result = await smtp_send(gateway.smtp_port, pdf_mail())
    await wait_until(lambda: _dispatch_state(gateway, result.job_id, "done"), timeout=10)
    assert len(await sim_get(simulator, "/_sim/faxes")) == 1
    assert len(await requests_to(simulator, "POST", "/faxes")()) == 1
    assert [r["status"] for r in await requests_to(simulator, "GET", "/faxes/sent")()][:3] == [503, 503, 200]

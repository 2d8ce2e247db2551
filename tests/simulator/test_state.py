"""The simulator's state, config and helpers in-process, plus the switchable
behaviours seen over HTTP."""

from __future__ import annotations

import base64
import socket
import time

import httpx
import pytest

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.documents import blank_pdf, count_pages, pdf_page_count
from gateway.simulator.faxes import DEFAULT_OUTCOMES, FaxState, outcome_for
from gateway.simulator.listing import parse_timestamp
from gateway.simulator.server import RunningSimulator
from gateway.simulator.state import SimulatorState
from gateway.simulator.validation import SendRequest, parse_send_request
from tests.simulator.conftest import USER, FakeClock, fax_body, get_token, wait_until


def request(*numbers: str) -> SendRequest:
    parsed = parse_send_request(fax_body(*numbers))
    assert isinstance(parsed, SendRequest)
    return parsed


def test_states_follow_the_clock_and_cancel() -> None:
    clock = FakeClock()
    state = SimulatorState(SimulatorConfig(clock=clock, complete_after_s=9, cancel_delay_s=2))
    ok, never, late_cancel = state.create_faxes(
        request("13235550101", "13235559999", "13235550102"), user_id=USER
    )
    assert state.status(ok).state is FaxState.NEW
    clock.advance(3)
    assert state.status(ok).state is FaxState.INPROGRESS
    assert state.cancel(never)
    clock.advance(5)  # t=8: the cancel of `never` took effect at t=5
    assert state.cancel(late_cancel)  # would take effect at t=10, after the fax ends at t=9
    assert (state.status(never).state, state.status(never).error_code) == (FaxState.CANCELED, "E45")
    clock.advance(2)
    assert state.status(late_cancel).state is FaxState.COMPLETE
    assert state.status(ok).error_code == "SFAX"
    assert not state.cancel(ok)
    due = state.due_notifications()
    assert due == []  # no webhook URL configured
    assert all(f.final_notified for f in (ok, never, late_cancel))


def test_outcome_table_is_immutable_and_copied() -> None:
    state = SimulatorState()
    state.set_outcome("550000", "SFAX")
    assert DEFAULT_OUTCOMES["0000"] == "E41"
    with pytest.raises(TypeError):
        DEFAULT_OUTCOMES["1111"] = "E42"  # type: ignore[index]
    assert outcome_for("+1 323 555 0000", state.outcomes) == "SFAX"  # longest suffix wins
    assert outcome_for("13235550000", DEFAULT_OUTCOMES) == "E41"
    with pytest.raises(ValueError):
        state.set_outcome("12a4", "E41")
    with pytest.raises(ValueError):
        state.set_outcome("1234", "BUSY")


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-10T15:07:01Z",
        "2024-05-10T15:07:01.000Z",
        "2024-05-10T15:07:01+00:00",
        "2024-05-10T15:07:01.000+0000",
        "2024-05-10T15:07:01.000000000+00:00",
        "2024-05-10T15:07:01 00:00",  # an unencoded + read as a space
        "2024-05-10T15:07:01",
        "2024-05-10T17:07:01+02:00",
    ],
)
def test_lenient_timestamps(text: str) -> None:
    assert parse_timestamp(text) == 1715353621.0


def test_pages_and_generated_pdfs() -> None:
    assert count_pages("TXT", b"line\n" * 61) == 2
    assert count_pages("TXT", b"") == 1
    assert count_pages("PDF", blank_pdf(4)) == 4
    assert count_pages("PDF", b"not a pdf") == 1
    assert count_pages("DOCX", b"whatever") == 1
    state = SimulatorState()
    [fax_id] = state.receive(USER, pages=5)
    image = state.faxes[fax_id].image
    assert image is not None and pdf_page_count(image) == 5


def test_config_changes_are_checked_and_reset_restores() -> None:
    state = SimulatorState(SimulatorConfig(complete_after_s=1))
    assert state.update_config({"complete_after_s": 3, "list_page_info": True}) == []
    assert state.config.complete_after_s == 3.0
    assert state.update_config({"nope": 1})
    assert state.update_config({"list_page_info": "yes"})
    assert state.update_config({"clock": 5})
    assert state.update_config({"seconds_per_page": 10, "timestamp_style": "odd"})
    assert state.config.seconds_per_page == 30  # rolled back with the bad value
    state.receive(USER)
    state.reset()
    assert (state.config.complete_after_s, state.config.list_page_info) == (1, False)
    assert state.faxes == {}
    with pytest.raises(ValueError):
        SimulatorConfig(status_complete_spelling="DONE")


def test_request_log_is_capped_but_stats_count_everything() -> None:
    state = SimulatorState(SimulatorConfig(request_log_limit=50))
    for _ in range(120):
        state.record_request(
            method="GET", path="/health", query="", user_id=None, transaction_id=None, route="/health"
        )
    assert len(state.requests) <= 50
    assert state.stats() == {"GET /health": 120}


async def test_running_simulator_context_manager_and_switches() -> None:
    config = SimulatorConfig(
        complete_after_s=0,
        create_status=200,
        drop_leading_one=False,
        cancel_reply_text="ACCEPTED",
        image_marks_downloaded=True,
        timestamp_style="offset",
    )
    async with RunningSimulator(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}"
        headers = {"Authorization": f"Bearer {await get_token(http)}", "user-id": USER}
        created = await http.post("/faxes", json=fax_body("13235559999"), headers=headers)
        assert created.status_code == 200
        assert created.json()[0]["destination_fax_number"] == "13235559999"
        fax_id = created.json()[0]["fax_id"]
        cancel = await http.post(f"/faxes/{fax_id}/cancel", headers=headers)
        assert (cancel.status_code, cancel.text) == (202, "ACCEPTED")
        meta = (await http.get(f"/faxes/{fax_id}/metadata", headers=headers)).json()
        assert meta["completed_timestamp"].endswith("+00:00")
        assert meta["fax_status"] == "CANCELED" and meta["image_downloaded"] is False
        await http.get(f"/faxes/{fax_id}/image", headers=headers)
        meta = (await http.get(f"/faxes/{fax_id}/metadata", headers=headers)).json()
        assert meta["image_downloaded"] is True
        unauthorised = await http.get(f"/faxes/{fax_id}/image", headers={"user-id": USER})
        assert unauthorised.status_code == 401
    with pytest.raises(RuntimeError):
        _ = sim.port
    await sim.stop()  # stopping twice is harmless


async def test_stop_is_prompt_while_webhooks_retry() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = SimulatorConfig(
        webhook_inbound_url=f"http://127.0.0.1:{dead_port}/hook",
        webhook_retry_delay_s=30,
        webhook_max_attempts=3,
    )
    sim = RunningSimulator(config)
    await sim.start()
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        pdf = base64.b64encode(blank_pdf(1)).decode()
        await http.post("/_sim/receive", json={"user_id": USER, "pdf_base64": pdf})
    notes = sim.state.notifications
    await wait_until(lambda: bool(notes) and notes[0].last_error != "")  # first attempt failed
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 2
    assert sim.state.notifications[0].sent_status == "QUEUED"

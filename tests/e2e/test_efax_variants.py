"""The whole gateway against the simulator answering the unconfirmed points the other way.

No transmission-details path (or only the singular one) with unknown routes answered
403, failures reported as COMPLETE with their code, the create reply as one object or
wrapped in ``faxes``, error bodies of API Gateway's shape: a mail to a good number is
still reported delivered, one to a busy number failed with E41, never "delivered".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import pdf_mail, sim_get, smtp_send
from tests.e2e.tracking_helpers import reports_for, start_gateway
from tests.helpers import wait_until

VARIANTS: list[dict[str, Any]] = [
    {"status_paths": "none", "unknown_route_status": 403, "failure_status": "COMPLETE",
     "create_reply_shape": "object"},
    {"status_paths": "singular", "unknown_route_status": 403, "failure_status": "COMPLETE",
     "status_complete_spelling": "COMPLETED", "create_reply_shape": "faxes", "error_body_shape": "message"},
]  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS, ids=["metadata-only", "singular-completed"])
async def test_delivered_and_failed_are_told_apart_whatever_the_replies_look_like(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch, variant: dict[str, Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    async with httpx.AsyncClient(base_url=simulator.base_url, timeout=10) as control:
        (await control.patch("/_sim/config", json=variant)).raise_for_status()
    gw = await start_gateway(tmp_path, simulator)
    try:
        ok = await smtp_send(gw.smtp_port, pdf_mail(to="13235551212@fax.local"))
        busy = await smtp_send(gw.smtp_port, pdf_mail(to="13235550000@fax.local", subject="Busy"))
        assert ok.code == busy.code == 250
        delivered = await wait_until(lambda: reports_for(tmp_path, ok.job_id), timeout=10)
        failed = await wait_until(lambda: reports_for(tmp_path, busy.job_id), timeout=10)
        assert gw.store is not None
        [busy_fax] = await gw.store.faxes(busy.job_id)
        [ok_fax] = await gw.store.faxes(ok.job_id)
    finally:
        await gw.stop()
    assert delivered[0].message["Subject"] == "Fax delivered: Contract"
    assert failed[0].message["Subject"] == "Fax failed: Busy"
    assert "The fax number was busy (eFax code E41)" in failed[0].text
    assert (busy_fax.status, busy_fax.detail["error_code"]) == ("failed", "E41")
    assert busy_fax.detail["raw_status"] == variant.get("status_complete_spelling", "COMPLETE")
    source = "metadata" if variant["status_paths"] == "none" else "transmission-details"
    assert ok_fax.status == "delivered" and ok_fax.detail["source"] == source
    [sim_busy] = [f for f in await sim_get(simulator, "/_sim/faxes") if f["fax_id"] == busy_fax.fax_id]
    assert sim_busy["error_code"] == "E41"

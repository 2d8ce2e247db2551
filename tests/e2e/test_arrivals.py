"""Mail first: while several mails are coming in, all but the first worker of a kind wait;
and mails are read by a reader process beside the event loop."""

from __future__ import annotations

import asyncio
import base64
import email.policy
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.smtp.arrivals import Arrivals
from tests.e2e.conftest import ALICE, gateway_settings, make_pdf, pdf_mail, sim_get, smtp_send
from tests.helpers import wait_until


async def _open_data(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A session that has sent DATA and the first half of a mail."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    for command in ("EHLO client.example.com", f"MAIL FROM:<{ALICE}>", "RCPT TO:<13235551212@fax.local>"):
        writer.write(command.encode() + b"\r\n")
        while (line := await reader.readline())[3:4] == b"-":
            pass
        assert line[:1] == b"2", line
    writer.write(b"DATA\r\n")
    assert (await reader.readline()).startswith(b"354")
    return reader, writer


async def test_mails_in_their_data_phase_make_the_deferring_workers_wait(gateway: Gateway) -> None:
    by_name = {w.name: w for w in gateway.workers}
    arrivals = by_name["dispatch-1"].defer_to
    assert isinstance(arrivals, Arrivals)
    assert by_name["dispatch-0"].defer_to is None and by_name["track-0"].defer_to is None
    assert by_name["deliver-1"].defer_to is arrivals and by_name["deliver-0"].defer_to is None
    assert by_name["receive"].defer_to is None  # the poller claims no job: nothing to defer
    assert not arrivals.busy

    data = pdf_mail().as_bytes(policy=email.policy.SMTP)
    half = data.index(b"\r\n\r\n") + 4
    sessions = [await _open_data(gateway.smtp_port) for _ in range(2)]
    for _, writer in sessions:
        writer.write(data[:half])
    await wait_until(lambda: arrivals.receiving == 2)
    assert arrivals.busy
    started = time.monotonic()
    waiting = asyncio.ensure_future(arrivals.quiet())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # a deferring worker would still be waiting

    for reader, writer in sessions:
        writer.write(data[half:] + b".\r\n")
        assert (await reader.readline()).startswith(b"250 2.0.0 Ok: queued as ")
        writer.close()
    await asyncio.wait_for(waiting, timeout=2)
    assert time.monotonic() - started < arrivals.max_wait_s + 0.5
    assert arrivals.receiving == 0 and not arrivals.busy


async def test_a_deferring_worker_waits_at_most_max_wait_s() -> None:
    arrivals = Arrivals(busy_at=1, max_wait_s=0.2)
    await asyncio.wait_for(arrivals.quiet(), timeout=0.05)  # quiet: no wait at all
    with arrivals.receiving_mail():
        started = time.monotonic()
        await arrivals.quiet()
        assert 0.15 < time.monotonic() - started < 1.0
        assert arrivals.busy
    assert not arrivals.busy


def _read_by(gateway: Gateway, where: str) -> float:
    value = gateway.metrics.registry.get_sample_value("faxgw_smtp_mails_read_total", {"where": where})
    return value or 0.0


async def test_mails_are_read_by_a_reader_process_and_one_killed_loses_nothing(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"reader_processes": 1})
    async with Gateway(settings) as gateway:
        await _through_readers_one_killed(gateway, simulator)


async def _through_readers_one_killed(gateway: Gateway, simulator: RunningSimulator) -> None:
    readers = gateway.readers
    assert readers is not None
    pdfs: list[bytes] = []

    async def send(marker: str) -> float:
        pdfs.append(make_pdf(marker=marker))
        before = _read_by(gateway, "reader")
        result = await smtp_send(gateway.smtp_port, pdf_mail(pdf=pdfs[-1]))
        assert result.code == 250, result
        return _read_by(gateway, "reader") - before

    # Every mail is read by a reader process, even while the first one starts.
    assert await send("mail 0") == 1
    (pid,) = await wait_until(lambda: readers.idle_pids)
    os.kill(pid, signal.SIGKILL)  # the idle one dies: replaced at once, nothing read here
    await wait_until(lambda: pid not in readers.pids and readers.idle_pids)
    assert await send("after the kill") == 1
    assert _read_by(gateway, "loop") == _read_by(gateway, "thread") == 0

    async def all_faxed() -> list[dict[str, Any]] | None:
        faxes: list[dict[str, Any]] = await sim_get(simulator, "/_sim/faxes")
        return faxes if len(faxes) >= len(pdfs) else None

    faxes = await wait_until(all_faxed)
    assert len(faxes) == len(pdfs)  # every mail once, none twice
    faxed = [await sim_get(simulator, f"/_sim/faxes/{f['fax_id']}") for f in faxes]
    assert sorted(base64.b64decode(f["documents"][0]["document_content"]) for f in faxed) == sorted(pdfs)

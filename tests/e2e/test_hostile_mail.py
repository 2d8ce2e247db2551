"""A mail that a reader process gets stuck on, over real SMTP: refused within its budget,
read nowhere else, while other mails go on; a client that hangs up takes its parse with it."""

from __future__ import annotations

import asyncio
import email.policy
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import gateway_settings, pdf_mail, sim_get, smtp_send
from tests.helpers import wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _audit_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _stuck_reader(gateway: Gateway) -> int:
    """Stop (SIGSTOP) the reader that the next mail goes to: stuck, as far as anyone can tell."""
    readers = gateway.readers
    assert readers is not None
    pids: list[int] = await wait_until(lambda: readers.idle_pids, timeout=20)
    os.kill(pids[0], signal.SIGSTOP)
    return pids[0]


async def test_a_stuck_mail_is_refused_in_its_time_while_the_next_one_is_faxed(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    settings = gateway_settings(
        tmp_path,
        simulator.base_url,
        smtp={"reader_processes": 1, "reader_processes_max": 3, "reader_timeout_s": 3},
        logging={"audit_file": str(audit)},
    )
    async with Gateway(settings) as gateway:
        stuck = await _stuck_reader(gateway)
        started = time.monotonic()
        hostile = asyncio.ensure_future(smtp_send(gateway.smtp_port, pdf_mail(subject="Stuck")))
        readers = gateway.readers
        assert readers is not None
        await wait_until(lambda: stuck not in readers.idle_pids)  # it has the mail
        canary = await smtp_send(gateway.smtp_port, pdf_mail(subject="Canary"))
        canary_s = time.monotonic() - started
        refused = await hostile
        hostile_s = time.monotonic() - started

        assert canary.code == 250, canary
        assert canary_s < 2.5  # not behind the stuck one
        assert refused.code == 554 and refused.text.startswith("5.6.0 This mail takes too long to read")
        assert 3 <= hostile_s < 15
        await wait_until(lambda: not _alive(stuck))

        async def faxed() -> list[dict[str, Any]] | None:
            faxes: list[dict[str, Any]] = await sim_get(simulator, "/_sim/faxes")
            return faxes or None

        faxes = await wait_until(faxed)
        await asyncio.sleep(0.3)
        assert len(await sim_get(simulator, "/_sim/faxes")) == len(faxes) == 1  # the canary only
    refusals = [line for line in _audit_lines(audit) if '"audit":"refused"' in line]
    assert len(refusals) == 1 and "takes too long to read" in refusals[0]


async def test_a_client_that_hangs_up_mid_read_takes_its_parse_with_it(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(
        tmp_path,
        simulator.base_url,
        smtp={"reader_processes": 1, "reader_processes_max": 2, "reader_timeout_s": 60},
    )
    async with Gateway(settings) as gateway:
        readers = gateway.readers
        assert readers is not None
        stuck = await _stuck_reader(gateway)
        mail = pdf_mail(subject="Gone").as_bytes(policy=email.policy.SMTP)
        await asyncio.to_thread(_send_and_hang_up, gateway.smtp_port, mail)
        await wait_until(lambda: not _alive(stuck), timeout=10)  # killed, not left for 60 s
        await wait_until(lambda: readers.idle_pids, timeout=20)  # and replaced
        result = await smtp_send(gateway.smtp_port, pdf_mail(subject="Next"))
        assert result.code == 250, result


def _send_and_hang_up(port: int, mail: bytes) -> None:
    """Send a whole mail, then close the connection before the reply to DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def say(line: bytes, expect: bytes) -> None:
            sock.sendall(line)
            while True:
                reply = reader.readline()
                if reply[3:4] != b"-":
                    assert reply.startswith(expect), reply
                    return

        assert reader.readline().startswith(b"220")
        say(b"EHLO client.example.com\r\n", b"250")
        say(b"MAIL FROM:<alice@example.com>\r\n", b"250")
        say(b"RCPT TO:<13235551212@fax.local>\r\n", b"250")
        say(b"DATA\r\n", b"354")
        sock.sendall(mail + b"\r\n.\r\n")
        time.sleep(0.3)  # the gateway has it, its reader is on it

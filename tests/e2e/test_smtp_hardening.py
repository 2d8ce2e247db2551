"""The SMTP conversation itself, byte for byte: smuggling, STARTTLS injection, caps and timeouts.

Raw sockets on loopback against the real gateway; every byte the server sent is compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.settings import ConfigError
from gateway.simulator.server import RunningSimulator
from gateway.smtp.server import check_aiosmtpd_version
from gateway.store.base import JobKind
from tests.e2e.conftest import gateway_settings, pdf_mail, sim_get, smtp_send
from tests.e2e.security_helpers import Certs, Raw, make_certs
from tests.helpers import wait_until

GREETING = b"220 fax-gateway fax-gateway ESMTP\r\n"
EHLO_NO_TLS = b"250-fax-gateway\r\n250-SIZE 50000000\r\n250-8BITMIME\r\n250 HELP\r\n"
EHLO_PLAIN = b"250-fax-gateway\r\n250-SIZE 50000000\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 HELP\r\n"
EHLO_TLS = b"250-fax-gateway\r\n250-SIZE 50000000\r\n250-8BITMIME\r\n250-AUTH LOGIN PLAIN\r\n250 HELP\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


async def start(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch, **smtp: object
) -> Gateway:
    monkeypatch.chdir(tmp_path)
    gw = Gateway(gateway_settings(tmp_path, simulator.base_url, smtp=smtp))
    await gw.start()
    return gw


# -- SMTP smuggling: only CRLF . CRLF ends DATA ----------------------------------------------------
@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n"])
async def test_bare_lf_or_cr_dot_does_not_end_data(
    gateway: Gateway, simulator: RunningSimulator, fake_end: bytes
) -> None:
    smuggled = (
        b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<13235559999@fax.local>\r\nDATA\r\n"
        b"From: alice@example.com\r\nTo: 13235559999@fax.local\r\nSubject: smuggled\r\n\r\nsmuggled fax\r\n"
    )
    body = (
        b"From: alice@example.com\r\nTo: 13235551212@fax.local\r\nSubject: first\r\n\r\nfirst fax"
        + fake_end
        + smuggled
        + b".\r\n"
    )

    def session() -> list[bytes]:
        raw = Raw(gateway.smtp_port)
        seen = [raw.reply()]
        for command in (
            b"EHLO client.example.com\r\n",
            b"MAIL FROM:<alice@example.com>\r\n",
            b"RCPT TO:<13235551212@fax.local>\r\n",
            b"DATA\r\n",
            body,
            b"QUIT\r\n",
        ):
            raw.send(command)
            seen.append(raw.reply())
        assert raw.closed()
        raw.close()
        return seen

    seen = await asyncio.to_thread(session)
    job_id = seen[5].split()[-1].decode()
    assert seen == [
        GREETING,
        EHLO_NO_TLS,
        b"250 2.1.0 Sender ok\r\n",
        b"250 2.1.5 Recipient ok: fax to +1 323-555-1212\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
        f"250 2.0.0 Ok: queued as {job_id}\r\n".encode(),  # one mail, one reply
        b"221 Bye\r\n",
    ]
    assert gateway.store is not None
    assert [j.ref for j in await gateway.store.jobs(kind=JobKind.DISPATCH)] == [job_id]
    raw_mail = await gateway.store.raw_message(job_id)
    assert raw_mail is not None and smuggled in raw_mail  # the "commands" are just text of the one mail
    faxes = await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))
    assert [f["destination_fax_number"].lstrip("1") for f in faxes] == ["3235551212"]


# -- STARTTLS injection: nothing pipelined after STARTTLS is honoured ------------------------------
async def test_commands_pipelined_after_starttls_are_discarded(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start(
        tmp_path, simulator, monkeypatch, tls_cert_file=str(certs.cert), tls_key_file=str(certs.key)
    )

    def session() -> list[bytes]:
        raw = Raw(gw.smtp_port)
        seen = [raw.reply()]
        raw.send(b"EHLO client.example.com\r\n")
        seen.append(raw.reply())
        # One packet: STARTTLS and, in plain text, what a man in the middle would inject.
        raw.send(b"STARTTLS\r\nEHLO injected.example.com\r\nMAIL FROM:<alice@example.com>\r\n")
        seen.append(raw.reply())
        raw.starttls(certs.client)
        for command in (b"EHLO client.example.com\r\n", b"RCPT TO:<13235551212@fax.local>\r\n", b"QUIT\r\n"):
            raw.send(command)
            seen.append(raw.reply())
        raw.close()
        return seen

    try:
        seen = await asyncio.to_thread(session)
    finally:
        await gw.stop()
    assert seen == [
        GREETING,
        EHLO_PLAIN,
        b"220 Ready to start TLS\r\n",
        EHLO_TLS,  # the reply to our own EHLO: nothing was answered for the injected lines
        b"503 Error: need MAIL command\r\n",  # the injected MAIL FROM was not honoured
        b"221 Bye\r\n",
    ]


# -- caps ------------------------------------------------------------------------------------------
async def test_concurrent_sessions_are_capped(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start(tmp_path, simulator, monkeypatch, max_sessions=2)

    def sessions() -> tuple[bytes, bool, bytes]:
        first, second = Raw(gw.smtp_port), Raw(gw.smtp_port)
        assert first.reply() == GREETING and second.reply() == GREETING
        third = Raw(gw.smtp_port)
        refused, closed = third.reply(), third.closed()
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the freed place is taken as soon as the server saw the close
            fourth = Raw(gw.smtp_port)
            greeting = fourth.reply()
            fourth.close()
            if greeting == GREETING or time.monotonic() > deadline:
                break
        second.close()
        third.close()
        return refused, closed, greeting

    try:
        refused, closed, greeting = await asyncio.to_thread(sessions)
    finally:
        await gw.stop()
    assert (
        refused == b"421 4.7.0 The gateway is busy with too many sessions; please try again in a minute.\r\n"
    )
    assert closed and greeting == GREETING


async def test_sessions_per_client_address_are_capped_except_for_trusted_networks(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def two(port: int) -> bytes:
        first, second = Raw(port), Raw(port)
        first.reply()
        reply = second.reply()
        first.close()
        second.close()
        return reply

    gw = await start(tmp_path, simulator, monkeypatch, max_sessions_per_ip=1, trusted_networks=[])
    try:
        untrusted = await asyncio.to_thread(two, gw.smtp_port)
    finally:
        await gw.stop()
    gw = await start(tmp_path, simulator, monkeypatch, max_sessions_per_ip=1)
    try:
        trusted = await asyncio.to_thread(two, gw.smtp_port)
    finally:
        await gw.stop()
    assert untrusted == (
        b"421 4.7.0 Too many sessions from 127.0.0.1 at the same time (at most 1); "
        b"please try again in a minute.\r\n"
    )
    assert trusted == GREETING


@pytest.mark.parametrize(
    ("smtp", "reply"),
    [
        ({"max_headers": 20}, "5.3.4 The mail has 33 header fields, more than the 20 this gateway takes"),
        ({"max_header_bytes": 2000}, "5.3.4 The mail's header is "),
    ],
)
async def test_header_block_size_and_count_are_capped(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    smtp: dict[str, int],
    reply: str,
) -> None:
    gw = await start(tmp_path, simulator, monkeypatch, **smtp)
    msg = pdf_mail()
    for n in range(27):
        msg[f"X-Filler-{n}"] = "x" * 60
    try:
        result = await smtp_send(gw.smtp_port, msg)
        ok = await smtp_send(gw.smtp_port, pdf_mail())
    finally:
        await gw.stop()
    assert (result.stage, result.code) == ("data", 552)
    assert result.text.startswith(reply)
    assert ok.code == 250


# -- timeouts --------------------------------------------------------------------------------------
async def test_an_idle_session_is_closed_with_a_reason(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start(tmp_path, simulator, monkeypatch, session_timeout_s=0.3)

    def idle() -> tuple[bytes, bytes, bool]:
        raw = Raw(gw.smtp_port)
        greeting = raw.reply()
        raw.send(b"MAIL FROM:<al")  # a command trickled in, never finished
        time.sleep(0.1)
        raw.send(b"ice@exa")
        reply, closed = raw.reply(), raw.closed()
        raw.close()
        return greeting, reply, closed

    try:
        started = time.monotonic()
        greeting, reply, closed = await asyncio.to_thread(idle)
        took = time.monotonic() - started
    finally:
        await gw.stop()
    assert greeting == GREETING
    assert reply == b"421 4.4.2 Closing the connection: nothing was received for 0.3 seconds.\r\n"
    assert closed and took < 3


async def test_a_trickled_mail_is_cut_off_and_not_stored(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start(tmp_path, simulator, monkeypatch, session_timeout_s=5, data_timeout_s=0.5)

    def trickle() -> tuple[list[bytes], bool, float]:
        raw = Raw(gw.smtp_port)
        raw.reply()
        for command in (
            b"EHLO x\r\n",
            b"MAIL FROM:<alice@example.com>\r\n",
            b"RCPT TO:<13235551212@fax.local>\r\n",
            b"DATA\r\n",
        ):
            raw.send(command)
            raw.reply()
        started = time.monotonic()
        raw.send(b"From: alice@example.com\r\nSubject: slow\r\n\r\n")
        seen = []
        try:
            for _ in range(100):  # a line every 0.1 s: each byte arrives, the mail never ends
                raw.send(b"still typing\r\n")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(EOFError, ConnectionResetError):
            seen.append(raw.reply())
        closed = raw.closed()
        raw.close()
        return seen, closed, time.monotonic() - started

    try:
        seen, closed, took = await asyncio.to_thread(trickle)
        assert gw.store is not None
        assert await gw.store.jobs(kind=JobKind.DISPATCH) == []
    finally:
        await gw.stop()
    assert seen == [b"421 4.4.2 Closing the connection: the mail did not arrive within 0.5 seconds.\r\n"]
    assert closed and took < 5


async def test_keepalive_junk_commands_are_capped(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start(tmp_path, simulator, monkeypatch)

    def noops() -> list[bytes]:
        raw = Raw(gw.smtp_port)
        raw.reply()
        replies = []
        for _ in range(21):
            raw.send(b"NOOP\r\n")
            replies.append(raw.reply())
        assert raw.closed()
        raw.close()
        return replies

    try:
        replies = await asyncio.to_thread(noops)
    finally:
        await gw.stop()
    assert replies[:20] == [b"250 OK\r\n"] * 20
    assert replies[20] == b"421 4.7.0 NOOP sent too many times\r\n"


def test_an_aiosmtpd_without_the_smuggling_and_injection_fixes_is_refused() -> None:
    check_aiosmtpd_version()  # the installed one is good
    with pytest.raises(ConfigError, match=r"aiosmtpd 1\.4\.5 is installed, but 1\.4\.6 or later is required"):
        check_aiosmtpd_version("1.4.5")

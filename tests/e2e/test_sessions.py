"""Sessions and sign-ins under pressure: throttled AUTH, reserved capacity, error limits, digests.

Real SMTP to the real gateway on loopback. Different client addresses are real: a
socket bound to 127.0.0.2 or 127.0.0.3 connects to the listener on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import USER_PASSWORD, gateway_settings, pdf_mail
from tests.e2e.security_helpers import USER, Certs, Raw, audit_lines, make_certs, secure_settings

GREETING = b"220 fax-gateway fax-gateway ESMTP\r\n"
BUSY = b"421 4.7.0 The gateway is busy with too many sessions; please try again in a minute.\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@contextlib.contextmanager
def actions(logger: str = "gateway") -> Iterator[list[logging.LogRecord]]:
    """The gateway's log records with an event action, as they are emitted."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "_faxgw_fields", None):
                seen.append(record)

    handler, target = Keep(logging.DEBUG), logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield seen
    finally:
        target.removeHandler(handler)


def action(record: logging.LogRecord) -> str:
    return str(record._faxgw_fields["action"])  # type: ignore[attr-defined]


def sign_in(
    port: int, context: ssl.SSLContext, user: str, password: str, *, source: str = "127.0.0.1"
) -> tuple[int, str, float]:
    """One session: STARTTLS, one AUTH PLAIN; (code, text, seconds the AUTH took)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.example.com")
        client.starttls(context=context)
        client.ehlo("client.example.com")
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        started = time.monotonic()
        code, text = client.docmd("AUTH", f"PLAIN {blob}")
        return code, text.decode(), time.monotonic() - started


# -- AUTH: throttled across sessions -----------------------------------------------------------------
async def test_failed_sign_ins_wait_longer_then_lock_the_address_and_the_name_out(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    smtp = {
        "auth_failure_delay_s": 0.4,
        "auth_failure_max_delay_s": 0.8,
        "auth_lockout_failures": 4,
        "auth_lockout_s": 60,
    }
    settings = secure_settings(
        tmp_path, simulator.base_url, certs, smtp=smtp, logging={"audit_file": str(tmp_path / "audit.jsonl")}
    )
    with actions() as records:
        async with Gateway(settings) as gw:
            port = gw.smtp_port
            wrong = [
                await asyncio.to_thread(sign_in, port, certs.client, USER, f"wrong-{n}") for n in range(4)
            ]
            # Locked out: even the right password is refused, from this address or for this name.
            right_here = await asyncio.to_thread(sign_in, port, certs.client, USER, USER_PASSWORD)
            right_elsewhere = await asyncio.to_thread(
                sign_in, port, certs.client, USER, USER_PASSWORD, source="127.0.0.2"
            )
            other_name_here = await asyncio.to_thread(sign_in, port, certs.client, "bob", "x")
            other_name_elsewhere = await asyncio.to_thread(
                sign_in, port, certs.client, "bob", "x", source="127.0.0.3"
            )
    assert [code for code, _, _ in wrong] == [535, 535, 535, 535]  # one per session: never the 3rd in one
    waits = [seconds for _, _, seconds in wrong]
    assert waits[0] < 0.4  # the first failure costs only the password check
    assert waits[1] >= 0.4 and waits[2] >= 0.8 and waits[3] >= 0.8  # 0.4, then 0.8 doubled ...
    assert waits[3] < 1.5  # ... but no more than the cap (1.6 without it)
    locked = (
        "4.7.0 Too many failed sign-ins from this address or for this user name; "
        "sign-ins are refused for 1 more minute."
    )
    for code, text, seconds in (right_here, right_elsewhere, other_name_here):
        assert (code, text) == (454, locked)
        assert seconds < 0.6  # no wait (0.8 by now) and no password check while locked out
    assert other_name_elsewhere[0] == 535  # a new name from a new address is only refused
    said = [(action(r), r.getMessage()) for r in records if action(r) in ("auth delayed", "auth locked")]
    assert said == [  # the address and the name, each once per step
        (
            "auth delayed",
            "sign-ins for the address 127.0.0.1 now wait before their password is checked (1 failed)",
        ),
        ("auth delayed", "sign-ins for the user alice now wait before their password is checked (1 failed)"),
        ("auth locked", "sign-ins for the address 127.0.0.1 refused for 60 seconds after 4 failures"),
        ("auth locked", "sign-ins for the user alice refused for 60 seconds after 4 failures"),
        (
            "auth delayed",
            "sign-ins for the address 127.0.0.3 now wait before their password is checked (1 failed)",
        ),
        ("auth delayed", "sign-ins for the user bob now wait before their password is checked (1 failed)"),
    ]
    refused = [a for a in audit_lines(tmp_path / "audit.jsonl") if a.get("stage") == "auth"]
    assert [a["reply"][:3] for a in refused] == ["535"] * 4 + ["454"] * 3 + ["535"]


async def test_sign_ins_do_not_wait_for_threads_busy_with_mail(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every thread that reads and converts mail is busy (a long conversion); AUTH still answers."""
    monkeypatch.chdir(tmp_path)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    client = ThreadPoolExecutor(1, thread_name_prefix="smtp-client")
    async with Gateway(secure_settings(tmp_path, simulator.base_url, certs)) as gw:
        loop.set_default_executor(ThreadPoolExecutor(2, thread_name_prefix="busy-conversions"))
        conversions = [loop.run_in_executor(None, release.wait, 60) for _ in range(4)]
        try:
            started = time.monotonic()
            code, text, _ = await asyncio.wait_for(
                loop.run_in_executor(client, sign_in, gw.smtp_port, certs.client, USER, USER_PASSWORD), 20
            )
            took = time.monotonic() - started
            assert not any(c.done() for c in conversions)  # they were busy all along
        finally:
            release.set()
            await asyncio.gather(*conversions)
            client.shutdown()
    assert (code, text) == (235, "2.7.0 Authentication successful")
    assert took < 5


# -- sessions: reserved for trusted networks, capped per address --------------------------------------
async def test_trusted_networks_keep_sessions_of_their_own_when_others_fill_the_rest(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    smtp = {
        "listen": "127.0.0.1:0",
        "trusted_networks": ["127.0.0.2/32"],  # the scanner
        "max_sessions": 5,
        "reserved_trusted_sessions": 2,
        "max_sessions_per_ip": 2,
    }

    def sessions(port: int) -> dict[str, list[bytes]]:
        opened: list[Raw] = []

        def connect(source: str) -> bytes:
            raw = Raw(port, source=source)
            opened.append(raw)
            return raw.reply()

        try:
            return {
                "outside": [connect("127.0.0.1"), connect("127.0.0.1"), connect("127.0.0.1")],
                "other outside": [connect("127.0.0.3"), connect("127.0.0.4")],
                "scanner": [connect("127.0.0.2"), connect("127.0.0.2"), connect("127.0.0.2")],
            }
        finally:
            for raw in opened:
                raw.close()

    async with Gateway(gateway_settings(tmp_path, simulator.base_url, smtp=smtp)) as gw:
        seen = await asyncio.to_thread(sessions, gw.smtp_port)
    assert seen["outside"] == [
        GREETING,
        GREETING,
        b"421 4.7.0 Too many sessions from 127.0.0.1 at the same time (at most 2); "
        b"please try again in a minute.\r\n",
    ]
    assert seen["other outside"] == [GREETING, BUSY]  # 3 of 5 in use: the last 2 are the scanner's
    assert seen["scanner"] == [GREETING, GREETING, BUSY]  # trusted: past the per-address cap, up to 5


# -- a session that piles up refusals is cut off --------------------------------------------------------
def _bad_rcpts(port: int, count: int, *, good_mail_after: int | None = None) -> list[bytes]:
    raw = Raw(port)
    seen = [raw.reply()]
    for command in (b"EHLO client.example.com\r\n", b"MAIL FROM:<alice@example.com>\r\n"):
        raw.send(command)
        seen.append(raw.reply())
    for n in range(count):
        if good_mail_after is not None and n == good_mail_after:
            body = pdf_mail().as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
            for command in (b"RCPT TO:<13235551212@fax.local>\r\n", b"DATA\r\n", body + b"\r\n.\r\n"):
                raw.send(command)
                seen.append(raw.reply())
            raw.send(b"MAIL FROM:<alice@example.com>\r\n")
            seen.append(raw.reply())
        try:
            raw.send(f"RCPT TO:<someone{n}@other.example>\r\n".encode())
            seen.append(raw.reply())
        except (EOFError, ConnectionResetError, BrokenPipeError):
            seen.append(b"(closed)")
            break
    raw.close()
    return seen


async def test_the_twentieth_refusal_closes_the_session(gateway: Gateway) -> None:
    seen = await asyncio.to_thread(_bad_rcpts, gateway.smtp_port, 25)
    relaying = (
        b"550 5.7.1 This gateway only accepts mail for <number>@fax.local; "
        b"it does not relay to other domains.\r\n"
    )
    assert seen[3:23] == [relaying] * 20
    assert seen[23:] == [  # the 421 followed the 20th refusal at once, unasked
        b"421 4.7.0 Too many errors in this session (20 refused commands and no mail accepted); "
        b"closing the connection.\r\n",
        b"(closed)",
    ]


async def test_an_accepted_mail_starts_the_error_count_afresh(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Gateway(gateway_settings(tmp_path, simulator.base_url, smtp={"hard_error_limit": 4})) as gw:
        seen = await asyncio.to_thread(_bad_rcpts, gw.smtp_port, 9, good_mail_after=3)
    codes = [line[:3] for line in seen[3:]]
    # 3 refusals, a mail (RCPT, DATA, the mail, MAIL FROM), 4 refusals: only then the 421
    assert codes == [b"550"] * 3 + [b"250", b"354", b"250", b"250"] + [b"550"] * 4 + [b"421", b"(cl"]


# -- refusals in aggregate -------------------------------------------------------------------------
async def test_many_refusals_are_logged_and_audited_in_aggregate(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    settings = gateway_settings(
        tmp_path, simulator.base_url, smtp={"hard_error_limit": 0}, logging={"audit_file": str(audit)}
    )
    with actions() as records:
        async with Gateway(settings) as gw:
            await asyncio.to_thread(_bad_rcpts, gw.smtp_port, 40)
            await asyncio.to_thread(_bad_rcpts, gw.smtp_port, 5)  # a second session of the same client
            before_stop = [a["audit"] for a in audit_lines(audit)]
    lines = audit_lines(audit)
    refused = [a for a in lines if a["audit"] == "refused"]
    [summary] = [a for a in lines if a["audit"] == "refusals"]
    assert len(refused) == 10 and before_stop.count("refused") == 10  # the first ten, whole
    assert summary["peer"] == "127.0.0.1" and summary["counts"] == {"rcpt 550": 35} and summary["total"] == 35
    logged = [action(r) for r in records if action(r) in ("refused", "refusals")]
    assert logged == ["refused"] * 10 + ["refusals"]


async def test_a_summary_is_written_when_its_minute_is_over(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway.handler is not None
    gateway.handler.refusals.window_s = 3.0  # the minute, shortened for the test
    with actions() as records:
        await asyncio.to_thread(_bad_rcpts, gateway.smtp_port, 14)
        assert [action(r) for r in records].count("refusals") == 0  # not before the window ends
        await asyncio.sleep(3.5)
        summaries = [r for r in records if action(r) == "refusals"]
    assert [r.getMessage() for r in summaries] == [
        "4 more refusals for 127.0.0.1 within a minute, not logged one by one: rcpt 550 x4"
    ]

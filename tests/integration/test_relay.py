"""Mail out against real SMTP servers on loopback: null sender, STARTTLS required, AUTH, 4xx/5xx."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from gateway.mail.relay import MailPermanent, MailTransient, RelayLoginRefused, RelaySender
from gateway.settings import RelaySettings
from tests.sink import SmtpSink

MESSAGE = b"From: fax-gateway@fax.local\r\nTo: alice@example.com\r\nSubject: Fax delivered: x\r\n\r\nhi\r\n"
PASSWORD = "relay-secret-pw"


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    relay = await SmtpSink().start()
    yield relay
    await relay.stop()


def plain(sink: SmtpSink, **extra: Any) -> RelaySender:
    return RelaySender(RelaySettings(host=sink.host, port=sink.port, tls="none", timeout_s=5, **extra))


async def test_null_envelope_sender(sink: SmtpSink) -> None:
    await plain(sink).deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    [got] = sink.messages
    assert got.mail_from == "<>" and got.rcpt_tos == ["alice@example.com"]


async def test_4xx_is_transient_and_5xx_permanent(sink: SmtpSink) -> None:
    sink.fail_data = "451 4.3.0 try later"
    with pytest.raises(MailTransient, match="451"):
        await plain(sink).deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    sink.fail_data = "554 5.6.0 content refused"
    with pytest.raises(MailPermanent, match="554"):
        await plain(sink).deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    sink.fail_data = None
    sink.fail_rcpt["alice@example.com"] = "550 5.1.1 unknown user"
    with pytest.raises(MailPermanent, match=r"550 5\.1\.1"):
        await plain(sink).deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    assert sink.messages == []


async def test_one_connection_carries_consecutive_mails_until_it_is_dropped_or_idle(sink: SmtpSink) -> None:
    now = [0.0]
    sender = RelaySender(
        RelaySettings(host=sink.host, port=sink.port, tls="none", timeout_s=5),
        idle_s=30,
        per_connection=3,
        clock=lambda: now[0],
    )
    for n in range(4):  # three on the first connection, the fourth on a new one
        await sender.deliver(MESSAGE, sender="", recipients=[f"user{n}@example.com"])
    assert len(sink.messages) == 4 and sink.connections == sender.connections == 2

    sink.drop_connections()  # the relay restarts: the kept connection fails its NOOP
    await sender.deliver(MESSAGE, sender="", recipients=["after-restart@example.com"])
    assert sink.connections == 3 and sink.to("after-restart@example.com")

    now[0] += 31  # idle too long: not even tried
    await sender.deliver(MESSAGE, sender="", recipients=["after-idle@example.com"])
    assert sink.connections == 4 and len(sink.messages) == 6

    sink.fail_data = "451 4.3.0 try later"  # a failed transaction: its connection is not kept
    with pytest.raises(MailTransient, match="451"):
        await sender.deliver(MESSAGE, sender="", recipients=["failed@example.com"])
    sink.fail_data = None
    await sender.deliver(MESSAGE, sender="", recipients=["again@example.com"])
    assert sink.connections == 5 and len(sink.messages) == 7
    await sender.aclose()


async def test_concurrent_mails_each_get_a_connection_and_all_are_kept_up_to_the_pool(
    sink: SmtpSink,
) -> None:
    sender = RelaySender(RelaySettings(host=sink.host, port=sink.port, tls="none", timeout_s=5), pool=2)
    await asyncio.gather(
        *(sender.deliver(MESSAGE, sender="", recipients=[f"u{n}@example.com"]) for n in range(3))
    )
    assert sink.connections == 3 and len(sink.messages) == 3
    await asyncio.gather(
        *(sender.deliver(MESSAGE, sender="", recipients=[f"v{n}@example.com"]) for n in range(2))
    )
    assert sink.connections == 3 and len(sink.messages) == 5  # the two kept ones carried them
    await sender.aclose()


async def test_a_relay_that_is_down_is_transient(sink: SmtpSink) -> None:
    sender = plain(sink)
    await sender.deliver(MESSAGE, sender="", recipients=["before@example.com"])  # a kept connection
    await sink.stop()
    with pytest.raises(MailTransient, match="cannot be reached"):
        await sender.deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    assert [m.rcpt_tos for m in sink.messages] == [["before@example.com"]]


async def test_starttls_is_required_not_if_offered(sink: SmtpSink) -> None:
    sender = RelaySender(RelaySettings(host=sink.host, port=sink.port, tls="starttls", timeout_s=5))
    with pytest.raises(MailTransient):
        await sender.deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    assert sink.messages == []  # nothing went out in clear


class _Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, bool, Any]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append((envelope.mail_from or "", session.ssl is not None, session.auth_data))
        return "250 2.0.0 stored"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"gateway" and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data="gateway" if ok else None)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_relay(ca: trustme.CA) -> AsyncIterator[tuple[int, _Recorder]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    recorder = _Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            recorder,
            hostname="relay.test",
            tls_context=server_ctx,
            require_starttls=True,
            authenticator=_authenticate,
            auth_require_tls=True,
            auth_required=True,
            loop=loop,
        ),
        host="127.0.0.1",
        port=0,
    )
    yield int(server.sockets[0].getsockname()[1]), recorder
    server.close()
    await server.wait_closed()


def _client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_starttls_then_auth(tls_relay: tuple[int, _Recorder], ca: trustme.CA) -> None:
    port, recorder = tls_relay
    settings = RelaySettings(
        host="127.0.0.1", port=port, tls="starttls", username="gateway", password=PASSWORD, timeout_s=5
    )
    sender = RelaySender(settings, tls_context=_client_ctx(ca))
    for _ in range(2):
        await sender.deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    # the second mail went on the kept connection: still in TLS, still logged in
    assert recorder.envelopes == [("<>", True, "gateway")] * 2 and sender.connections == 1
    await sender.aclose()


async def test_a_refused_login_is_transient_and_keeps_the_password_secret(
    tls_relay: tuple[int, _Recorder], ca: trustme.CA
) -> None:
    port, recorder = tls_relay
    settings = RelaySettings(
        host="127.0.0.1", port=port, tls="starttls", username="gateway", password="wrong-pw-x", timeout_s=5
    )
    with pytest.raises(MailTransient, match=r"relay\.username") as info:
        await RelaySender(settings, tls_context=_client_ctx(ca)).deliver(
            MESSAGE, sender="", recipients=["alice@example.com"]
        )
    assert "wrong-pw-x" not in str(info.value) and recorder.envelopes == []


async def test_the_probe_connects_as_delivery_does_and_sends_nothing(
    tls_relay: tuple[int, _Recorder], ca: trustme.CA
) -> None:
    port, recorder = tls_relay
    settings = RelaySettings(
        host="127.0.0.1", port=port, tls="starttls", username="gateway", password=PASSWORD, timeout_s=5
    )
    probe = await RelaySender(settings, tls_context=_client_ctx(ca)).probe("alice@example.com")
    assert probe.encrypted and probe.signed_in and probe.mail_taken  # STARTTLS, AUTH, MAIL, RCPT, QUIT
    assert probe.rcpt_reply.startswith("250") and "PLAIN" in probe.auth_methods
    assert recorder.envelopes == []
    # what delivery would refuse, the probe refuses too: here, a certificate it does not trust
    with pytest.raises(MailTransient, match=r"^cannot use 127\.0\.0\.1:\d+: ") as untrusted:
        await RelaySender(settings).probe()
    assert not isinstance(untrusted.value, RelayLoginRefused)
    wrong = settings.model_copy(update={"password": SecretStr("wrong-pw-x")})
    with pytest.raises(RelayLoginRefused, match="refused the username gateway and its password") as refused:
        await RelaySender(wrong, tls_context=_client_ctx(ca)).probe()
    assert "wrong-pw-x" not in str(refused.value)


async def test_deliver_returns_at_the_relays_250_not_after_the_quit(sink: SmtpSink) -> None:
    """The caller records a delivered mail right after the 250: a slow QUIT must not widen
    the window in which a crash would mail it twice."""
    import time

    sink.quit_delay_s = 2.0
    relay = RelaySender(RelaySettings(host=sink.host, port=sink.port, tls="none", timeout_s=5), pool=0)
    started = time.monotonic()
    await relay.deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    took = time.monotonic() - started
    assert len(sink.messages) == 1
    assert took < 1.0  # the connection is not kept (pool=0): its QUIT goes on in the background
    started = time.monotonic()
    await relay.aclose()
    assert time.monotonic() - started > 1.0  # ... and is waited for at the end

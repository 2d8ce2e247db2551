"""Who may fax, to where, and how much: real TLS (trustme), real AUTH over loopback, the simulator.

Each rule is shown allowed and refused, with its SMTP code and sentence. Nothing refused
ever reaches the simulator. Loopback is *not* a trusted network in these gateways unless
a test says so, so they behave as for a client on the internet.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.commands.check import check
from gateway.simulator.server import RunningSimulator
from gateway.smtp.server import bound_port
from tests.e2e.conftest import (
    ALICE,
    ALICE_USER,
    API_KEY,
    KNOWN_SECRETS,
    RELAY_PASSWORD,
    USER_PASSWORD,
    WEBHOOK_SECRET,
    SmtpResult,
    make_pdf,
    pdf_mail,
    secret_values,
    sim_get,
    smtp_send,
)
from tests.e2e.security_helpers import (
    USER,
    USER_HASH,
    Certs,
    audit_lines,
    make_certs,
    secure_settings,
    send,
)
from tests.helpers import wait_until

NUMBER = "13235551212@fax.local"
FAST_TRACKING = {"first_check_s": 0.2, "max_interval_s": 0.5}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def secure(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    """TLS, one user, loopback untrusted, the audit log in tmp_path/audit.jsonl."""
    monkeypatch.chdir(tmp_path)
    audit = {"audit_file": str(tmp_path / "audit.jsonl")}
    gw = Gateway(secure_settings(tmp_path, simulator.base_url, certs, logging=audit, tracking=FAST_TRACKING))
    await gw.start()
    yield gw
    await gw.stop()


def data(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


async def mail(port: int, message: EmailMessage, *, sender: str | None = None, **kwargs: Any) -> SmtpResult:
    """``send`` in a thread; recipients from To:, sender from From: unless given."""
    rcpts = kwargs.pop("rcpts", [a.addr_spec for a in message["To"].addresses])
    sender = sender or message["From"].addresses[0].addr_spec
    return await asyncio.to_thread(send, port, data(message), sender=sender, rcpts=rcpts, **kwargs)


def tls_port(gw: Gateway) -> int:
    assert gw.smtp_tls_server is not None
    return bound_port(gw.smtp_tls_server)


async def no_fax_sent(sim: RunningSimulator) -> None:
    assert await sim_get(sim, "/_sim/faxes") == []


# -- who: AUTH over TLS only -----------------------------------------------------------------------
def _ehlo_features(
    port: int, context: ssl.SSLContext | None
) -> tuple[dict[str, str], dict[str, str], tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.com")
        plain = dict(client.esmtp_features)
        refused = client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
        client.starttls(context=context)
        client.ehlo("client.example.com")
        return plain, dict(client.esmtp_features), refused


async def test_auth_is_offered_only_after_starttls(secure: Gateway, certs: Certs) -> None:
    plain, encrypted, refused = await asyncio.to_thread(_ehlo_features, secure.smtp_port, certs.client)
    assert "starttls" in plain and "auth" not in plain
    assert refused == (538, b"5.7.11 Sign in only after STARTTLS: passwords are never taken unencrypted.")
    assert "starttls" not in encrypted
    assert encrypted["auth"].split() == ["LOGIN", "PLAIN"]


async def test_auth_plain_over_starttls_faxes_from_the_users_mailbox(
    secure: Gateway, simulator: RunningSimulator, certs: Certs, tmp_path: Path
) -> None:
    result = await mail(secure.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
    assert (result.code, result.stage) == (250, "data"), result
    faxes = await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))
    assert len(faxes) == 1
    fax = await sim_get(simulator, f"/_sim/faxes/{faxes[0]['fax_id']}")
    assert fax["user_id"] == ALICE_USER
    assert secure.store is not None
    stored = await secure.store.message(result.job_id)
    assert stored is not None and stored.auth == "user alice from 127.0.0.1"


async def test_auth_login_on_the_implicit_tls_listener(
    secure: Gateway, simulator: RunningSimulator, certs: Certs
) -> None:
    result = await mail(
        tls_port(secure),
        pdf_mail(),
        context=certs.client,
        implicit=True,
        user=(USER, USER_PASSWORD),
        mechanism="LOGIN",
    )
    assert (result.code, result.stage) == (250, "data"), result
    await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))


def _three_wrong_passwords(port: int, context: ssl.SSLContext) -> list[tuple[int, bytes]]:
    import base64

    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        client.starttls(context=context)
        client.ehlo("x")
        for password in ("wrong-1", "wrong-2", "wrong-3"):
            blob = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
            replies.append(client.docmd("AUTH", f"PLAIN {blob}"))
        try:
            blob = base64.b64encode(f"\0{USER}\0{USER_PASSWORD}".encode()).decode()
            replies.append(client.docmd("AUTH", f"PLAIN {blob}"))  # the right one, too late
        except smtplib.SMTPServerDisconnected:
            replies.append((0, b"disconnected"))
    return replies


async def test_wrong_passwords_are_refused_and_the_third_failure_closes(
    secure: Gateway, certs: Certs, tmp_path: Path
) -> None:
    replies = await asyncio.to_thread(_three_wrong_passwords, secure.smtp_port, certs.client)
    assert replies == [
        (535, b"5.7.8 The user name or password is wrong."),
        (535, b"5.7.8 The user name or password is wrong."),
        (421, b"4.7.0 Too many failed sign-ins; closing the connection."),
        (0, b"disconnected"),
    ]
    refused = [a for a in audit_lines(tmp_path / "audit.jsonl") if a["audit"] == "refused"]
    assert [(a["stage"], a["user"]) for a in refused] == [("auth", USER)] * 3


async def test_unknown_user_gets_the_same_answer(secure: Gateway, certs: Certs) -> None:
    result = await mail(secure.smtp_port, pdf_mail(), context=certs.client, user=("mallory", USER_PASSWORD))
    assert (result.stage, result.code, result.text) == (
        "auth",
        535,
        "5.7.8 The user name or password is wrong.",
    )


async def test_a_user_may_send_only_from_its_own_mailboxes(
    secure: Gateway, simulator: RunningSimulator, certs: Certs
) -> None:
    scan = pdf_mail(sender="mfp@scan.example.com")  # the scanner mailbox's sender, not alice's mailbox
    result = await mail(secure.smtp_port, scan, context=certs.client, user=(USER, USER_PASSWORD))
    assert (result.stage, result.code) == ("mail", 550)
    assert result.text == (
        "5.7.1 The user alice may not send faxes as mfp@scan.example.com; use an address that one of "
        "its mailboxes allows, or ask the administrator."
    )
    forged_from = pdf_mail(sender="mallory@example.net")
    result = await mail(
        secure.smtp_port, forged_from, sender=ALICE, context=certs.client, user=(USER, USER_PASSWORD)
    )
    assert (result.stage, result.code) == ("data", 550)
    assert "The From: address mallory@example.net is not allowed" in result.text
    await no_fax_sent(simulator)


# -- who: no open relay ----------------------------------------------------------------------------
def _untrusted_session(port: int, context: ssl.SSLContext | None) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        if context is not None:
            client.starttls(context=context)
            client.ehlo("x")
        return [
            client.mail(ALICE),
            client.rcpt(NUMBER),
            client.rcpt("bob@example.org"),
            client.docmd("DATA"),
        ]


@pytest.mark.parametrize("tls", [False, True])
async def test_an_untrusted_session_without_auth_can_neither_fax_nor_relay(
    secure: Gateway, simulator: RunningSimulator, certs: Certs, tls: bool
) -> None:
    replies = await asyncio.to_thread(_untrusted_session, secure.smtp_port, certs.client if tls else None)
    assert replies[0] == (
        530,
        b"5.7.0 Authentication required: sign in with SMTP AUTH or send from a trusted network to fax "
        b"through this gateway.",
    )
    assert [code for code, _ in replies[1:]] == [503, 503, 503]  # no RCPT, no DATA without a sender
    await no_fax_sent(simulator)


async def test_even_a_signed_in_user_cannot_relay_to_another_domain(secure: Gateway, certs: Certs) -> None:
    result = await mail(
        secure.smtp_port, pdf_mail(to="bob@example.org"), context=certs.client, user=(USER, USER_PASSWORD)
    )
    assert (result.stage, result.code) == ("rcpt", 550)
    assert result.text == (
        "5.7.1 This gateway only accepts mail for <number>@fax.local; it does not relay to other domains."
    )


async def test_a_trusted_network_faxes_without_auth_but_never_relays(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path, simulator.base_url, certs, smtp={"trusted_networks": ["127.0.0.0/8"]}
    )
    async with Gateway(settings) as gw:
        relay = await smtp_send(gw.smtp_port, pdf_mail(to="bob@example.org"), rcpts=["bob@example.org"])
        fax = await smtp_send(gw.smtp_port, pdf_mail())
        assert (relay.stage, relay.code) == ("rcpt", 550)
        assert fax.code == 250
        await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))


# -- who: require_tls, minimum TLS version ---------------------------------------------------------
def _mail_before_starttls(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        return client.mail(ALICE)


async def test_require_tls_for_everyone_but_trusted_networks(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(tmp_path, simulator.base_url, certs, smtp={"require_tls": True})
    async with Gateway(settings) as gw:
        refused = await asyncio.to_thread(_mail_before_starttls, gw.smtp_port)
        ok = await mail(gw.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
        implicit = await mail(
            tls_port(gw), pdf_mail(), context=certs.client, implicit=True, user=(USER, USER_PASSWORD)
        )
    assert implicit.code == 250  # the implicit-TLS listener is encrypted from the first byte
    assert refused == (
        530,
        b"5.7.0 Must issue a STARTTLS command first: this gateway requires encryption from clients "
        b"outside its trusted networks.",
    )
    assert ok.code == 250
    trusted = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"require_tls": True, "trusted_networks": ["127.0.0.1/32"]},
        database={"url": f"sqlite:///{tmp_path}/trusted.db"},
    )
    async with Gateway(trusted) as gw:
        assert (await asyncio.to_thread(_mail_before_starttls, gw.smtp_port))[0] == 250


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        client.starttls(context=context)
        assert isinstance(client.sock, ssl.SSLSocket)
        return str(client.sock.version())


async def test_minimum_tls_version_is_enforced(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(tmp_path, simulator.base_url, certs, smtp={"tls_min_version": "1.3"})
    capped = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    capped.maximum_version = ssl.TLSVersion.TLSv1_2
    capped.check_hostname, capped.verify_mode = False, ssl.CERT_NONE
    async with Gateway(settings) as gw:
        assert await asyncio.to_thread(_handshake, gw.smtp_port, certs.client) == "TLSv1.3"
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            await asyncio.to_thread(_handshake, gw.smtp_port, capped)
    default = secure_settings(
        tmp_path, simulator.base_url, certs, database={"url": f"sqlite:///{tmp_path}/d.db"}
    )
    async with Gateway(default) as gw:  # the default (1.2) takes a client that stops at 1.2
        assert await asyncio.to_thread(_handshake, gw.smtp_port, capped) == "TLSv1.2"


async def test_an_unreadable_certificate_is_a_sentence(tmp_path: Path, simulator: RunningSimulator) -> None:
    from gateway.settings import ConfigError

    (tmp_path / "bad.pem").write_text("not a certificate")
    bad = Certs(tmp_path / "bad.pem", tmp_path / "bad.pem", ssl.create_default_context())
    gw = Gateway(secure_settings(tmp_path, simulator.base_url, bad))
    with pytest.raises(
        ConfigError, match=r"smtp.tls_cert_file / smtp.tls_key_file: cannot load the certificate"
    ):
        await gw.start()
    await gw.stop()


# -- who: senders, Reply-To, upstream verification ------------------------------------------------------
async def test_an_empty_senders_list_allows_no_one(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch, certs: Certs
) -> None:
    monkeypatch.chdir(tmp_path)
    boxes = [{"user_id": ALICE_USER, "fax_number": "13235550100", "senders": [], "deliver_to": [ALICE]}]
    settings = secure_settings(
        tmp_path, simulator.base_url, certs, mailboxes=boxes, smtp={"trusted_networks": ["127.0.0.0/8"]}
    )
    async with Gateway(settings) as gw:
        trusted = await smtp_send(gw.smtp_port, pdf_mail())
        signed_in = await mail(gw.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
    assert (trusted.stage, trusted.code) == ("mail", 550)
    assert (signed_in.stage, signed_in.code) == ("mail", 550)
    await no_fax_sent(simulator)


async def test_reply_to_decides_reports_only_for_trusted_scanners(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    users = [{"name": USER, "password_hash": USER_HASH, "mailboxes": ["13235550100", "13235550200"]}]
    settings = secure_settings(
        tmp_path, simulator.base_url, certs, users=users, smtp={"trusted_networks": ["127.0.0.0/8"]}
    )
    scan = pdf_mail(sender="mfp@scan.example.com")
    scan["Reply-To"] = "desk@scan.example.com"  # one of the scanner mailbox's senders
    elsewhere = pdf_mail(sender="mfp@scan.example.com")
    elsewhere["Reply-To"] = "bob@example.com"  # a sender of another mailbox only: not followed
    async with Gateway(settings) as gw:
        trusted = await smtp_send(gw.smtp_port, scan, sender="mfp@scan.example.com")
        signed_in = await mail(gw.smtp_port, scan, context=certs.client, user=(USER, USER_PASSWORD))
        outside = await smtp_send(gw.smtp_port, elsewhere, sender="mfp@scan.example.com")
        assert gw.store is not None
        first = await gw.store.message(trusted.job_id)
        second = await gw.store.message(signed_in.job_id)
        third = await gw.store.message(outside.job_id)
    assert (
        first is not None and first.report_to == "desk@scan.example.com" and first.auth == "trusted 127.0.0.1"
    )
    assert second is not None and second.report_to == "mfp@scan.example.com"
    assert third is not None and third.report_to == "mfp@scan.example.com"


async def test_mail_from_the_internet_needs_dmarc_pass_from_the_named_mta(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        policy={"require_authentication_results": "dmarc", "authserv_id": "mx.example.com"},
    )
    unverified = pdf_mail()
    forged = pdf_mail()
    forged["Authentication-Results"] = "mx.evil.example; dmarc=pass header.from=example.com"
    verified = pdf_mail()
    verified["Authentication-Results"] = (
        "mx.example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass (p=reject) header.from=example.com"
    )
    async with Gateway(settings) as gw:
        results = [await smtp_send(gw.smtp_port, m) for m in (unverified, forged, verified)]
        signed_in = await mail(gw.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
    for refused in results[:2]:
        assert (refused.stage, refused.code) == ("data", 550)
        assert refused.text == (
            "5.7.1 This gateway takes mail from outside only when mx.example.com verified its sender "
            "(dmarc=pass); no Authentication-Results from mx.example.com says so."
        )
    assert results[2].code == 250
    assert signed_in.code == 250  # AUTH users are verified by their password
    faxes = await wait_until(lambda: _at_least(simulator, 2))
    assert len(faxes) == 2


async def _at_least(simulator: RunningSimulator, n: int) -> list[dict[str, object]] | None:
    faxes: list[dict[str, object]] = await sim_get(simulator, "/_sim/faxes")
    return faxes if len(faxes) >= n else None


# -- where -----------------------------------------------------------------------------------------
def _all_rcpts(port: int, rcpts: list[str], body: bytes) -> tuple[list[tuple[int, bytes]], tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        client.mail(ALICE)
        replies = [client.rcpt(r) for r in rcpts]
        return replies, client.data(body)


async def test_premium_denied_and_foreign_numbers_never_reach_the_simulator(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        policy={"deny_numbers": ["+1310555*"], "allow_numbers": ["+4420794609??"]},
    )
    rcpts = [
        "19005551234@fax.local",  # premium rate (US 1-900)
        '"+33 1 42 68 53 00"@fax.local',  # France: not an allowed country
        "13105551212@fax.local",  # US, but denied by pattern
        '"+44 20 7946 0958"@fax.local',  # GB, allowed by pattern
        NUMBER,  # US: fine
    ]
    async with Gateway(settings) as gw:
        replies, done = await asyncio.to_thread(_all_rcpts, gw.smtp_port, rcpts, data(pdf_mail()))
        faxes = await wait_until(lambda: _at_least(simulator, 2))
    assert replies[0] == (550, b"5.7.1 19005551234 is a premium-rate number; such numbers are never dialled.")
    assert replies[1] == (550, b"5.7.1 Faxes to FR are not allowed here (allowed: US).")
    assert replies[2] == (
        550,
        b"5.7.1 Faxes to +13105551212 are not allowed here "
        b"(the administrator's rule deny_numbers +1310555*).",
    )
    assert [code for code, _ in replies[3:]] == [250, 250]
    assert done[0] == 250
    destinations = sorted(str(f["destination_fax_number"]) for f in faxes)
    assert destinations == ["+442079460958", "13235551212"]
    assert len(await sim_get(simulator, "/_sim/faxes")) == 2


# -- how much --------------------------------------------------------------------------------------
async def test_faxes_per_hour_per_sender_and_per_mailbox(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        policy={"faxes_per_hour_per_sender": 2, "faxes_per_hour_per_mailbox": 3},
    )
    two = ["13235551212@fax.local", "13235551213@fax.local"]
    async with Gateway(settings) as gw:
        first = await smtp_send(gw.smtp_port, pdf_mail(to=", ".join(two)), rcpts=two)
        again = await smtp_send(gw.smtp_port, pdf_mail())
        bob = await smtp_send(gw.smtp_port, pdf_mail(sender="bob@example.com"), sender="bob@example.com")
        bob_again = await smtp_send(
            gw.smtp_port, pdf_mail(sender="bob@example.com"), sender="bob@example.com"
        )
    assert first.code == 250 and bob.code == 250
    assert (again.stage, again.code) == ("mail", 451)
    assert again.text.startswith(
        "4.7.1 alice@example.com has sent 2 faxes in the last hour, and at most 2 are allowed; "
        "try again in 60 minutes (after "
    )
    assert (bob_again.stage, bob_again.code) == ("mail", 451)
    assert bob_again.text.startswith("4.7.1 The fax number +1 323-555-0100 has sent 3 faxes in the last hour")
    assert len(await wait_until(lambda: _at_least(simulator, 3))) == 3


async def test_too_many_numbers_for_the_hour_are_refused_at_rcpt(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        policy={"faxes_per_hour_per_sender": 2},
    )
    three = ["13235551212@fax.local", "13235551213@fax.local", "13235551214@fax.local"]
    async with Gateway(settings) as gw:
        replies, done = await asyncio.to_thread(
            _all_rcpts, gw.smtp_port, three, data(pdf_mail(to=", ".join(three)))
        )
    assert [code for code, _ in replies] == [250, 250, 550]  # 3 numbers can never fit in a limit of 2
    assert replies[2][1].startswith(
        b"5.7.1 This mail would be 3 faxes, more than the 2 faxes alice@example.com"
    )
    assert done[0] == 250


async def test_pages_per_day_are_counted_with_pypdf(
    tmp_path: Path, simulator: RunningSimulator, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        policy={"pages_per_day_per_sender": 5},
    )
    async with Gateway(settings) as gw:
        first = await smtp_send(gw.smtp_port, pdf_mail(pdf=make_pdf(pages=3)))
        second = await smtp_send(gw.smtp_port, pdf_mail(pdf=make_pdf(pages=3, marker="two")))
        huge = await smtp_send(gw.smtp_port, pdf_mail(pdf=make_pdf(pages=6, marker="six")))
    assert first.code == 250
    assert (second.stage, second.code) == ("data", 451)
    assert second.text.startswith(
        "4.7.1 alice@example.com has sent 3 pages in the last 24 hours, and at most 5 are allowed; "
        "try again in"
    )
    assert (huge.stage, huge.code) == ("data", 550)
    assert huge.text == (
        "5.7.1 This mail would be 6 pages, more than the 5 pages alice@example.com may send in 24 hours; "
        "send it in smaller parts."
    )


async def test_more_than_25_documents_is_refused_before_250(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    msg = pdf_mail()
    for n in range(25):
        msg.add_attachment(
            make_pdf(marker=f"d{n}"), maintype="application", subtype="pdf", filename=f"d{n}.pdf"
        )
    result = await smtp_send(gateway.smtp_port, msg)
    assert (result.stage, result.code) == ("data", 552)
    assert result.text.startswith("5.3.4 The mail has more than 25 documents to fax")
    await no_fax_sent(simulator)


# -- audit, masking, metrics, secrets --------------------------------------------------------------
async def test_the_audit_log_has_one_line_per_fax_event_and_no_content(
    secure: Gateway, simulator: RunningSimulator, certs: Certs, tmp_path: Path
) -> None:
    msg = pdf_mail(subject="Confidential diagnosis", text="The patient's results are attached.")
    ok = await mail(secure.smtp_port, msg, context=certs.client, user=(USER, USER_PASSWORD))
    refused = await mail(
        secure.smtp_port,
        pdf_mail(to="19005551234@fax.local"),
        context=certs.client,
        user=(USER, USER_PASSWORD),
    )
    assert ok.code == 250 and refused.code == 550
    path = tmp_path / "audit.jsonl"
    await wait_until(lambda: any(a["audit"] == "delivered" for a in audit_lines(path)), timeout=10)
    lines = audit_lines(path)
    by_kind = {a["audit"]: a for a in lines}
    accepted = by_kind["accepted"]
    assert accepted["who"] == "user alice from 127.0.0.1" and accepted["peer"] == "127.0.0.1"
    assert (accepted["sender"], accepted["header_from"], accepted["mailbox"]) == (ALICE, ALICE, ALICE_USER)
    assert accepted["to"] == ["13235551212"] and accepted["pages"] == 1 and accepted["job"] == ok.job_id
    assert by_kind["refused"]["stage"] == "rcpt" and by_kind["refused"]["to"] == ["19005551234@fax.local"]
    assert by_kind["refused"]["reply"].startswith("550 5.7.1 19005551234 is a premium-rate number")
    submitted, delivered = by_kind["submitted"], by_kind["delivered"]
    assert submitted["job"] == delivered["job"] == ok.job_id
    assert submitted["fax"] == delivered["fax"]
    assert submitted["to"][0] in ("13235551212", "3235551212")  # as eFax wrote it back
    assert submitted["who"] == "user alice from 127.0.0.1"
    text = path.read_text()
    assert "Confidential" not in text and "patient" not in text and "JVBER" not in text  # no content


async def test_a_fax_eFax_refuses_is_audited_as_failed(
    secure: Gateway, simulator: RunningSimulator, certs: Certs, tmp_path: Path
) -> None:
    from tests.e2e.conftest import sim_post

    await sim_post(
        simulator,
        "/_sim/faults",
        {"method": "POST", "path": "/faxes", "kind": "status", "status": 400, "count": 1},
    )
    ok = await mail(secure.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
    path = tmp_path / "audit.jsonl"
    failed = await wait_until(lambda: [a for a in audit_lines(path) if a["audit"] == "failed"])
    assert failed[0]["job"] == ok.job_id and failed[0]["to"] == ["13235551212"] and failed[0]["reason"]
    assert failed[0]["who"] == "user alice from 127.0.0.1"


@pytest.mark.parametrize("mask", [True, False])
async def test_ordinary_logs_mask_numbers_and_addresses_when_asked(
    tmp_path: Path,
    simulator: RunningSimulator,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    mask: bool,
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        smtp={"trusted_networks": ["127.0.0.0/8"]},
        logging={"mask": mask},
    )
    caplog.set_level(logging.INFO)
    async with Gateway(settings) as gw:
        assert (await smtp_send(gw.smtp_port, pdf_mail())).code == 250
    [accepted] = [
        r for r in caplog.records if r.name == "gateway.smtp.handler" and r.getMessage() == "mail accepted"
    ]
    fields = accepted.__dict__["_faxgw_fields"]  # set by the log record's extra
    assert (fields["to"], fields["sender"]) == (
        ("1323555****", "a***@example.com") if mask else ("13235551212", ALICE)
    )
    [audited] = [r for r in caplog.records if r.name == "gateway.audit" and '"accepted"' in r.getMessage()]
    assert '"to":["13235551212"]' in audited.getMessage() and ALICE in audited.getMessage()


async def test_smtp_metrics_count_sessions_acceptances_and_refusals_by_code(
    secure: Gateway, certs: Certs
) -> None:
    await mail(secure.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
    await smtp_send(secure.smtp_port, pdf_mail())  # untrusted, no AUTH: 530
    assert secure.http_server is not None
    async with httpx.AsyncClient(base_url=secure.http_server.base_url) as client:
        text = (await client.get("/metrics")).text
    assert "faxgw_smtp_sessions_total 2.0" in text
    assert "faxgw_smtp_accepted_total 1.0" in text
    assert 'faxgw_smtp_refused_total{code="530"} 1.0' in text
    assert not any(secret in text for secret in (API_KEY, USER_HASH, USER_PASSWORD))


async def test_secrets_never_reach_check_output_maildir_or_metrics(
    tmp_path: Path,
    simulator: RunningSimulator,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = secure_settings(
        tmp_path,
        simulator.base_url,
        certs,
        relay={"maildir": str(tmp_path / "mail")},
        inbound={"webhook_secret": WEBHOOK_SECRET},
        tracking=FAST_TRACKING,
    )
    secrets = secret_values(settings) | KNOWN_SECRETS
    assert {API_KEY, USER_HASH, WEBHOOK_SECRET} <= secrets  # the autouse log check knows them too
    async with Gateway(settings) as gw:
        result = await mail(gw.smtp_port, pdf_mail(), context=certs.client, user=(USER, USER_PASSWORD))
        maildir = tmp_path / "mail"
        await wait_until(
            lambda: maildir.exists() and any(p.is_file() for p in maildir.rglob("*")), timeout=10
        )
        assert gw.http_server is not None
        async with httpx.AsyncClient(base_url=gw.http_server.base_url) as client:
            metrics = (await client.get("/metrics")).text
    assert result.code == 250
    mails = b"".join(p.read_bytes() for p in maildir.rglob("*") if p.is_file())
    relay = settings.model_copy(
        update={
            "relay": settings.relay.model_copy(
                update={
                    "host": "127.0.0.1",
                    "port": 9,
                    "username": "fax",
                    "password": _secret(RELAY_PASSWORD),
                }
            )
        }
    )
    status = await check(relay)
    out = capsys.readouterr()
    assert status != 0 and "relay: cannot use 127.0.0.1:9" in out.out
    assert "smtp: STARTTLS offered" in out.out
    for secret in secrets | {RELAY_PASSWORD}:
        assert secret not in out.out and secret not in out.err
        assert secret.encode() not in mails
        assert secret not in metrics


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)


def test_the_log_check_reads_messages_event_fields_and_tracebacks() -> None:
    """What the autouse ``_no_secret_in_logs`` fixture (conftest) looks at, on every e2e test."""
    from gateway.logs import event
    from tests.e2e.conftest import record_text

    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (API_KEY,), None)
    fields = logging.makeLogRecord({"msg": "ok", **event("sent", token=USER_HASH)})
    try:
        raise RuntimeError(f"password {USER_PASSWORD}")
    except RuntimeError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert API_KEY in record_text(plain)
    assert USER_HASH in record_text(fields)
    assert USER_PASSWORD in record_text(failed)


def _bad_initial_responses(port: int, context: ssl.SSLContext) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("x")
        client.starttls(context=context)
        client.ehlo("x")
        return [client.docmd("AUTH", "PLAIN not*base64"), client.docmd("AUTH", "LOGIN not*base64")]


async def test_an_initial_response_that_is_not_base64_is_a_syntax_error(
    secure: Gateway, certs: Certs
) -> None:
    replies = await asyncio.to_thread(_bad_initial_responses, secure.smtp_port, certs.client)
    assert replies == [
        (501, b"5.5.2 The AUTH PLAIN answer is not valid base64."),
        (501, b"5.5.2 The AUTH LOGIN user name is not valid base64."),
    ]

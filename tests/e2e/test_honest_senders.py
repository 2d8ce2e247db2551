"""Honest senders: a From: that readers or DMARC could take for someone else is refused at DATA."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind
from tests.e2e.conftest import ALICE, MAILBOXES, gateway_settings, make_pdf, sim_get, smtp_send
from tests.helpers import wait_until

RCPT = ["13235551212@fax.local"]


def mail(from_field: bytes, *, extra: bytes = b"") -> bytes:
    pdf = make_pdf()
    import base64

    body = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    return (
        b"From: "
        + from_field
        + b"\r\nTo: 13235551212@fax.local\r\nSubject: Contract\r\n"
        + extra
        + b"MIME-Version: 1.0\r\nContent-Type: application/pdf; name=contract.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )


@pytest.mark.parametrize(
    ("from_field", "why"),
    [
        (b"alice@example.com <mallory@evil.example>", "part of it is not an address"),
        (b"alice@example.com)<mallory@evil.example>", "part of it is not an address"),
        (b"=?utf-8?q?alice=40example.com?= <bob@example.com>", "its name looks like another address"),
        (b'"alice@example.com" <bob@example.com>', "its name looks like another address"),
        (b"bob@example.com (alice@example.com)", "its name looks like another address"),
        (b"=?utf-8?q?=E2=80=AEalice?= <bob@example.com>", "its name holds control or invisible characters"),
    ],
)
async def test_a_from_that_names_someone_else_is_refused_as_ambiguous(
    gateway: Gateway, simulator: RunningSimulator, from_field: bytes, why: str
) -> None:
    # bob@example.com is an allowed sender too: the check is not only "is it allowed"
    result = await smtp_send(gateway.smtp_port, mail(from_field), sender=ALICE, rcpts=RCPT)
    assert (result.stage, result.code) == ("data", 550)
    assert result.text.startswith("5.7.1 The From: field ")
    assert (
        f"could be read as another sender than the one it names ({why}); send it with one plain"
        in result.text
    )
    assert gateway.store is not None
    assert await gateway.store.jobs(kind=JobKind.DISPATCH) == []


async def test_several_from_addresses_or_fields_are_refused(gateway: Gateway) -> None:
    two = await smtp_send(gateway.smtp_port, mail(b"alice@example.com, bob@example.com"), rcpts=RCPT)
    assert (two.code, two.text) == (
        550,
        "5.7.1 The From: field names 2 addresses; the mail needs exactly one to be faxed: send it with "
        "one plain address, such as Alice Example <alice@example.com>.",
    )
    fields = await smtp_send(
        gateway.smtp_port, mail(b"alice@example.com", extra=b"From: bob@example.com\r\n"), rcpts=RCPT
    )
    assert (fields.code, fields.text) == (
        550,
        "5.7.1 The mail has 2 From: fields; it needs exactly one From: address to be faxed.",
    )


async def test_a_plain_name_and_address_is_faxed(gateway: Gateway, simulator: RunningSimulator) -> None:
    result = await smtp_send(
        gateway.smtp_port, mail(b"=?utf-8?q?Alice_M=C3=BCller?= <alice@example.com>"), rcpts=RCPT
    )
    assert result.code == 250, result
    await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))


async def test_the_upstream_verdict_must_be_for_the_from_domain_people_read(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DMARC pass for example.com on a From: that names evil.example as well, or an SPF
    pass for the envelope's unrelated domain, does not verify alice@example.com."""
    monkeypatch.chdir(tmp_path)
    mailboxes = [dict(MAILBOXES[0], senders=[ALICE, "*@bulk.example.net"])]
    settings = gateway_settings(
        tmp_path,
        simulator.base_url,
        mailboxes=mailboxes,
        policy={"require_authentication_results": "dmarc_or_spf", "authserv_id": "mx.example.com"},
    )
    dmarc = b"Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"
    spf_bulk = b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=bulk.example.net\r\n"
    spf_own = b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=example.com\r\n"
    async with Gateway(settings) as gw:
        hidden = await smtp_send(
            gw.smtp_port, mail(b"alice@example.com <x@bulk.example.net>", extra=dmarc), rcpts=RCPT
        )
        unaligned = await smtp_send(
            gw.smtp_port,
            mail(b"alice@example.com", extra=spf_bulk),
            sender="news@bulk.example.net",
            rcpts=RCPT,
        )
        aligned = await smtp_send(
            gw.smtp_port, mail(b"alice@example.com", extra=spf_own), sender="alice@example.com", rcpts=RCPT
        )
        verified = await smtp_send(gw.smtp_port, mail(b"Alice <alice@example.com>", extra=dmarc), rcpts=RCPT)
    assert (hidden.code, hidden.text.split(" (")[0]) == (
        550,
        "5.7.1 The From: field alice@example.com <x@bulk.example.net> could be read as another sender than "
        "the one it names",
    )
    assert unaligned.code == 550 and "verified its sender (dmarc=pass or spf=pass)" in unaligned.text
    assert unaligned.text.endswith("it reported spf=pass.")
    assert aligned.code == 250, aligned  # the envelope's own domain is the From domain
    assert verified.code == 250, verified

"""message/partial: pieces through SMTP become one fax, or the sender is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests import corpus
from tests.e2e.conftest import gateway_settings, sim_get, smtp_send
from tests.helpers import wait_until

RCPT = ["13235551212@fax.local"]


async def test_three_pieces_in_any_order_become_one_fax(
    gateway: Gateway, simulator: RunningSimulator
) -> None:
    pieces = corpus.message_partial(3)
    replies = [await smtp_send(gateway.smtp_port, pieces[i], rcpts=RCPT) for i in (2, 0)]
    assert [r.code for r in replies] == [250, 250]
    assert all("split message kept" in r.text for r in replies)
    assert await sim_get(simulator, "/_sim/faxes") == []
    last = await smtp_send(gateway.smtp_port, pieces[1], rcpts=RCPT)
    assert last.code == 250 and "queued as" in last.text
    [fax] = await wait_until(lambda: sim_get(simulator, "/_sim/faxes"))
    full = await sim_get(simulator, f"/_sim/faxes/{fax['fax_id']}")
    assert [d["document_type"] for d in full["documents"]] == ["PDF", "PDF"]  # first.pdf, second.pdf
    assert gateway.store is not None
    assert await gateway.store.partial_pieces(sender_key="alice@example.com", partial_id=_ident()) == []


def _ident() -> str:
    from gateway.core.documents import parse_message, partial_key

    key = partial_key(parse_message(corpus.message_partial(3)[0]))
    assert key is not None
    return key[0]


async def test_missing_piece_tells_the_sender_after_the_window(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"partial_window_s": 0.3})
    async with Gateway(settings) as gw:
        pieces = corpus.message_partial(3)
        for piece in pieces[:2]:
            assert (await smtp_send(gw.smtp_port, piece, rcpts=RCPT)).code == 250
        new = tmp_path / "mail" / "new"
        [notice] = await wait_until(lambda: list(new.glob("*")) if new.exists() else [], timeout=10)
    text = notice.read_bytes()
    assert b"Return-Path: <>" in text
    assert b"X-Envelope-To: alice@example.com" in text
    assert b"pieces received: 1, 2" in text and b"Nothing was faxed" in text
    assert await sim_get(simulator, "/_sim/faxes") == []


# -- every piece is checked like a mail, and the split mail is bounded as its pieces arrive ------------
def _piece(
    number: int, *, total: int | None = None, sender: str = "alice@example.com", body: bytes = b""
) -> bytes:
    of = f"; total={total}" if total else ""
    return (
        f"From: {sender}\r\nTo: 13235551212@fax.local\r\nSubject: Scan (part {number})\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: message/partial; id="split-1@example.com"; number={number}{of}\r\n\r\n'
    ).encode() + (body or b"Content-Type: text/plain\r\n\r\nhello\r\n")


async def _kept(gateway: Gateway, ident: str = "split-1@example.com") -> list[tuple[int, int | None]]:
    assert gateway.store is not None
    return await gateway.store.partial_pieces(sender_key="alice@example.com", partial_id=ident)


async def test_a_piece_from_a_sender_not_allowed_is_refused_and_not_kept(gateway: Gateway) -> None:
    result = await smtp_send(gateway.smtp_port, _piece(1, sender="mallory@evil.example"), rcpts=RCPT)
    assert (result.stage, result.code) == ("data", 550)
    assert result.text == (
        "5.7.1 The From: address mallory@evil.example is not allowed to send faxes through this gateway."
    )
    ambiguous = await smtp_send(
        gateway.smtp_port, _piece(1, sender="alice@example.com <mallory@evil.example>"), rcpts=RCPT
    )
    assert ambiguous.code == 550 and "could be read as another sender" in ambiguous.text
    assert await _kept(gateway) == []


async def test_a_split_mail_of_too_many_pieces_is_refused_as_its_pieces_arrive(gateway: Gateway) -> None:
    over = (
        "5.3.4 This split message has more than 100 pieces, more than this gateway joins; "
        "send it as one message."
    )
    numbered = await smtp_send(gateway.smtp_port, _piece(101), rcpts=RCPT)
    announced = await smtp_send(gateway.smtp_port, _piece(7, total=150), rcpts=RCPT)
    assert [(r.code, r.text) for r in (numbered, announced)] == [(552, over), (552, over)]
    assert await _kept(gateway) == []


async def test_the_pieces_together_are_held_to_the_mail_size_limit(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(tmp_path, simulator.base_url, smtp={"max_message_bytes": 25_000})
    filler = b"x" * 98 + b"\r\n"  # 100 bytes a line
    async with Gateway(settings) as gw:
        replies = [
            await smtp_send(
                gw.smtp_port, _piece(n, total=3 if n == 3 else None, body=filler * 120), rcpts=RCPT
            )
            for n in (1, 2, 3)  # 12.2 KB each
        ]
        kept = await _kept(gw)
    assert [r.code for r in replies] == [250, 250, 552]
    assert replies[2].text == (
        "5.3.4 The pieces of this split message come to 37 KB, more than the 25 KB one mail may have "
        "here; send fewer or smaller attachments."
    )
    assert kept == [(1, None), (2, None)]  # the third was not kept


async def test_a_sender_keeps_at_most_five_split_mails_waiting(gateway: Gateway) -> None:
    def first_piece(n: int) -> bytes:
        return _piece(1).replace(b'id="split-1@example.com"', f'id="split-{n}@example.com"'.encode())

    replies = [await smtp_send(gateway.smtp_port, first_piece(n), rcpts=RCPT) for n in range(1, 7)]
    assert [r.code for r in replies] == [250] * 5 + [451]
    assert replies[5].text == (
        "4.7.1 5 split messages from alice@example.com are still waiting for pieces, as many as this "
        "gateway keeps at once; send their missing pieces, or try again once they have expired "
        "(after 60 minutes)."
    )
    more = await smtp_send(gateway.smtp_port, _piece(2), rcpts=RCPT)  # a piece of one already waiting
    assert more.code == 250
    assert await _kept(gateway, "split-6@example.com") == []

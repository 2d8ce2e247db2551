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

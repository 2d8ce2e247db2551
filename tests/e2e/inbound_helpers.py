"""Helpers for the inbound tests: a gateway mailing to an SMTP sink, faxes injected and counted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.simulator.server import RunningSimulator
from gateway.workers.receive import Poller
from tests.e2e.conftest import ALICE, ALICE_USER, SCANNER_USER, gateway_settings, requests_to, sim_post
from tests.helpers import wait_until
from tests.sink import Received, SmtpSink

ADMIN = "postmaster@example.com"
BOB = "bob@example.com"
FRONTDESK = "frontdesk@example.com"
FROM = "faxes@gw.example.com"


def settings(tmp_path: Path, sim: RunningSimulator, relay_sink: SmtpSink, **overrides: Any) -> Settings:
    relay_settings = {"host": "127.0.0.1", "port": relay_sink.port, "tls": "none", "from_address": FROM}
    relay_settings.update(overrides.pop("relay", {}))
    return gateway_settings(tmp_path, sim.base_url, relay=relay_settings, admin_address=ADMIN, **overrides)


def mailboxes(alice_to: list[str], **alice: Any) -> list[dict[str, Any]]:
    return [
        {
            "user_id": ALICE_USER,
            "fax_number": "13235550100",
            "senders": [ALICE],
            "deliver_to": alice_to,
            **alice,
        },
        {"user_id": SCANNER_USER, "fax_number": "13235550200", "senders": [], "deliver_to": [FRONTDESK]},
    ]


@contextlib.asynccontextmanager
async def running(
    config: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Gateway]:
    monkeypatch.chdir(tmp_path)
    gw = Gateway(config)
    await gw.start()
    try:
        await wait_until(lambda: first_poll_done(gw, ALICE_USER))  # the start-up read, before we inject
        yield gw
    finally:
        await gw.stop()


async def first_poll_done(gw: Gateway, user_id: str) -> bool:
    assert gw.store is not None
    return any(p.user_id == user_id and p.last_ok_at for p in await gw.store.polls())


def poller(gw: Gateway) -> Poller:
    return next(w for w in gw.workers if isinstance(w, Poller))


async def deliver_jobs(gw: Gateway, state: str) -> int:
    assert gw.store is not None
    return (await gw.store.count_jobs()).get(("deliver", state), 0)


def done(gw: Gateway, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await deliver_jobs(gw, "done") >= n

    return check


async def receive(sim: RunningSimulator, user_id: str, count: int = 1, **extra: Any) -> list[str]:
    body = {"user_id": user_id, "count": count, "pages": 2, "from_number": "13235551212", **extra}
    ids: list[str] = (await sim_post(sim, "/_sim/receive", body))["fax_ids"]
    return ids


def fax_id(message: Received) -> str:
    return str(message.message["X-Fax-Id"])


async def ok_patches(sim: RunningSimulator) -> list[str]:
    found = await requests_to(sim, "PATCH", "/faxes/{id}/metadata")()
    return [r["path"].split("/")[2] for r in found if r["status"] == 200]

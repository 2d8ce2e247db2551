"""Fixtures for the simulator tests: a real simulator on 127.0.0.1 port 0, a fake
clock it reads, and an httpx client talking to it over loopback."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway.simulator.server import RunningSimulator, start_simulator
from gateway.simulator.state import SimulatorConfig

USER = "12345678-87654321"
START = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def txt(text: str = "hello\n") -> dict[str, str]:
    return {"document_type": "TXT", "document_content": base64.b64encode(text.encode()).decode()}


def fax_body(*numbers: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "destinations": [{"fax_number": n, "to_name": "Joe"} for n in numbers or ("18665550101",)],
        "documents": [txt()],
    }
    body.update(extra)
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(clock: FakeClock) -> SimulatorConfig:
    return SimulatorConfig(clock=clock, complete_after_s=30.0)


@pytest.fixture
async def sim(config: SimulatorConfig) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(config)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as http:
        yield http


async def get_token(http: httpx.AsyncClient, app_id: str = "app", api_key: str = "key") -> str:
    reply = await http.post("/tokens", auth=(app_id, api_key), data={"grant_type": "client_credentials"})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    token = await get_token(client)
    return {"Authorization": f"Bearer {token}", "user-id": USER}

"""Webhook emitter of the eFax simulator.

Consumes: ``SimulatorState.due_notifications()``, polled every ``poll_s``
(0.02 s) while the app runs (started and stopped by the app's lifespan).
Produces: one ``POST <url>`` per notification, JSON body = the fax's metadata
object (efax-api.md §5.1) or another shape (``config.webhook_body_shape``, see
``SimulatorState.webhook_body``), ``Content-Type: application/json`` and header
``config.webhook_header`` (default ``X-HMAC-Signature``) = lowercase hex
HMAC-SHA256 of the raw body keyed with ``config.webhook_secret``.

Failure: a non-2xx reply or a transport error is retried up to
``config.webhook_max_attempts`` attempts in all, pausing
``config.webhook_retry_delay_s`` seconds (real time) doubled after each failure.
The outcome lands on the ``Notification`` (SUCCESSFUL or FAILED, attempts,
last status or error), which ``GET /notifications`` and ``GET /_sim/webhooks``
report. ``stop()`` cancels the poller and every delivery in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging

import httpx

from gateway.simulator.state import Notification, SimulatorState

log = logging.getLogger(__name__)


def sign(secret: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    def __init__(self, state: SimulatorState, poll_s: float = 0.02) -> None:
        self.state = state
        self.poll_s = poll_s
        self._client: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="sim-webhook-poller")

    async def stop(self) -> None:
        tasks = [t for t in (self._poller, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._poller = None
        self._deliveries.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _poll(self) -> None:
        while True:
            for note in self.state.due_notifications():
                task = asyncio.create_task(self._deliver(note), name="sim-webhook-delivery")
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
            await asyncio.sleep(self.poll_s)

    def _http(self) -> httpx.AsyncClient:
        # Made on first use: building the TLS context costs tens of milliseconds.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        return self._client

    async def _deliver(self, note: Notification) -> None:
        client = self._http()
        config = self.state.config
        delay = config.webhook_retry_delay_s
        for attempt in range(1, config.webhook_max_attempts + 1):
            note.attempts = attempt
            headers = {
                "Content-Type": "application/json",
                config.webhook_header: sign(config.webhook_secret, note.body),
            }
            try:
                reply = await client.post(note.url, content=note.body, headers=headers)
            except httpx.HTTPError as err:
                note.last_status, note.last_error = None, f"{type(err).__name__}: {err}"
            else:
                note.last_status, note.last_error = reply.status_code, ""
                if reply.is_success:
                    note.sent_status = "SUCCESSFUL"
                    return
            if attempt < config.webhook_max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        note.sent_status = "FAILED"
        log.warning(
            "webhook delivery failed",
            extra={"action": "webhook_failed", "fax_id": note.fax_id, "attempts": note.attempts},
        )

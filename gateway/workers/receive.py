"""Receiver (poller): finds faxes that arrived on the account's numbers and records them.

Consumes: eFax's received list, ``GET /faxes/received?image_downloaded=false`` with
``pagination-limit: 100`` and ``pagination-offset``, every page, for each mailbox
(eFax user-id) that has a ``deliver_to`` list; and webhook triggers (``trigger``),
which read one fax with ``GET /faxes/{id}/metadata`` instead of waiting for a poll.
Produces: one ``received`` row per new fax id plus its ``deliver`` job, in one
transaction (``store.record_received``; the fax id is unique, so a fax listed twice,
or by a poll and a webhook, is recorded once); one ``polls`` row per mailbox (last
try, last success, last error) for ``/readyz`` and the poll-lag metric.
Touches: eFax (through ``gateway.efax``) and the store. Never mails, never marks.

Several gateways: each mailbox is read by one of them at a time. Before reading, the
poller takes the store lock ``poll:<user id>`` (held while its process's heartbeat
renews it; a dead holder's lock runs out after ``workers.lease_s``); a mailbox whose
lock another gateway holds is skipped this round. A webhook's one-fax read needs no lock:
recording is once per fax id whoever reads it.

Timing: mailbox k of n is first read ``k * poll_interval_s / n`` seconds after start
(staggered), then every ``inbound.poll_interval_s`` seconds (default 60, minimum 30).
``nudge()`` reads now (tests; the webhook when its fax cannot be read directly, or
when the notification names no fax);
``poll_once()`` reads every mailbox once and returns (drain mode).

Failures: a 429 or 5xx (``EfaxTransientError``) backs the mailbox off: the next read
comes after 1-2 intervals, doubling per failure up to 15 minutes, and never sooner
than eFax's Retry-After. Other errors (refused credentials) wait one interval. An
outage is logged once when it starts and once when it ends. Mailboxes without
``deliver_to`` are not read at all: their faxes stay at eFax, untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.core.retry import RetryPolicy
from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxError, EfaxPermanentError, EfaxTransientError
from gateway.efax.models import FaxSummary, check_fax_id
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.settings import Mailbox
from gateway.store.base import JobKind, Store, StoreError
from gateway.workers.base import Worker

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 900.0
RECORD_BATCH = 100  # records written concurrently, so group commit folds them


def metadata_of(fax: FaxSummary) -> dict[str, Any]:
    """What the store keeps of a listed fax (read back by ``core.inbound_mail``)."""
    return {
        "fax_id": fax.fax_id,
        "direction": fax.direction,
        "pages": fax.pages,
        "duration_s": fax.duration_s,
        "completed_timestamp": fax.completed_at.isoformat() if fax.completed_at else None,
        "originating_fax_number": fax.originating_fax_number,
        "originating_fax_tsid": fax.originating_fax_tsid,
        "destination_fax_number": fax.destination_fax_number,
    }


def poll_backoff(interval_s: float, failures: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds until the next read after ``failures`` transient failures in a row."""
    policy = RetryPolicy(initial_s=interval_s, maximum_s=max(interval_s, MAX_BACKOFF_S))
    return policy.delay(failures + 1, retry_after=retry_after, rng=rng)


def _digits(number: str | None) -> str:
    return re.sub(r"\D", "", number or "")[-10:]


class Poller(Worker):
    """Reads each mailbox's received list; see the module docstring."""

    def __init__(
        self,
        store: Store,
        efax: EfaxClient,
        mailboxes: Sequence[Mailbox],
        *,
        interval_s: float,
        metrics: Metrics | None = None,
        on_new: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        name: str = "receive",
        lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, name=name, lease_s=lease_s, clock=clock)
        self.efax = efax
        self.mailboxes = [m for m in mailboxes if m.deliver_to]
        self.interval_s = interval_s
        self.metrics = metrics
        self.on_new = on_new
        self.rng = rng or random.Random()
        self.started_at = clock()
        self._wake = {m.user_id: asyncio.Event() for m in self.mailboxes}
        self._locks = {m.user_id: asyncio.Lock() for m in self.mailboxes}
        self._failing: dict[str, bool] = {}
        self._triggers: set[asyncio.Task[None]] = set()
        for mailbox in mailboxes:
            if not mailbox.deliver_to:
                log.warning(
                    "mailbox has no deliver_to: its received faxes are left at eFax",
                    extra=event("not polled", mailbox=mailbox.user_id),
                )

    # -- control -------------------------------------------------------------------
    def nudge(self, user_id: str | None = None) -> None:
        """Read now (one mailbox, or all) unless that mailbox is backing off."""
        for uid, wake in self._wake.items():
            if user_id is None or uid == user_id:
                wake.set()

    def stop(self) -> None:
        super().stop()
        for wake in self._wake.values():
            wake.set()

    async def run(self, *, until_idle: bool = False) -> None:
        if until_idle:
            await self.poll_once()
            return
        self.started_at = self.clock()
        count = max(len(self.mailboxes), 1)
        loops = [
            asyncio.create_task(self._loop(m, k * self.interval_s / count), name=f"poll-{m.user_id}")
            for k, m in enumerate(self.mailboxes)
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in (*loops, *self._triggers):
                task.cancel()
            await asyncio.gather(*loops, *self._triggers, return_exceptions=True)

    async def poll_once(self, user_id: str | None = None) -> int:
        """Read every mailbox (or one) now; returns how many new faxes were recorded.

        Errors are recorded and logged, not raised.
        """
        found = 0
        for mailbox in self.mailboxes:
            if user_id is None or mailbox.user_id == user_id:
                with contextlib.suppress(EfaxError):
                    found += await self._poll(mailbox)
        return found

    # -- webhook trigger -----------------------------------------------------------------
    def trigger(self, fax_id: str, *, hint_number: str | None = None) -> None:
        """Read this one fax through the API now, in the background (webhook)."""
        task = asyncio.create_task(self._fetch_quietly(fax_id, hint_number), name="receive-trigger")
        self._triggers.add(task)
        task.add_done_callback(self._triggers.discard)

    async def _fetch_quietly(self, fax_id: str, hint_number: str | None) -> None:
        await self.fetch_one(fax_id, hint_number=hint_number)

    async def fetch_one(self, fax_id: str, *, hint_number: str | None = None) -> bool:
        """Look the fax up in each mailbox (the hinted number first) and record it.

        True when the fax is known afterwards. A transient error falls back to a poll.
        """
        try:
            fax_id = check_fax_id(fax_id)
            if await self.store.received(fax_id) is not None:
                await self.store.expedite(JobKind.DELIVER, fax_id, now=self.clock())
                self._new()
                return True
            hint = _digits(hint_number)
            ordered = sorted(self.mailboxes, key=lambda m: not hint or _digits(m.fax_number) != hint)
            for mailbox in ordered:
                try:
                    summary = await self.efax.metadata(user_id=mailbox.user_id, fax_id=fax_id)
                except EfaxPermanentError as err:
                    if err.status in (403, 404):  # not this mailbox's fax
                        continue
                    raise
                if summary.direction not in (None, "INBOUND"):
                    return False
                await self._record(mailbox.user_id, [summary])
                return True
            log.info("webhook named a fax no mailbox knows", extra=event("trigger ignored", fax=fax_id))
            return False
        except EfaxTransientError as err:
            log.info(
                "eFax busy; polling instead", extra=event("trigger deferred", fax=fax_id, error=str(err))
            )
            self.nudge()
            return False
        except EfaxError as err:
            log.warning("webhook fax not read", extra=event("trigger failed", fax=fax_id, error=str(err)))
            return False
        except Exception:  # a background task must not die silently
            log.exception("webhook trigger failed", extra=event("trigger failed", fax=fax_id))
            return False

    # -- the loop ---------------------------------------------------------------------------
    async def _loop(self, mailbox: Mailbox, first_delay: float) -> None:
        wake = self._wake[mailbox.user_id]
        await self._sleep(wake, first_delay, interruptible=True)
        failures = 0
        while not self._stopping.is_set():
            delay = self.interval_s
            try:
                await self._poll(mailbox)
                failures = 0
            except EfaxTransientError as err:
                failures += 1
                delay = poll_backoff(self.interval_s, failures, err.retry_after, self.rng)
            except EfaxError:
                failures += 1
            except StoreError:
                pass  # the store logs its outage once; try again next round
            except Exception:
                log.exception(
                    "poll failed unexpectedly", extra=event("poll crashed", mailbox=mailbox.user_id)
                )
            await self._sleep(wake, delay, interruptible=failures == 0)

    async def _sleep(self, wake: asyncio.Event, seconds: float, *, interruptible: bool) -> None:
        if not interruptible:
            wake.clear()
        with contextlib.suppress(TimeoutError):
            if interruptible:
                await asyncio.wait_for(wake.wait(), timeout=seconds)
            else:
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        wake.clear()

    async def _poll(self, mailbox: Mailbox) -> int:
        uid = mailbox.user_id
        async with self._locks[uid]:
            lock = f"poll:{uid}"
            if not await self.store.take_lock(lock, owner=self.owner, now=self.clock(), lease_s=self.lease_s):
                return 0  # another gateway reads this mailbox
            try:
                faxes = [f async for f in self.efax.iter_received(user_id=uid, image_downloaded=False)]
            except EfaxError as err:
                await self.store.record_poll(uid, now=self.clock(), ok=False, error=str(err))
                if not self._failing.get(uid):
                    log.warning(
                        "cannot read the received faxes: %s", err, extra=event("poll failing", mailbox=uid)
                    )
                self._failing[uid] = True
                raise
            new = await self._record(uid, faxes)
            await self.store.record_poll(uid, now=self.clock(), ok=True)
            if self._failing.pop(uid, False):
                log.info("received faxes readable again", extra=event("poll recovered", mailbox=uid))
            return new

    async def _record(self, user_id: str, faxes: Sequence[FaxSummary]) -> int:
        new = 0
        for start in range(0, len(faxes), RECORD_BATCH):
            batch = faxes[start : start + RECORD_BATCH]
            now = self.clock()
            added = await asyncio.gather(
                *(
                    self.store.record_received(
                        user_id=user_id, fax_id=fax.fax_id, metadata=metadata_of(fax), now=now
                    )
                    for fax in batch
                )
            )
            for fax, was_new in zip(batch, added, strict=True):
                if was_new:
                    new += 1
                    log.info("fax received", extra=event("received", fax=fax.fax_id, mailbox=user_id))
        if new:
            if self.metrics is not None:
                self.metrics.faxes_received.inc(new)
            self._new()
        return new

    def _new(self) -> None:
        if self.on_new is not None:
            self.on_new()

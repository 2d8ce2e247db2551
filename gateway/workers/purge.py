"""Retention: the bytes of old finished faxes are deleted, their record kept.

Consumes: the store's messages whose dispatch job has ended (done, failed or dead) and
received faxes mailed and marked (done), older than ``database.keep_days``. Produces:
their raw mail, documents and received PDFs emptied, in batches of ``batch`` so that
mail coming in meanwhile never waits long for the store; ``messages.purged_at`` set
(``fax-gateway queue retry`` and the dispatcher refuse such a mail). One log line per
pass that deleted anything. Touches: the store only.

Runs once at start, then every ``every_s``. Of several gateways sharing a database, one
at a time purges: the one holding the store lock ``purge`` (taken for ``2 * every_s``,
so that another takes over once its holder is gone).

Settings: ``database.keep_days`` (0: never).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.logs import event
from gateway.store.base import Store, StoreError
from gateway.workers.base import Wakeable, worker_owner

log = logging.getLogger(__name__)

DAY_S = 86_400.0


class Purger(Wakeable):
    name = "purge"

    def __init__(
        self,
        store: Store,
        *,
        keep_days: float,
        every_s: float = 3600.0,
        batch: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.keep_s = keep_days * DAY_S
        self.every_s = every_s
        self.batch = batch
        self.clock = clock

    async def run(self) -> None:
        owner = worker_owner(self.name)
        while not self._stopping.is_set():
            try:
                now = self.clock()
                if await self.store.take_lock("purge", owner=owner, now=now, lease_s=2 * self.every_s):
                    await self.purge_due()
            except StoreError as err:
                log.error("cannot delete old faxes: %s", err, extra=event("purge failed"))
            await self._rest(self.every_s)

    async def purge_due(self) -> tuple[int, int]:
        """Purge everything due now, batch by batch; (messages, received faxes) purged."""
        messages = received = 0
        while not self._stopping.is_set():
            now = self.clock()
            some, more = await self.store.purge(before=now - self.keep_s, now=now, limit=self.batch)
            messages, received = messages + some, received + more
            if some < self.batch and more < self.batch:
                break
            await asyncio.sleep(0)  # let mail in between batches
        if messages or received:
            log.info(
                "deleted the stored mail of %d faxes sent or failed and the PDF of %d received "
                "faxes, all older than %g days",
                messages,
                received,
                self.keep_s / DAY_S,
                extra=event("purged", messages=messages, received=received),
            )
        return messages, received

"""The loop every worker shares: claim a job of one kind, handle it, repeat.

``run()`` works until ``stop()``; ``run(until_idle=True)`` returns once no job of its
kind is due (drain mode, for tests and one-shot commands). On stop, a worker finishes
the job in hand; jobs it could not finish are released back to the queue by the
application, and a crashed process's leases simply expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from gateway.logs import event
from gateway.smtp.ingress import Ingress
from gateway.store.base import Job, JobKind, Store

log = logging.getLogger(__name__)


def worker_owner(name: str) -> str:
    """A lease owner unique to this process and worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


class Wakeable:
    """Something that runs until ``stop()`` and rests between rounds unless ``nudge()``d."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._nudge = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._nudge.set()

    def nudge(self) -> None:
        """Work may be waiting: look now rather than at the end of the rest."""
        self._nudge.set()

    async def _rest(self, seconds: float) -> None:
        self._nudge.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), timeout=seconds)


class Worker(Wakeable):
    kind: JobKind
    # Set by the application on all but the first worker of a kind: wait while mail is
    # pouring in (``gateway.smtp.ingress``) before taking the next job.
    defer_to: Ingress | None = None

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        lease_s: float = 300.0,
        idle_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.name = name
        self.owner = worker_owner(name)
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.clock = clock

    async def run(self, *, until_idle: bool = False) -> None:
        while not self._stopping.is_set():
            if self.defer_to is not None and not until_idle:
                await self.defer_to.quiet()
            try:
                job = await self.store.claim(
                    self.kind, owner=self.owner, now=self.clock(), lease_s=self.lease_s
                )
            except Exception:
                log.exception("cannot claim work", extra=event("claim failed", worker=self.name))
                job = None
            if job is None:
                if until_idle:
                    return
                await self._idle()
                continue
            try:
                await self.handle(job)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug must not kill the worker: park the job
                log.exception("job failed unexpectedly", extra=event("crashed", job=job.ref, kind=job.kind))
                await self.store.defer(
                    job,
                    owner=self.owner,
                    now=self.clock(),
                    run_after=self.clock() + 60,
                    error=f"internal error: {type(err).__name__}",
                )

    async def _idle(self) -> None:
        await self._rest(self.idle_s)

    async def handle(self, job: Job) -> None:
        raise NotImplementedError

"""The loop every worker shares: claim a job of one kind, handle it, repeat.

``run()`` works until ``stop()``; ``run(until_idle=True)`` returns once no job of its
kind is due (drain mode, for tests and one-shot commands). On stop, a worker finishes
the job in hand; jobs it could not finish are released back to the queue by the
application, and a crashed process's leases simply expire.

Leases: a claimed job is the worker's for ``workers.lease_s`` (30 s); the process's
``Heartbeat`` renews every lease and lock it holds each ``workers.heartbeat_s``, so a
long job keeps its lease and a dead process's jobs are taken over by any gateway
sharing the store within about ``lease_s``.

Store outages: a claim that fails waits 1, 2, 4 ... up to 30 s before the next (the
store logs the outage once); a handler that fails on the store leaves its job to its
lease, which another attempt takes up once the store is back.

Crashes (Mailman's shunt, Postfix's hold): a handler that raises anything else (a bug,
a mail no code path was written for) has its job deferred by 60 s, so the jobs behind
it go on; the ``workers.max_crashes``-th crash of one job (start-up recovery of a job
whose process died counts too, ``gateway.workers.recovery``) holds it instead, with the
traceback's last line as its reason: one log line, one event in its story, one audit
record ``held``. ``fax-gateway queue list`` shows it among the held, ``fax-gateway
queue retry`` releases it (one more crash holds it again; ``gateway.core.crashes``).

Settings: ``workers.lease_s``, ``workers.heartbeat_s``, ``workers.poll_idle_s``,
``workers.max_crashes`` (handed in by ``gateway.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from gateway.audit import Audit
from gateway.core.crashes import CRASHES_KEY, crash_reason, crashes_so_far, hold_after_crash, last_line
from gateway.logs import event
from gateway.store.base import Job, JobKind, JobState, Store, StoreError

log = logging.getLogger(__name__)

_OUTAGE_PAUSE_MAX_S = 30.0


def worker_owner(name: str) -> str:
    """A lease owner unique to this process and worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


class Quiet(Protocol):
    """What a worker may wait on before it takes a job: ``quiet()`` returns once fewer
    mails are coming in (the SMTP side's counter, handed over by the application)."""

    async def quiet(self) -> None: ...


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
    # pouring in (the SMTP handler's ``arrivals``) before taking the next job.
    defer_to: Quiet | None = None
    audit: Audit | None = None  # told of a job held after crashes (subclasses set it)

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        lease_s: float = 300.0,
        idle_s: float = 1.0,
        max_crashes: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.name = name
        self.owner = worker_owner(name)
        self.lease_s = lease_s
        self.idle_s = idle_s
        self.max_crashes = max_crashes
        self.clock = clock
        self.current: Job | None = None  # the job in hand, whose lease the heartbeat renews

    async def run(self, *, until_idle: bool = False) -> None:
        pause = 0.0  # while the store is out
        while not self._stopping.is_set():
            if self.defer_to is not None and not until_idle:
                await self.defer_to.quiet()
            try:
                job = await self.store.claim(
                    self.kind, owner=self.owner, now=self.clock(), lease_s=self.lease_s
                )
            except StoreError:  # the store logs the outage once
                if until_idle:
                    return
                pause = min(max(pause * 2, 1.0), _OUTAGE_PAUSE_MAX_S)
                await self._rest(pause)
                continue
            except Exception:
                log.exception("cannot claim work", extra=event("claim failed", worker=self.name))
                job = None
            pause = 0.0
            if job is None:
                if until_idle:
                    return
                await self._idle()
                continue
            await self._handle_safely(job)

    async def _handle_safely(self, job: Job) -> None:
        self.current = job
        try:
            await self.handle(job)
        except asyncio.CancelledError:
            raise
        except StoreError as err:  # its lease runs out and the job is taken up again
            log.warning(
                "job left to its lease: the store failed",
                extra=event("store failed", job=job.ref, error=str(err)),
            )
        except Exception as err:  # a bug must not kill the worker: park the job, or hold it
            await self._crashed(job, err)
        finally:
            self.current = None

    async def _crashed(self, job: Job, err: Exception) -> None:
        crashes = crashes_so_far(job.payload) + 1
        now = self.clock()
        fields = event("crashed", job=job.ref, kind=job.kind, crashes=crashes)
        if not hold_after_crash(crashes, self.max_crashes):
            log.exception("job failed unexpectedly (crash %d of %d)", crashes, self.max_crashes, extra=fields)
            with contextlib.suppress(StoreError):
                await self.store.defer(
                    job,
                    owner=self.owner,
                    now=now,
                    run_after=now + 60,
                    error=f"internal error: {type(err).__name__}",
                    payload={**job.payload, CRASHES_KEY: crashes},
                )
            return
        reason = crash_reason(crashes, last_line(traceback.format_exc()))
        log.exception(
            "job held after %d crashes; an administrator decides (fax-gateway queue retry %s)",
            crashes,
            job.ref,
            extra=fields,
        )
        try:
            if not await self.store.finish(job, owner=self.owner, now=now, state=JobState.HELD, error=reason):
                return  # its lease ran out meanwhile: another worker has it
            await record_held(self.store, job, reason, now=now)
        except StoreError:
            return
        if self.audit is not None:
            self.audit.held_after_crashes(kind=str(job.kind), job=job.ref, reason=reason)

    async def _idle(self) -> None:
        await self._rest(self.idle_s)

    async def handle(self, job: Job) -> None:
        raise NotImplementedError


async def record_held(store: Store, job: Job, reason: str, *, now: float) -> None:
    """The ``held`` event in the story of the mail (or fax) a job held after crashes is about."""
    message_id: str | None = None
    fax_id: str | None = None
    if job.kind in (JobKind.DISPATCH, JobKind.REPORT):
        message_id = job.ref.partition(":")[0]
    elif job.kind in (JobKind.TRACK, JobKind.DELIVER):
        fax_id = job.ref
        fax = await store.fax(job.ref) if job.kind == JobKind.TRACK else None
        message_id = fax.message_id if fax is not None else None
    detail = f"{job.kind} {job.ref}: {reason}"
    await store.add_event("held", now=now, message_id=message_id, fax_id=fax_id, detail=detail)


class Heartbeat(Wakeable):
    """Renews the leases of the jobs this process's workers hold, and their locks, every
    ``every_s`` seconds.

    Only a job in a worker's hands is renewed: one it let go of (the store failed while
    handling it) runs out and is taken up again. A failed renewal is not logged here (the
    store logs its outage once); leases that ran out meanwhile are not renewed, so a job
    another gateway has taken over stays its.
    """

    name = "heartbeat"

    def __init__(
        self,
        store: Store,
        workers: list[Worker],
        *,
        every_s: float,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.workers = workers
        self.every_s = every_s
        self.lease_s = lease_s
        self.clock = clock

    async def beat(self) -> int:
        held = [(w.current.id, w.owner) for w in self.workers if w.current is not None]
        owners = [w.owner for w in self.workers]
        return await self.store.renew(held, owners=owners, now=self.clock(), lease_s=self.lease_s)

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(StoreError):
                await self.beat()
            await self._rest(self.every_s)

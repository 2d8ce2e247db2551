"""Start-up: take back the jobs a crashed process on this host still holds.

A claimed job carries its owner, ``host:pid:worker``. When that process no longer runs
(or is an earlier life of this very pid, as a container's pid 1 is after a restart),
its leases would only expire after ``workers.lease_s``; ``recover_orphans`` queues
those jobs again at once, before any worker of this process claims. Owners on other
hosts are left to their leases: a process there may be alive.

A job taken back counts as a crash of its job (``gateway.core.crashes``): a mail that
kills the process while it is being worked on would otherwise kill every restart. The
``workers.max_crashes``-th is held instead of queued (log line, event, audit record).
"""

from __future__ import annotations

import logging
import os
import socket

from gateway.audit import Audit
from gateway.core.crashes import CRASHES_KEY, crash_reason, crashes_so_far, hold_after_crash
from gateway.logs import event
from gateway.store.base import JobState, Store
from gateway.workers.base import record_held

log = logging.getLogger(__name__)


def orphaned(owner: str) -> bool:
    """Is ``owner`` (``host:pid:name``) a process of this host that is gone, or ourselves?"""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # called before our own workers claim: an earlier life of this pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def recover_orphans(
    store: Store, *, now: float, max_crashes: int = 3, audit: Audit | None = None
) -> int:
    """Queue again (or hold, at ``max_crashes``) every active job whose owner is a dead
    process of this host; how many were taken back."""
    taken = 0
    for job in await store.jobs(state=JobState.ACTIVE, limit=100_000):
        if job.lease_owner is None or not orphaned(job.lease_owner):
            continue
        crashes = crashes_so_far(job.payload) + 1
        payload = {**job.payload, CRASHES_KEY: crashes}
        fields = event("recovered", job=job.ref, kind=job.kind, owner=job.lease_owner, crashes=crashes)
        if hold_after_crash(crashes, max_crashes):
            reason = crash_reason(crashes, "its process died while handling it")
            if await store.set_job_state(job.id, JobState.HELD, now=now, payload=payload, error=reason):
                taken += 1
                await record_held(store, job, reason, now=now)
                if audit is not None:
                    audit.held_after_crashes(kind=str(job.kind), job=job.ref, reason=reason)
                log.warning(
                    "job held: its process died while handling it %d times; an administrator decides "
                    "(fax-gateway queue retry %s)",
                    crashes,
                    job.ref,
                    extra=fields,
                )
        elif await store.set_job_state(job.id, JobState.QUEUED, now=now, run_after=now, payload=payload):
            taken += 1
            log.info("took back a job its crashed process held", extra=fields)
    return taken

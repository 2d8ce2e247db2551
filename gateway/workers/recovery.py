"""Start-up: take back the jobs a crashed process on this host still holds.

A claimed job carries its owner, ``host:pid:worker``. When that process no longer runs
(or is an earlier life of this very pid, as a container's pid 1 is after a restart),
its leases would only expire after ``workers.lease_s``; ``recover_orphans`` queues
those jobs again at once, before any worker of this process claims. Owners on other
hosts are left to their leases: a process there may be alive.
"""

from __future__ import annotations

import logging
import os
import socket

from gateway.logs import event
from gateway.store.base import JobState, Store

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


async def recover_orphans(store: Store, *, now: float) -> int:
    """Queue again every active job whose owner is a dead process of this host."""
    taken = 0
    for job in await store.jobs(state=JobState.ACTIVE, limit=100_000):
        if job.lease_owner is None or not orphaned(job.lease_owner):
            continue
        if await store.set_job_state(job.id, JobState.QUEUED, now=now, run_after=now):
            taken += 1
            log.info(
                "took back a job its crashed process held",
                extra=event("recovered", job=job.ref, kind=job.kind, owner=job.lease_owner),
            )
    return taken

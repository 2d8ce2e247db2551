"""``fax-gateway queue list|show|retry|cancel`` over the store."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from gateway.settings import Settings
from gateway.store.base import JobKind, JobState
from gateway.store.sqlite import SQLiteStore


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def queue(args: argparse.Namespace, settings: Settings) -> int:
    store = await SQLiteStore.open(settings.database.sqlite_path)
    try:
        if args.action == "list":
            return await _list(store, args)
        if args.action == "show":
            return await _show(store, args.id)
        if args.action == "retry":
            return await _retry(store, args.id)
        return await _cancel(store, args.id)
    finally:
        await store.close()


async def _list(store: SQLiteStore, args: argparse.Namespace) -> int:
    try:
        kind = JobKind(args.kind) if args.kind else None
        state = JobState(args.state) if args.state else None
    except ValueError as err:
        print(f"fax-gateway queue list: {err}", file=sys.stderr)
        return 2
    older = time.time() - args.older_than if args.older_than else None
    jobs = await store.jobs(kind=kind, state=state, older_than=older, limit=args.limit)
    print(f"{'created (UTC)':19}  {'kind':8}  {'state':8}  {'tries':>5}  ref / last error")
    for job in jobs:
        error = f"  {job.last_error}" if job.last_error else ""
        print(f"{_when(job.created_at)}  {job.kind:8}  {job.state:8}  {job.attempts:>5}  {job.ref}{error}")
    return 0


async def _show(store: SQLiteStore, message_id: str) -> int:
    message = await store.message(message_id)
    if message is None:
        print(f"fax-gateway queue show: no mail {message_id}", file=sys.stderr)
        return 1
    print(f"mail {message.id}  received {_when(message.received_at)} UTC")
    print(f"  from {message.header_from} ({message.auth}), subject {message.subject!r}")
    for r in message.recipients:
        print(f"  to   {r.pretty}" + (f" ({r.name})" if r.name else ""))
    for d in message.documents:
        print(f"  document {d.seq + 1}: {d.filename} ({d.detected} -> {d.document_type}, {d.pages} pages)")
    for item in message.options.get("left_out", []):
        print(f"  left out: {item['filename']}: {item['reason']}")
    job = await store.find_job(JobKind.DISPATCH, message.id)
    if job is not None:
        print(
            f"  dispatch job {job.id}: {job.state}, {job.attempts} tries"
            + (f", last error: {job.last_error}" if job.last_error else "")
        )
    for fax in await store.faxes(message.id):
        print(f"  fax {fax.fax_id} to {fax.destination}: {fax.status}")
    print("story:")
    for e in await store.events(message.id):
        fax = f" [{e.fax_id}]" if e.fax_id else ""
        print(f"  {_when(e.at)}  {e.action}{fax}  {e.detail}")
    return 0


async def _retry(store: SQLiteStore, message_id: str) -> int:
    job = await store.find_job(JobKind.DISPATCH, message_id)
    if job is None:
        print(f"fax-gateway queue retry: no job for {message_id}", file=sys.stderr)
        return 1
    if job.state not in (JobState.DEFERRED, JobState.FAILED, JobState.HELD):
        print(f"job {message_id} is {job.state}; only deferred, failed or held jobs are retried")
        return 1
    now = time.time()
    await store.set_job_state(job.id, JobState.QUEUED, now=now, run_after=now)
    await store.add_event("retry requested", now=now, message_id=message_id)
    print(f"job {message_id} queued again")
    return 0


async def _cancel(store: SQLiteStore, message_id: str) -> int:
    job = await store.find_job(JobKind.DISPATCH, message_id)
    if job is None:
        print(f"fax-gateway queue cancel: no job for {message_id}", file=sys.stderr)
        return 1
    if job.state in (JobState.QUEUED, JobState.DEFERRED, JobState.HELD):
        now = time.time()
        await store.set_job_state(job.id, JobState.FAILED, now=now)
        await store.add_event("cancelled", now=now, message_id=message_id, detail="before sending")
        print(f"job {message_id} cancelled before it was sent to eFax")
        return 0
    print(f"job {message_id} is {job.state}; faxes already handed to eFax are cancelled with eFax")
    return 1

"""``fax-gateway queue list|show|retry|cancel`` over the store.

- ``list [--state S] [--kind K] [--older-than SECONDS]``: jobs, newest first.
- ``show ID``: a mail's whole story (ID = the job id from "queued as ...", or a fax id):
  accepted, handed to eFax, each status eFax reported, each report sent.
- ``retry ID``: make the mail's deferred, failed or held jobs (dispatch, reports; a fax
  id: its tracking) due now.
- ``cancel ID``: before the mail reached eFax, the dispatch job is cancelled. After, each
  fax not yet final gets ``POST /faxes/{id}/cancel``; the answer is explained (202 is
  only "request logged", 409 "already finished") and tracking is made due at once, so
  the report tells the real final state.

The logic is ``gateway.operations`` (shared with the admin page); this module prints it.
Times are shown in the configured ``timezone``. Exit status: 0 done, 1 nothing to do or
an error talking to eFax.
"""

from __future__ import annotations

import argparse
import sys
import time
from zoneinfo import ZoneInfo

from gateway.efax.client import EfaxClient
from gateway.operations import actions
from gateway.operations.story import find_story, when
from gateway.settings import Settings
from gateway.store import Store, open_store
from gateway.store.base import JobKind, JobState


async def queue(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_store(settings.database.url, password=settings.database.password.get_secret_value())
    try:
        if args.action == "list":
            return await _list(store, args, settings.zone)
        if args.action == "show":
            return await _show(store, args.id, settings.zone)
        if args.action == "retry":
            return _print("retry", await actions.retry(store, args.id, now=time.time()))
        return await _cancel(store, args.id, settings)
    finally:
        await store.close()


def _print(action: str, outcome: actions.Outcome) -> int:
    for line in outcome.said:
        print(line)
    if outcome.error is not None:
        if outcome.error == actions.NO_CANCELLER:
            print(outcome.error, file=sys.stderr)
        else:
            print(f"fax-gateway queue {action}: {outcome.error}", file=sys.stderr)
    return 0 if outcome.ok else 1


async def _list(store: Store, args: argparse.Namespace, zone: ZoneInfo) -> int:
    try:
        kind = JobKind(args.kind) if args.kind else None
        state = JobState(args.state) if args.state else None
    except ValueError as err:
        print(f"fax-gateway queue list: {err}", file=sys.stderr)
        return 2
    older = time.time() - args.older_than if args.older_than else None
    jobs = await store.jobs(kind=kind, state=state, older_than=older, limit=args.limit)
    held = [] if state is not None else await store.jobs(kind=kind, state=JobState.HELD, older_than=older)
    if held:  # waiting for a person: shown apart, first
        print(f"held, waiting for a decision ({len(held)}): fax-gateway queue show|retry|cancel ID")
        for job in held:
            print(f"  {when(job.created_at, zone)}  {job.kind:8}  {job.ref}  {job.last_error or ''}".rstrip())
        print()
        jobs = [j for j in jobs if j.state != JobState.HELD]
    print(f"{'created (' + zone.key + ')':19}  {'kind':8}  {'state':8}  {'tries':>5}  ref / last error")
    for job in jobs:
        error = f"  {job.last_error}" if job.last_error else ""
        print(
            f"{when(job.created_at, zone)}  {job.kind:8}  {job.state:8}  {job.attempts:>5}  {job.ref}{error}"
        )
    return 0


async def _show(store: Store, some_id: str, zone: ZoneInfo) -> int:
    story = await find_story(store, some_id, zone)
    if story is None:
        print(f"fax-gateway queue show: no mail or fax {some_id}", file=sys.stderr)
        return 1
    for line in story.lines():
        print(line)
    return 0


async def _cancel(store: Store, some_id: str, settings: Settings) -> int:
    if settings.efax.simulated:
        return _print("cancel", await actions.cancel(store, some_id, None, now=time.time()))
    efax = EfaxClient(
        base_url=settings.efax.base_url,
        app_id=settings.efax.app_id,
        api_key=settings.efax.api_key.get_secret_value(),
        connect_timeout_s=settings.efax.connect_timeout_s,
        read_timeout_s=settings.efax.read_timeout_s,
        write_timeout_s=settings.efax.write_timeout_s,
    )
    async with efax:
        return _print("cancel", await actions.cancel(store, some_id, efax, now=time.time()))

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

Times are shown in the configured ``timezone``. Exit status: 0 done, 1 nothing to do or
an error talking to eFax.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.core.result_codes import explain
from gateway.core.tracking import is_final
from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxError, EfaxNotFound
from gateway.settings import Settings
from gateway.store import Store, open_store
from gateway.store.base import FaxRecord, Job, JobKind, JobState

RETRYABLE = (JobState.DEFERRED, JobState.FAILED, JobState.HELD)
REPORT_SUFFIXES = ("", ":unconfirmed", ":not-sent", ":held")


def _when(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


async def queue(args: argparse.Namespace, settings: Settings) -> int:
    store = await open_store(settings.database.url, password=settings.database.password.get_secret_value())
    try:
        if args.action == "list":
            return await _list(store, args, settings.zone)
        if args.action == "show":
            return await _show(store, args.id, settings.zone)
        if args.action == "retry":
            return await _retry(store, args.id)
        return await _cancel(store, args.id, settings)
    finally:
        await store.close()


async def _message_id(store: Store, some_id: str) -> tuple[str, FaxRecord | None]:
    """(mail job id, the fax when ``some_id`` was a fax id)."""
    fax = await store.fax(some_id.strip().lower())
    return (fax.message_id, fax) if fax is not None else (some_id, None)


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
            print(
                f"  {_when(job.created_at, zone)}  {job.kind:8}  {job.ref}  {job.last_error or ''}".rstrip()
            )
        print()
        jobs = [j for j in jobs if j.state != JobState.HELD]
    print(f"{'created (' + zone.key + ')':19}  {'kind':8}  {'state':8}  {'tries':>5}  ref / last error")
    for job in jobs:
        error = f"  {job.last_error}" if job.last_error else ""
        print(
            f"{_when(job.created_at, zone)}  {job.kind:8}  {job.state:8}  {job.attempts:>5}  {job.ref}{error}"
        )
    return 0


def _job_line(label: str, job: Job, zone: ZoneInfo) -> str:
    text = f"  {label}: {job.state}, {job.attempts} tries"
    if job.state in (JobState.QUEUED, JobState.DEFERRED):
        text += f", next at {_when(job.run_after, zone)}"
    if job.last_error:
        text += f", last error: {job.last_error}"
    return text


async def _show(store: Store, some_id: str, zone: ZoneInfo) -> int:
    message_id, _ = await _message_id(store, some_id)
    message = await store.message(message_id)
    if message is None:
        print(f"fax-gateway queue show: no mail or fax {some_id}", file=sys.stderr)
        return 1
    print(f"mail {message.id}  accepted {_when(message.received_at, zone)} ({zone.key})")
    print(f"  from {message.header_from} ({message.auth}), subject {message.subject!r}")
    print(f"  reports go to {message.report_to or '(nobody)'}")
    for r in message.recipients:
        print(f"  to   {r.pretty}" + (f" ({r.name})" if r.name else ""))
    for number in message.options.deferred:
        print(f"  not  {number}: over smtp.max_recipients (452), left for another delivery")
    for d in message.documents:
        pages = f"{d.pages} page" + ("" if d.pages == 1 else "s")
        print(f"  document {d.seq + 1}: {d.filename} ({d.detected} -> {d.document_type}, {pages})")
    for item in message.options.left_out:
        print(f"  left out: {item.filename}: {item.reason}")
    if message.purged_at is not None:
        print(f"  mail and documents deleted {_when(message.purged_at, zone)} (database.keep_days)")
    job = await store.find_job(JobKind.DISPATCH, message.id)
    if job is not None:
        print(_job_line("dispatch", job, zone))
    for fax in await store.faxes(message.id):
        detail = fax.detail
        facts = [f"{k} {detail[k]}" for k in ("pages", "duration_s", "attempts") if detail.get(k) is not None]
        print(
            f"  fax {fax.fax_id} to {fax.destination}: {fax.status}"
            + (f" ({', '.join(facts)})" if facts else "")
        )
        if detail.get("error_code"):
            meaning = explain(detail["error_code"], detail.get("error_message")).meaning
            print(f"    {detail['error_code']}: {meaning}")
        track = await store.find_job(JobKind.TRACK, fax.fax_id)
        if track is not None:
            print("  " + _job_line("tracking", track, zone))
    for suffix in REPORT_SUFFIXES:
        report = await store.find_job(JobKind.REPORT, message.id + suffix)
        if report is not None:
            print(_job_line(f"report{suffix or ' (final)'}", report, zone))
    print("story:")
    for e in await store.events(message.id):
        fax_note = f" [{e.fax_id}]" if e.fax_id else ""
        print(f"  {_when(e.at, zone)}  {e.action}{fax_note}  {e.detail}")
    return 0


async def _retry(store: Store, some_id: str) -> int:
    message_id, fax = await _message_id(store, some_id)
    if fax is not None:
        candidates = [await store.find_job(JobKind.TRACK, fax.fax_id)]
    else:
        candidates = [await store.find_job(JobKind.DISPATCH, message_id)]
        candidates += [await store.find_job(JobKind.REPORT, message_id + s) for s in REPORT_SUFFIXES]
    jobs = [j for j in candidates if j is not None]
    if not jobs:
        print(f"fax-gateway queue retry: no job for {some_id}", file=sys.stderr)
        return 1
    message = await store.message(message_id) if fax is None else None
    now, done = time.time(), 0
    for job in jobs:
        if job.state not in RETRYABLE:
            continue
        if job.kind == JobKind.DISPATCH and message is not None and message.purged_at is not None:
            print(
                f"dispatch job {job.ref} not queued again: its mail was deleted after "
                "database.keep_days; ask the sender to send it again"
            )
            continue
        if job.kind == JobKind.DISPATCH and job.state == JobState.HELD and message is not None:
            print(
                f"dispatch job {job.ref}: eFax never confirmed the earlier attempt and did not list it; "
                f"sending it again now to {', '.join(r.pretty for r in message.recipients)}. If the "
                "earlier attempt did get through, the recipients will have it twice."
            )
            await store.set_submit_state(message_id, "none", now=now)  # a new send, not a look
            await store.add_event("released", now=now, message_id=message_id, detail="queue retry")
        await store.set_job_state(job.id, JobState.QUEUED, now=now, run_after=now)
        await store.add_event(
            "retry requested", now=now, message_id=message_id, detail=f"{job.kind} {job.ref}"
        )
        print(f"{job.kind} job {job.ref} queued again (it was {job.state})")
        done += 1
    if not done:
        states = ", ".join(f"{j.kind} {j.state}" for j in jobs)
        print(f"nothing to retry for {some_id} ({states}); only deferred, failed or held jobs are retried")
        return 1
    return 0


async def _cancel(store: Store, some_id: str, settings: Settings) -> int:
    message_id, only = await _message_id(store, some_id)
    job = await store.find_job(JobKind.DISPATCH, message_id)
    if job is None:
        print(f"fax-gateway queue cancel: no mail or fax {some_id}", file=sys.stderr)
        return 1
    now = time.time()
    if job.state in (JobState.QUEUED, JobState.DEFERRED, JobState.HELD):
        await store.set_job_state(job.id, JobState.FAILED, now=now)
        await store.add_event("cancelled", now=now, message_id=message_id, detail="before sending")
        print(f"mail {message_id} cancelled before it was sent to eFax")
        return 0
    faxes = [only] if only is not None else await store.faxes(message_id)
    open_faxes = [f for f in faxes if not is_final(f.status)]
    if not open_faxes:
        what = "its faxes have" if faxes else "it has"
        print(f"mail {message_id}: {what} already finished ({job.state}); there is nothing to cancel")
        return 1
    message = await store.message(message_id)
    if settings.efax.simulated or message is None:
        print(
            "no eFax account is configured (efax.app_id is empty): the built-in simulator lives "
            "inside 'serve' and cannot be reached from this command",
            file=sys.stderr,
        )
        return 1
    efax = EfaxClient(
        base_url=settings.efax.base_url,
        app_id=settings.efax.app_id,
        api_key=settings.efax.api_key.get_secret_value(),
        connect_timeout_s=settings.efax.connect_timeout_s,
        read_timeout_s=settings.efax.read_timeout_s,
        write_timeout_s=settings.efax.write_timeout_s,
    )
    failures = 0
    async with efax:
        for fax in open_faxes:
            failures += not await _cancel_one(store, efax, message.mailbox_user_id, fax)
    return 1 if failures else 0


async def _cancel_one(store: Store, efax: EfaxClient, user_id: str, fax: FaxRecord) -> bool:
    try:
        answer = await efax.cancel(user_id=user_id, fax_id=fax.fax_id)
    except EfaxNotFound:
        print(f"fax {fax.fax_id} to {fax.destination}: eFax does not know this fax (404)")
        return False
    except EfaxError as err:
        print(f"fax {fax.fax_id} to {fax.destination}: the cancel request did not get through: {err}")
        return False
    now = time.time()
    if answer == "accepted":
        print(
            f"fax {fax.fax_id} to {fax.destination}: eFax accepted the request (202). That only means "
            "it was logged: the fax may still be delivered before eFax stops it. The gateway keeps "
            "tracking it, and the sender's report will say how it really ended."
        )
        detail = "cancel requested: accepted (202), not yet cancelled"
    else:
        print(
            f"fax {fax.fax_id} to {fax.destination}: eFax refused (409): the fax has already finished, "
            "for example it was delivered. The sender's report will say how it ended."
        )
        detail = "cancel requested: refused (409), the fax had already finished"
    await store.add_event("cancel", now=now, message_id=fax.message_id, fax_id=fax.fax_id, detail=detail)
    await store.expedite(JobKind.TRACK, fax.fax_id, now=now)
    return True

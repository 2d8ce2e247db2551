"""``retry`` and ``cancel``: the queue's two actions, for ``fax-gateway queue`` and ``/admin``.

Each returns an ``Outcome``: what was done, in the sentences the command prints, or
why nothing was. ``retry(..., dry_run=True)`` changes nothing and says what a retry
would do (the admin page's confirmation step): for a held mail, that it is sent again
and may reach its recipients twice.

- retry: the mail's deferred, failed or held jobs (dispatch, reports; for a fax id, its
  tracking) are made due now. A held dispatch is released (a new send, not a look for
  the old one), unless it was held after crashes (``workers.max_crashes``): that one is
  only queued again, as it was, so a submission it was making is still looked for first.
  A mail whose bytes were purged (``database.keep_days``) is not retried.
- cancel: before the mail reached eFax its dispatch job is failed. After, each fax not
  yet final is cancelled through the ``Canceller`` (eFax's ``POST /faxes/{id}/cancel``:
  202 only means "logged", 409 "already finished"), and its tracking made due now.

Every change is an event in the mail's story, naming ``source`` (``queue retry`` or the
admin page and the admin's name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from gateway.core.crashes import held_for_crashes
from gateway.core.tracking import is_final
from gateway.efax.errors import EfaxError, EfaxNotFound
from gateway.operations.story import REPORT_SUFFIXES, resolve
from gateway.store.base import FaxRecord, Job, JobKind, JobState, Store

RETRYABLE = (JobState.DEFERRED, JobState.FAILED, JobState.HELD)
CANCELLABLE = (JobState.QUEUED, JobState.DEFERRED, JobState.HELD)
NO_CANCELLER = (
    "no eFax account is configured (efax.app_id is empty): the built-in simulator lives "
    "inside 'serve' and cannot be reached from this command"
)


class Canceller(Protocol):
    """eFax's cancel request, as ``EfaxClient.cancel`` makes it."""

    async def cancel(self, *, user_id: str, fax_id: str) -> Literal["accepted", "conflict"]: ...


@dataclass(frozen=True)
class Outcome:
    ok: bool  # something was (or, in a dry run, would be) done
    said: tuple[str, ...] = ()  # what was done, one sentence a line
    error: str | None = None  # nothing could be looked at: no such mail or job
    changed: tuple[str, ...] = field(default=())  # "kind ref" of each job changed


async def retryable_jobs(store: Store, some_id: str) -> tuple[str, FaxRecord | None, list[Job]]:
    message_id, fax = await resolve(store, some_id)
    if fax is not None:
        candidates = [await store.find_job(JobKind.TRACK, fax.fax_id)]
    else:
        candidates = [await store.find_job(JobKind.DISPATCH, message_id)]
        candidates += [await store.find_job(JobKind.REPORT, message_id + s) for s in REPORT_SUFFIXES]
    return message_id, fax, [j for j in candidates if j is not None]


async def retry(
    store: Store, some_id: str, *, now: float, source: str = "queue retry", dry_run: bool = False
) -> Outcome:
    message_id, fax, jobs = await retryable_jobs(store, some_id)
    if not jobs:
        return Outcome(False, error=f"no job for {some_id}")
    message = await store.message(message_id) if fax is None else None
    said: list[str] = []
    changed: list[str] = []
    for job in jobs:
        if job.state not in RETRYABLE:
            continue
        if job.kind == JobKind.DISPATCH and message is not None and message.purged_at is not None:
            said.append(
                f"dispatch job {job.ref} not queued again: its mail was deleted after "
                "database.keep_days; ask the sender to send it again"
            )
            continue
        if job.state == JobState.HELD and held_for_crashes(job.last_error):
            # Its handler crashed (or its process died) max_crashes times. Nothing is reset:
            # a submission it was making goes through the unknown-outcome path as before.
            said.append(
                f"{job.kind} job {job.ref} was held after crashes ({job.last_error}); "
                "one more crash holds it again."
            )
            if not dry_run:
                await store.add_event("released", now=now, message_id=message_id, detail=source)
        elif job.kind == JobKind.DISPATCH and job.state == JobState.HELD and message is not None:
            to = ", ".join(r.pretty for r in message.recipients)
            said.append(
                f"dispatch job {job.ref}: eFax never confirmed the earlier attempt and did not list it; "
                + (f"retrying sends it again to {to}." if dry_run else f"sending it again now to {to}.")
                + " If the earlier attempt did get through, the recipients will have it twice."
            )
            if not dry_run:
                await store.set_submit_state(message_id, "none", now=now)  # a new send, not a look
                await store.add_event("released", now=now, message_id=message_id, detail=source)
        if dry_run:
            said.append(f"{job.kind} job {job.ref} would be queued again (it is {job.state})")
        else:
            await store.set_job_state(job.id, JobState.QUEUED, now=now, run_after=now)
            detail = f"{job.kind} {job.ref}" + ("" if source == "queue retry" else f" ({source})")
            await store.add_event("retry requested", now=now, message_id=message_id, detail=detail)
            said.append(f"{job.kind} job {job.ref} queued again (it was {job.state})")
        changed.append(f"{job.kind} {job.ref}")
    if not changed:
        states = ", ".join(f"{j.kind} {j.state}" for j in jobs)
        said.append(
            f"nothing to retry for {some_id} ({states}); only deferred, failed or held jobs are retried"
        )
        return Outcome(False, tuple(said))
    return Outcome(True, tuple(said), changed=tuple(changed))


@dataclass(frozen=True)
class CancelPlan:
    message_id: str
    dispatch: Job | None  # None: no such mail
    faxes: tuple[FaxRecord, ...]  # the mail's faxes (or the one fax named)

    @property
    def before_sending(self) -> bool:
        return self.dispatch is not None and self.dispatch.state in CANCELLABLE

    @property
    def open_faxes(self) -> tuple[FaxRecord, ...]:
        """The faxes a cancel would ask eFax to stop."""
        return tuple(f for f in self.faxes if not is_final(f.status))


async def cancel_plan(store: Store, some_id: str) -> CancelPlan:
    message_id, only = await resolve(store, some_id)
    job = await store.find_job(JobKind.DISPATCH, message_id)
    faxes = [only] if only is not None else await store.faxes(message_id)
    return CancelPlan(message_id, job, tuple(faxes))


async def cancel(
    store: Store,
    some_id: str,
    canceller: Canceller | None,
    *,
    now: float,
    source: str = "queue cancel",
) -> Outcome:
    plan = await cancel_plan(store, some_id)
    message_id, job, open_faxes = plan.message_id, plan.dispatch, plan.open_faxes
    if job is None:
        return Outcome(False, error=f"no mail or fax {some_id}")
    if job.state in CANCELLABLE:
        await store.set_job_state(job.id, JobState.FAILED, now=now)
        detail = "before sending" + ("" if source == "queue cancel" else f" ({source})")
        await store.add_event("cancelled", now=now, message_id=message_id, detail=detail)
        return Outcome(
            True,
            (f"mail {message_id} cancelled before it was sent to eFax",),
            changed=(f"dispatch {job.ref}",),
        )
    if not open_faxes:
        what = "its faxes have" if plan.faxes else "it has"
        return Outcome(
            False, (f"mail {message_id}: {what} already finished ({job.state}); there is nothing to cancel",)
        )
    message = await store.message(message_id)
    if canceller is None or message is None:
        return Outcome(False, error=NO_CANCELLER)
    said: list[str] = []
    changed: list[str] = []
    for fax in open_faxes:
        sentence = await _cancel_one(store, canceller, message.mailbox_user_id, fax, now=now, source=source)
        said.append(sentence[1])
        if sentence[0]:
            changed.append(f"fax {fax.fax_id}")
    return Outcome(len(changed) == len(open_faxes), tuple(said), changed=tuple(changed))


async def _cancel_one(
    store: Store, canceller: Canceller, user_id: str, fax: FaxRecord, *, now: float, source: str
) -> tuple[bool, str]:
    try:
        answer = await canceller.cancel(user_id=user_id, fax_id=fax.fax_id)
    except EfaxNotFound:
        return False, f"fax {fax.fax_id} to {fax.destination}: eFax does not know this fax (404)"
    except EfaxError as err:
        return False, f"fax {fax.fax_id} to {fax.destination}: the cancel request did not get through: {err}"
    if answer == "accepted":
        sentence = (
            f"fax {fax.fax_id} to {fax.destination}: eFax accepted the request (202). That only means "
            "it was logged: the fax may still be delivered before eFax stops it. The gateway keeps "
            "tracking it, and the sender's report will say how it really ended."
        )
        detail = "cancel requested: accepted (202), not yet cancelled"
    else:
        sentence = (
            f"fax {fax.fax_id} to {fax.destination}: eFax refused (409): the fax has already finished, "
            "for example it was delivered. The sender's report will say how it ended."
        )
        detail = "cancel requested: refused (409), the fax had already finished"
    if source != "queue cancel":
        detail += f" ({source})"
    await store.add_event("cancel", now=now, message_id=fax.message_id, fax_id=fax.fax_id, detail=detail)
    await store.expedite(JobKind.TRACK, fax.fax_id, now=now)
    return True, sentence

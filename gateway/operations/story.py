"""A mail's whole story, as ``fax-gateway queue show`` prints it and the admin page shows it.

``find_story(store, id, zone)`` takes a mail's job id (``queued as ...``) or one of its
fax ids and returns the facts (who, to whom, documents, jobs, faxes, reports: one line
each, indented as the command prints them) and the events in order; None when no mail
or fax has that id. Times are shown in ``zone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.core.result_codes import explain
from gateway.store.base import Event, FaxRecord, Job, JobKind, JobState, Store, StoredMessage

REPORT_SUFFIXES = ("", ":unconfirmed", ":not-sent", ":held")


def when(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


async def resolve(store: Store, some_id: str) -> tuple[str, FaxRecord | None]:
    """(mail job id, the fax when ``some_id`` was a fax id)."""
    fax = await store.fax(some_id.strip().lower())
    return (fax.message_id, fax) if fax is not None else (some_id, None)


def job_line(label: str, job: Job, zone: ZoneInfo) -> str:
    text = f"  {label}: {job.state}, {job.attempts} tries"
    if job.state in (JobState.QUEUED, JobState.DEFERRED):
        text += f", next at {when(job.run_after, zone)}"
    if job.last_error:
        text += f", last error: {job.last_error}"
    return text


@dataclass(frozen=True)
class Story:
    message: StoredMessage
    facts: tuple[str, ...]  # the lines before "story:", as ``queue show`` prints them
    events: tuple[Event, ...]
    zone: ZoneInfo
    dispatch: Job | None  # the mail's dispatch job (None only for a mail stored without one)

    def lines(self) -> list[str]:
        """The whole text of ``queue show``."""
        out = [*self.facts, "story:"]
        for e in self.events:
            fax_note = f" [{e.fax_id}]" if e.fax_id else ""
            out.append(f"  {when(e.at, self.zone)}  {e.action}{fax_note}  {e.detail}")
        return out


async def find_story(store: Store, some_id: str, zone: ZoneInfo) -> Story | None:
    message_id, _ = await resolve(store, some_id)
    message = await store.message(message_id)
    if message is None:
        return None
    facts = [
        f"mail {message.id}  accepted {when(message.received_at, zone)} ({zone.key})",
        f"  from {message.header_from} ({message.auth}), subject {message.subject!r}",
        f"  reports go to {message.report_to or '(nobody)'}",
    ]
    for r in message.recipients:
        facts.append(f"  to   {r.pretty}" + (f" ({r.name})" if r.name else ""))
    for number in message.options.deferred:
        facts.append(f"  not  {number}: over smtp.max_recipients (452), left for another delivery")
    for d in message.documents:
        pages = f"{d.pages} page" + ("" if d.pages == 1 else "s")
        facts.append(f"  document {d.seq + 1}: {d.filename} ({d.detected} -> {d.document_type}, {pages})")
        if d.sha256:  # recorded when it was handed to eFax
            facts.append(f"    sha256 {d.sha256} ({d.size} bytes handed to eFax)")
    for item in message.options.left_out:
        facts.append(f"  left out: {item.filename}: {item.reason}")
    if message.purged_at is not None:
        facts.append(f"  mail and documents deleted {when(message.purged_at, zone)} (database.keep_days)")
    dispatch = await store.find_job(JobKind.DISPATCH, message.id)
    if dispatch is not None:
        facts.append(job_line("dispatch", dispatch, zone))
    for fax in await store.faxes(message.id):
        detail = fax.detail
        said = [f"{k} {detail[k]}" for k in ("pages", "duration_s", "attempts") if detail.get(k) is not None]
        facts.append(
            f"  fax {fax.fax_id} to {fax.destination}: {fax.status}"
            + (f" ({', '.join(said)})" if said else "")
        )
        if detail.get("error_code"):
            meaning = explain(detail["error_code"], detail.get("error_message")).meaning
            facts.append(f"    {detail['error_code']}: {meaning}")
        track = await store.find_job(JobKind.TRACK, fax.fax_id)
        if track is not None:
            facts.append("  " + job_line("tracking", track, zone))
    for suffix in REPORT_SUFFIXES:
        report = await store.find_job(JobKind.REPORT, message.id + suffix)
        if report is not None:
            facts.append(job_line(f"report{suffix or ' (final)'}", report, zone))
    events = tuple(await store.events(message.id))
    return Story(message=message, facts=tuple(facts), events=events, zone=zone, dispatch=dispatch)

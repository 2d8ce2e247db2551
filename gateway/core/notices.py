"""Report wording: what the sender is told about a fax, as text and HTML (pure).

``compose(report, ...)`` turns values (the mail, one ``Outcome`` per destination, the
documents, the zone, ``now``) into an ``EmailMessage``: subject "Fax delivered: <original
subject>" (or failed, cancelled, not confirmed...), threaded under the original with
``In-Reply-To``/``References``, ``Auto-Submitted: auto-replied``, a text part and an HTML
part saying for each destination the number and name, the outcome, pages, duration,
attempts and times, and for a failure the reason in plain words, what eFax tried and
whether it will try again, and what the sender can do.

Three kinds of report (``Report.kind``):

- ``final``: every fax of the mail is final (delivered, failed, cancelled, or unknown
  when tracking gave up);
- ``unconfirmed``: sent once when a fax is still not final after
  ``tracking.unconfirmed_after_s``; tracking goes on;
- ``not_sent``: the gateway could not hand the mail to eFax (refused, or eFax could not
  be reached within ``workers.lifetime_s``);
- ``held``: a ``POST /faxes`` of unknown outcome, and the fax not in eFax's sent list
  within ``dispatch.reconcile_window_s``: it was not sent again (no duplicate), and an
  administrator decides.

"Delivered" is said only for ``FaxStatus.DELIVERED``, i.e. when eFax said COMPLETE.
Small truths: retries are worded from eFax's count of attempts (one attempt is never
"retried"); eFax's page count includes the cover page, and the report says so beside
the documents' pages; a mail its mail server delivered in parts (``smtp.max_recipients``)
says which numbers this report covers and where the others went (``deferred``,
``other_deliveries``).

Also here: ``report_recipient`` (who may receive a report: no backscatter, no Reply-To
outside the mailbox's senders), ``wanted`` (``Mailbox.reports``: "all" or "failures")
and ``from_field`` (the From: of mail the gateway writes, with its display name). eFax's
E-codes in plain words are in ``gateway.core.result_codes``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.core.addressing import sender_matches
from gateway.core.result_codes import RESULT_CODES, ResultCode, explain
from gateway.core.tracking import FaxStatus

__all__ = ["RESULT_CODES", "ResultCode", "explain"]  # re-exported: callers read codes here too

ReportKind = Literal["final", "unconfirmed", "not_sent", "held"]


@dataclass(frozen=True)
class Outcome:
    """One destination of the mail and what became of it."""

    number: str  # formatted for people, e.g. +1 323-555-1212
    name: str | None
    status: FaxStatus
    fax_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    pages: int | None = None
    duration_s: int | None = None
    attempts: int | None = None
    submitted_at: float | None = None  # unix seconds
    finished_at: float | None = None
    retrying: bool = False  # eFax said PENDING RETRY at the last read


@dataclass(frozen=True)
class Document:
    filename: str
    kind: str  # what the bytes were (pdf, jpeg, text...)
    pages: int


@dataclass(frozen=True)
class LeftOut:
    filename: str
    reason: str


@dataclass(frozen=True)
class OtherDelivery:
    """Another part of the same mail, which its mail server delivered in another
    transaction after the gateway took ``smtp.max_recipients`` numbers of it."""

    job_id: str
    numbers: tuple[str, ...]  # formatted for people


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    job_id: str
    subject: str  # the original mail's subject
    original_message_id: str
    accepted_at: float
    outcomes: tuple[Outcome, ...] = ()
    documents: tuple[Document, ...] = ()
    left_out: tuple[LeftOut, ...] = ()
    not_sent_reason: str | None = None
    intended: tuple[str, ...] = ()  # not_sent: the destinations it was meant for
    maybe_sent: bool = False  # not_sent, but an earlier attempt's outcome was never known
    tracked_until: float | None = None  # unconfirmed: when tracking gives up
    gave_up_after_s: float | None = None  # final with unknown outcomes: how long we watched
    cover_page: bool = False  # a cover page went first (eFax's page counts include it)
    deferred: tuple[str, ...] = ()  # numbers of the mail this delivery did not take (452 4.5.3)
    other_deliveries: tuple[OtherDelivery, ...] = ()  # the rest of the mail, delivered apart
    attached: tuple[str, ...] = ()  # file names of what the mail carries (confirmations, the fax)
    reply_hint: str = ""  # what replying does (gateway.core.replies); empty: replies are not read


def match_destinations(numbers: Sequence[str], destinations: Sequence[str]) -> list[int | None]:
    """For each fax destination eFax gave back, the index of the mail recipient it is.

    eFax may drop the leading 1 or add a +, so digits are compared by suffix; a
    destination that matches nothing (or an ambiguous one) falls back to its position.
    """
    digits = ["".join(ch for ch in n if ch.isdigit()) for n in numbers]
    taken: set[int] = set()
    found: list[int | None] = []
    for pos, dest in enumerate(destinations):
        d = "".join(ch for ch in dest if ch.isdigit())
        hits = [
            i
            for i, n in enumerate(digits)
            if i not in taken
            and d
            and n
            and len(min(d, n, key=len)) >= 7
            and (n.endswith(d) or d.endswith(n))
        ]
        pick = hits[0] if len(hits) == 1 else (pos if pos < len(numbers) and pos not in taken else None)
        if pick is not None:
            taken.add(pick)
        found.append(pick)
    return found


# -- who gets it ---------------------------------------------------------------


def report_recipient(
    report_to: str, *, header_from: str, senders: Sequence[str] | None
) -> tuple[str | None, str]:
    """(address, "") when a report may go to ``report_to``, else (None, why not).

    Never to an empty address, ``<>`` or MAILER-DAEMON, and never to an address outside
    the mailbox's senders (no backscatter, and no report carried out of the organisation
    by a Reply-To). ``report_to`` is the From: address, or a trusted scanner's Reply-To
    that is itself one of the senders (the SMTP handler chose it); when it is no longer
    a sender, the report goes to the From: address if that still is one.
    """
    if senders is None:
        return None, "the mailbox is no longer configured"
    why = "there is no usable address to report to"
    for candidate in dict.fromkeys((report_to or "", header_from or "")):
        address, why = _reportable(candidate, senders)
        if address is not None:
            return address, ""
    return None, why


def _reportable(candidate: str, senders: Sequence[str]) -> tuple[str | None, str]:
    address = parseaddr(candidate)[1].strip()
    local, at, domain = address.rpartition("@")
    if not address or address == "<>" or not at or not local or "." not in domain:
        return None, "there is no usable address to report to"
    if local.lower() in ("mailer-daemon", "postmaster"):
        return None, "reports never go to MAILER-DAEMON"
    if not sender_matches(address, list(senders)):
        return None, "the address is not one of the mailbox's senders"
    return address, ""


def wanted(report: Report, reports: str) -> bool:
    """``Mailbox.reports``: "all", or "failures" (everything but an all-delivered report)."""
    if reports == "all" or report.kind != "final":
        return True
    return not all(o.status is FaxStatus.DELIVERED for o in report.outcomes)


# -- the words -----------------------------------------------------------------


def subject_line(report: Report) -> str:
    original = " ".join(report.subject.split()) or "(no subject)"
    return f"{headline(report)}: {original}"


def headline(report: Report) -> str:
    if report.kind == "not_sent":
        return "Fax failed"
    if report.kind == "held":
        return "Fax not confirmed by eFax, not sent again"
    if report.kind == "unconfirmed":
        return "Fax not yet confirmed"
    statuses = [o.status for o in report.outcomes]
    total = len(statuses)
    delivered = statuses.count(FaxStatus.DELIVERED)
    if total and delivered == total:
        return "Fax delivered"
    if total and statuses.count(FaxStatus.CANCELLED) == total:
        return "Fax cancelled"
    if delivered:
        return f"Fax failed for {total - delivered} of {total} numbers"
    if FaxStatus.FAILED not in statuses and FaxStatus.UNKNOWN in statuses:
        return "Fax not confirmed"
    return "Fax failed"


def _summary(report: Report) -> str:
    title = f'"{" ".join(report.subject.split())}"' if report.subject.strip() else "without a subject"
    if report.kind == "held":
        return (
            f"Your fax {title} may or may not have reached eFax: eFax did not confirm receiving it, "
            "and the gateway did not send it again, to avoid a duplicate."
        )
    if report.kind == "not_sent":
        if report.maybe_sent:
            return (
                f"Your fax {title} may not have been sent: the gateway could not confirm "
                "that eFax received it."
            )
        return f"Your fax {title} was not sent: the gateway could not hand it to eFax."
    if report.kind == "unconfirmed":
        return f"Your fax {title} has not been confirmed yet: eFax has not reported a final result."
    statuses = [o.status for o in report.outcomes]
    total, delivered = len(statuses), statuses.count(FaxStatus.DELIVERED)
    if total == 1:
        verb = {
            FaxStatus.DELIVERED: "was delivered",
            FaxStatus.CANCELLED: "was cancelled",
            FaxStatus.UNKNOWN: "could not be confirmed",
        }.get(statuses[0], "could not be delivered")
        return f"Your fax {title} {verb}."
    if delivered == total:
        return f"Your fax {title} was delivered to all {total} numbers."
    return f"Your fax {title} was delivered to {delivered} of {total} numbers."


def when(at: float | None, zone: ZoneInfo) -> str:
    if at is None:
        return "unknown"
    return datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _count(n: int | None, word: str) -> str:
    if n is None:
        return "unknown"
    return f"{n} {word}" + ("" if n == 1 else "s")


def _outcome_word(o: Outcome) -> str:
    return {
        FaxStatus.DELIVERED: "Delivered",
        FaxStatus.FAILED: "Failed",
        FaxStatus.CANCELLED: "Cancelled",
        FaxStatus.UNKNOWN: "Not confirmed",
        FaxStatus.SENDING: "Still being sent",
        FaxStatus.SUBMITTED: "Waiting at eFax",
    }[o.status]


def _explanation(o: Outcome, report: Report, zone: ZoneInfo) -> list[str]:
    """Sentences about one destination beyond the facts: why, retries, what to do."""
    if o.status is FaxStatus.DELIVERED:
        return []
    if o.status is FaxStatus.FAILED:
        code = explain(o.error_code, o.error_message)
        ref = f" (eFax code {o.error_code})" if o.error_code else ""
        return [code.meaning.rstrip(".") + ref + ".", _retries(o, code), f"What you can do: {code.advice}"]
    if o.status is FaxStatus.CANCELLED:
        return [
            "The fax was cancelled and eFax stopped sending it; nothing more will go to this "
            "number. If some pages had already gone through, the recipient may have a partial fax.",
            f"What you can do: {RESULT_CODES['E45'].advice}",
        ]
    if o.status is FaxStatus.UNKNOWN:
        watched = f" for {duration(report.gave_up_after_s)}" if report.gave_up_after_s else ""
        return [
            f"eFax never reported a final result while the gateway was watching{watched}, so it "
            "is not known whether the fax arrived.",
            "What you can do: ask the recipient whether it arrived before sending it again.",
        ]
    lines = []
    if o.error_code:
        code = explain(o.error_code, o.error_message)
        lines.append(f"Last attempt: {code.meaning}")
    lines.append("eFax will try again." if o.retrying else "eFax is still working on it.")
    if report.tracked_until is not None:
        lines.append(
            f"The gateway keeps checking until {when(report.tracked_until, zone)} and will write "
            "again when the result is known."
        )
    return lines


def _retries(o: Outcome, code: ResultCode) -> str:
    """What eFax did about it, as its count of attempts says (never "retried" beside one)."""
    if o.attempts is not None and o.attempts > 1:
        return f"eFax tried {o.attempts} times; this result is final."
    if o.attempts == 1:
        return "eFax tried once; this result is final."
    if code.retried:
        return "eFax retries this kind of failure by itself before it gives up; this result is final."
    return "eFax does not retry this; this result is final."


def _pages(o: Outcome, report: Report) -> str:
    """eFax's page count, which includes the cover page: said so, beside the documents' pages."""
    if o.pages is None:
        return "unknown"
    if not report.cover_page or o.pages == 0:
        return str(o.pages)
    documents = sum(d.pages for d in report.documents)
    if o.pages == documents + 1:
        return f"{o.pages} (a cover page and {_count(documents, 'page')} of your documents)"
    return f"{o.pages} (counting the cover page)"


def _facts(o: Outcome, report: Report, zone: ZoneInfo) -> list[tuple[str, str]]:
    label = "Pages" if o.status is FaxStatus.DELIVERED else "Pages sent"
    facts = [(label, _pages(o, report))]
    if o.status is FaxStatus.DELIVERED or o.duration_s:
        facts.append(("Duration", duration(o.duration_s)))
    facts.append(("Attempts", str(o.attempts) if o.attempts is not None else "unknown"))
    facts.append(("Handed to eFax", when(o.submitted_at, zone)))
    if o.status.final and o.status is not FaxStatus.UNKNOWN:
        facts.append(("Finished", when(o.finished_at, zone)))
    if o.fax_id:
        facts.append(("eFax fax id", o.fax_id))
    return facts


def _destination(o: Outcome) -> str:
    return f"{o.number} ({o.name})" if o.name else o.number


def _not_sent_lines(report: Report) -> list[str]:
    lines = [f"Reason: {report.not_sent_reason or 'unknown'}"]
    if report.intended:
        lines.append(f"Meant for: {', '.join(report.intended)}")
    if report.maybe_sent:
        lines.append(
            "An earlier attempt may have reached eFax; ask the recipients whether the fax "
            "arrived before sending it again."
        )
    lines.append(
        "What you can do: send your mail again later. If this keeps happening, tell your "
        "administrator and quote the job id below."
    )
    return lines


def _held_lines(report: Report) -> list[str]:
    numbers = ", ".join(report.intended) or "its numbers"
    return [
        f"eFax did not confirm that it received the fax to {numbers}, and the gateway could not "
        "find it in eFax's list of sent faxes.",
        f"Why: {report.not_sent_reason or 'unknown'}",
        "It was not sent again, so that the recipient does not get it twice.",
        "What you can do: ask the recipient whether it arrived. If it did not, "
        + ("reply to this mail with the word retry, or " if report.reply_hint else "")
        + f"ask your administrator to send it again (fax-gateway queue retry {report.job_id}); do not "
        "send your mail again yourself, or it may arrive twice.",
    ]


def _split_lines(report: Report) -> list[str]:
    """The mail came in parts (a 452 4.5.3 over ``smtp.max_recipients``): which this is."""
    if not report.deferred and not report.other_deliveries:
        return []
    here = ", ".join(report.intended) or "its numbers"
    lines = [
        "Your mail was addressed to more fax numbers than the gateway takes in one delivery, so "
        f"your mail server delivered it in parts. This report is about {here}."
    ]
    arrived: set[str] = set()
    for other in report.other_deliveries:
        arrived.update(other.numbers)
        own = "gets a report of its own" if len(other.numbers) == 1 else "get a report of their own"
        lines.append(f"{_numbers(other.numbers)} came in another delivery (job {other.job_id}) and {own}.")
    waiting = [n for n in report.deferred if n not in arrived]
    if waiting:
        them = "that number" if len(waiting) == 1 else "those numbers"
        lines.append(
            f"The gateway asked your mail server to send {_numbers(waiting)} in another delivery, "
            f"which gets a report of its own; if none comes, send your mail again to {them}."
        )
    return lines


def _numbers(numbers: Sequence[str]) -> str:
    if len(numbers) <= 1:
        return "".join(numbers)
    return ", ".join(numbers[:-1]) + " and " + numbers[-1]


def _documents_title(report: Report) -> str:
    after = " (after a cover page)" if report.cover_page else ""
    if any(o.status is FaxStatus.DELIVERED for o in report.outcomes):
        return f"Documents faxed{after}:"
    return "Documents in your mail:"


def _attached_line(report: Report) -> str:
    return (
        f"Attached: {', '.join(report.attached)}. A confirmation is a one-page transmission report "
        "with the SHA-256 of every document handed to eFax."
    )


def text_body(report: Report, zone: ZoneInfo) -> str:
    out = [_summary(report), ""]
    split = _split_lines(report)
    if split:
        out += [*split, ""]
    out.append(f"Accepted by the gateway: {when(report.accepted_at, zone)}")
    out.append(f"Job id: {report.job_id}")
    out.append("")
    if report.kind == "not_sent":
        out += [*_not_sent_lines(report), ""]
    if report.kind == "held":
        out += [*_held_lines(report), ""]
    for o in report.outcomes:
        out.append(f"To {_destination(o)}: {_outcome_word(o)}")
        out += [f"  {line}" for line in _explanation(o, report, zone)]
        out += [f"  {label}: {value}" for label, value in _facts(o, report, zone)]
        out.append("")
    if report.documents:
        out.append(_documents_title(report))
        for n, d in enumerate(report.documents, 1):
            out.append(f"  {n}. {d.filename} ({d.kind}, {_count(d.pages, 'page')})")
    if report.left_out:
        out.append("Left out (not faxed):")
        out += [f"  - {x.filename}: {x.reason}" for x in report.left_out]
    if report.attached:
        out += ["", _attached_line(report)]
    closing = report.reply_hint or "This report was written automatically; replies are not read."
    out += ["", f"Times are in {zone.key}.", closing]
    return "\n".join(out) + "\n"


def html_body(report: Report, zone: ZoneInfo) -> str:
    e = html.escape
    parts = [
        '<!DOCTYPE html><html><body style="font-family:sans-serif">',
        f"<p><strong>{e(_summary(report))}</strong></p>",
    ]
    split = _split_lines(report)
    if split:
        parts.append("<p>" + "<br>".join(e(line) for line in split) + "</p>")
    parts.append(
        f"<p>Accepted by the gateway: {e(when(report.accepted_at, zone))}<br>Job id: {e(report.job_id)}</p>"
    )
    if report.kind == "not_sent":
        parts.append("<p>" + "<br>".join(e(line) for line in _not_sent_lines(report)) + "</p>")
    if report.kind == "held":
        parts.append("<p>" + "<br>".join(e(line) for line in _held_lines(report)) + "</p>")
    for o in report.outcomes:
        parts.append(f"<h3>To {e(_destination(o))}: {e(_outcome_word(o))}</h3>")
        rows = "".join(
            f'<tr><th align="left">{e(label)}</th><td>{e(value)}</td></tr>'
            for label, value in _facts(o, report, zone)
        )
        explanation = _explanation(o, report, zone)
        if explanation:
            parts.append("<p>" + "<br>".join(e(line) for line in explanation) + "</p>")
        parts.append(f"<table>{rows}</table>")
    if report.documents:
        title = _documents_title(report)
        items = "".join(
            f"<li>{e(d.filename)} ({e(d.kind)}, {e(_count(d.pages, 'page'))})</li>" for d in report.documents
        )
        parts.append(f"<p>{title}</p><ol>{items}</ol>")
    if report.left_out:
        items = "".join(f"<li>{e(x.filename)}: {e(x.reason)}</li>" for x in report.left_out)
        parts.append(f"<p>Left out (not faxed):</p><ul>{items}</ul>")
    if report.attached:
        parts.append(f"<p>{e(_attached_line(report))}</p>")
    closing = report.reply_hint or "This report was written automatically; replies are not read."
    parts.append(f"<p><small>Times are in {e(zone.key)}. {e(closing)}</small></p></body></html>")
    return "\n".join(parts) + "\n"


_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def thread_id(message_id: str) -> str | None:
    """The original Message-ID in angle brackets, or None when it is unusable."""
    text = (message_id or "").strip()
    found = _MSGID.search(text)
    if found:
        return found.group(0)
    if text and "@" in text and not any(c in text for c in "<> \r\n\t"):
        return f"<{text}>"
    return None


def report_message_id(report_ref: str, from_address: str) -> str:
    """The same Message-ID for every attempt at one report (receivers can drop repeats)."""
    domain = from_address.rpartition("@")[2] or "fax-gateway.invalid"
    safe = re.sub(r"[^A-Za-z0-9.-]", ".", report_ref)
    return f"<fax-report.{safe}@{domain}>"


def from_field(name: str, address: str) -> str:
    """The From: of mail the gateway writes: ``Fax gateway <fax@example.com>``. A display
    name already in ``address`` wins; an empty ``name`` leaves the address bare."""
    shown, bare = parseaddr(address)
    shown = shown or name
    return formataddr((shown, bare)) if shown and bare else address


def compose(
    report: Report,
    *,
    to: str,
    from_address: str,
    zone: ZoneInfo,
    now: float,
    message_id: str,
    from_name: str = "Fax gateway",
) -> EmailMessage:
    """The report mail; send it with a null envelope sender (``MAIL FROM:<>``)."""
    msg = EmailMessage()
    msg["From"] = from_field(from_name, from_address)
    msg["To"] = to
    msg["Subject"] = subject_line(report)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, zone))
    msg["Message-ID"] = message_id
    original = thread_id(report.original_message_id)
    if original is not None:
        msg["In-Reply-To"] = original
        msg["References"] = original
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Fax-Gateway-Job"] = report.job_id
    msg.set_content(text_body(report, zone))
    msg.add_alternative(html_body(report, zone), subtype="html")
    return msg

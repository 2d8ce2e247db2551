"""The watchdog's judgement and its notices: pure values in, values out.

Two incidents per mailbox, each told once when it opens and once when it closes:

- ``failures:<user id>``: the mailbox's last ``policy.failure_alert_after`` final outcomes
  all failed with the same eFax error (a different error, or a delivered fax among them,
  is no incident). It closes when the mailbox's newest final outcome is a delivered fax.
- ``silence:<user id>``: no fax received in the last ``inbound.silence_alert_h`` hours,
  while at least ``inbound.silence_usual_faxes`` came in the same span before (only a
  mailbox that usually receives). It closes when a fax is received again.

And the daily digest of a mailbox (``digest = true``): its day's faxes sent, delivered,
failed with their reasons, received, and the mails held now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

from gateway.core.notices import from_field
from gateway.core.result_codes import explain

IncidentKind = Literal["failures", "silence"]
Outcome = tuple[str, str | None]  # ("delivered" | "failed", eFax's error code)


def incident_key(kind: IncidentKind, user_id: str) -> str:
    return f"{kind}:{user_id}"


def failing_streak(outcomes: Sequence[Outcome], after: int) -> str | None:
    """The error shared by the newest ``after`` outcomes when all of them failed with it
    ("" for failures without a code); None when there is no such streak (or ``after`` is 0)."""
    if after <= 0 or len(outcomes) < after:
        return None
    newest = outcomes[:after]
    codes = {code or "" for status, code in newest if status == "failed"}
    if len(codes) != 1 or any(status != "failed" for status, _ in newest):
        return None
    return codes.pop()


def delivered_again(outcomes: Sequence[Outcome]) -> bool:
    """The newest final outcome is a delivered fax: a failure streak is over."""
    return bool(outcomes) and outcomes[0][0] == "delivered"


def silent(recent: int, before: int, usual: int) -> bool:
    """No fax in the last span although ``usual`` or more came in the span before it."""
    return recent == 0 and before >= usual


@dataclass(frozen=True)
class Incident:
    kind: IncidentKind
    opened: bool  # False: the notice that it is over
    mailbox_number: str
    error_code: str = ""  # failures: the error they share
    count: int = 0  # failures: how many in a row; silence: hours without a fax
    hours: float = 0.0  # silence: the span looked at


def subject(incident: Incident) -> str:
    number = incident.mailbox_number
    match incident.kind:
        case "failures":
            if incident.opened:
                code = f" ({incident.error_code})" if incident.error_code else ""
                return f"Fax mailbox {number}: {incident.count} faxes in a row failed{code}"
            return f"Fax mailbox {number}: recovered, a fax was delivered again"
        case "silence":
            if incident.opened:
                return f"Fax mailbox {number}: no fax received for {incident.hours:g} hours"
            return f"Fax mailbox {number}: recovered, faxes are received again"


def body(incident: Incident) -> str:
    number = incident.mailbox_number
    match incident.kind:
        case "failures":
            if incident.opened:
                meaning = explain(incident.error_code or None, None).meaning
                return (
                    f"The last {incident.count} faxes sent from {number} failed, all with the same "
                    f"error{f' {incident.error_code}' if incident.error_code else ''}: {meaning}\n\n"
                    "Check the mailbox's eFax account and the numbers dialled. You will be told "
                    "once more, when a fax from this mailbox is delivered again.\n"
                )
            return f"A fax sent from {number} was delivered again; the failures in a row are over.\n"
        case "silence":
            if incident.opened:
                return (
                    f"No fax has been received on {number} for {incident.hours:g} hours, although "
                    "faxes usually come in. Check the number's forwarding, the eFax account and the "
                    "gateway's polling (fax-gateway check). You will be told once more, when a fax "
                    "is received again.\n"
                )
            return f"A fax was received on {number} again; the silence is over.\n"


def notice(
    incident: Incident,
    *,
    to: Sequence[str],
    from_name: str,
    from_address: str,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """The mail to the administrators (sent with a null envelope sender)."""
    msg = EmailMessage()
    msg["From"] = from_field(from_name, from_address)
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject(incident)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Fax-Incident"] = f"{incident.kind} {'opened' if incident.opened else 'closed'}"
    msg.set_content(body(incident))
    return msg


@dataclass(frozen=True)
class Digest:
    """One mailbox's day, for its daily digest."""

    mailbox_number: str
    day: str  # YYYY-MM-DD, in the gateway's time zone
    outcomes: tuple[Outcome, ...]  # every fax of the mails accepted that day
    received: int
    held: int  # mails held for an administrator now

    @property
    def delivered(self) -> int:
        return sum(1 for status, _ in self.outcomes if status == "delivered")

    @property
    def failed(self) -> int:
        return sum(1 for status, _ in self.outcomes if status == "failed")

    def reasons(self) -> list[tuple[str, int]]:
        """(plain reason, how many), most frequent first."""
        counts: dict[str, int] = {}
        for status, code in self.outcomes:
            if status == "failed":
                reason = f"{code}: " if code else ""
                reason += explain(code, None).meaning
                counts[reason] = counts.get(reason, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def digest_subject(digest: Digest) -> str:
    return (
        f"Fax mailbox {digest.mailbox_number} on {digest.day}: {len(digest.outcomes)} sent, "
        f"{digest.failed} failed, {digest.received} received"
    )


def digest_body(digest: Digest) -> str:
    in_progress = len(digest.outcomes) - digest.delivered - digest.failed
    lines = [
        f"Fax mailbox {digest.mailbox_number}, {digest.day}:",
        "",
        f"Faxes sent:      {len(digest.outcomes)}",
        f"Delivered:       {digest.delivered}",
        f"Failed:          {digest.failed}",
    ]
    lines += [f"  {count} x {reason}" for reason, count in digest.reasons()]
    if in_progress:
        lines.append(f"Not final yet:   {in_progress}")
    lines += [
        f"Received:        {digest.received}",
        f"Held mails:      {digest.held} waiting for a decision (fax-gateway queue list --state held)",
    ]
    return "\n".join(lines) + "\n"


def digest_notice(
    digest: Digest, *, to: Sequence[str], from_name: str, from_address: str, message_id: str, now: datetime
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_field(from_name, from_address)
    msg["To"] = ", ".join(to)
    msg["Subject"] = digest_subject(digest)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Fax-Digest"] = digest.day
    msg.set_content(digest_body(digest))
    return msg

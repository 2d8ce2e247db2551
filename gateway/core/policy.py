"""Who may send how much, and what eFax can carry: pure verdicts with their SMTP replies.

Values in, values out (``now`` is unix seconds, passed in). The SMTP handler asks the
store for the recent use of a sender and a mailbox, calls these functions, and gives
the reply they return:

- ``check_rates``: faxes per hour and pages per day, per envelope sender and per
  mailbox. A mail to N numbers is N faxes and N times its pages. Over a limit is
  ``451 4.7.1`` with the time the mail would fit (sliding windows: the oldest use
  in the window has to age out); a mail that alone exceeds a limit can never fit
  and is ``550 5.7.1``.
- ``payload_refusal``: eFax takes at most 100 MB per ``POST /faxes``, base64 and
  the JSON around it included (``552 5.3.4``).
- ``header_refusal``: the header block's size and field count are capped before the
  mail is parsed (``552 5.3.4``).
- ``document_refusal``: a mail whose documents cannot be faxed, in one line: too many
  pages or documents ``552 5.3.4``, anything else ``554 5.6.0``.

A limit of 0 means no limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.core.document_errors import DocumentError, TooManyPages

HOUR_S = 3600.0
DAY_S = 86_400.0
EFAX_MAX_PAYLOAD_BYTES = 100_000_000  # eFax: 100 MB per request, base64 included
_JSON_OVERHEAD_BYTES = 64_000  # options, cover page text, destinations...
_PER_DOCUMENT_OVERHEAD_BYTES = 512
_PER_DESTINATION_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class Use:
    """One accepted mail, as far as limits go."""

    at: float  # unix seconds it was accepted
    faxes: int  # numbers it went to
    pages: int  # its pages times its numbers


@dataclass(frozen=True)
class RateLimits:
    faxes_per_hour_per_sender: int = 0
    faxes_per_hour_per_mailbox: int = 0
    pages_per_day_per_sender: int = 0
    pages_per_day_per_mailbox: int = 0

    @property
    def per_sender(self) -> bool:
        return bool(self.faxes_per_hour_per_sender or self.pages_per_day_per_sender)

    @property
    def per_mailbox(self) -> bool:
        return bool(self.faxes_per_hour_per_mailbox or self.pages_per_day_per_mailbox)


@dataclass(frozen=True)
class Verdict:
    """``reply`` is None when the mail fits; else the whole SMTP reply line."""

    reply: str | None = None
    retry_at: float | None = None  # for a temporary refusal: when the mail would fit

    @property
    def ok(self) -> bool:
        return self.reply is None


@dataclass(frozen=True)
class _Rule:
    uses: Sequence[Use]
    window_s: float
    limit: int
    amount: int
    unit: str  # "faxes" | "pages"
    subject: str  # "alice@example.com", "the fax number +1 323-555-0100"


def check_rates(
    *,
    limits: RateLimits,
    now: float,
    faxes: int,
    pages: int,
    sender: str,
    sender_uses: Sequence[Use] = (),
    mailbox: str | None = None,
    mailbox_uses: Sequence[Use] = (),
) -> Verdict:
    """Would a mail of ``faxes`` faxes and ``pages`` pages (numbers included) fit now?

    ``sender_uses``/``mailbox_uses`` are the accepted mails of the last 24 hours (older
    ones are ignored). ``mailbox`` None skips the mailbox limits (not known yet).
    """
    rules = [
        _Rule(sender_uses, HOUR_S, limits.faxes_per_hour_per_sender, faxes, "faxes", sender),
        _Rule(sender_uses, DAY_S, limits.pages_per_day_per_sender, pages, "pages", sender),
    ]
    if mailbox is not None:
        subject = f"the fax number {mailbox}"
        rules += [
            _Rule(mailbox_uses, HOUR_S, limits.faxes_per_hour_per_mailbox, faxes, "faxes", subject),
            _Rule(mailbox_uses, DAY_S, limits.pages_per_day_per_mailbox, pages, "pages", subject),
        ]
    waits: list[Verdict] = []
    for rule in rules:
        verdict = _check(rule, now)
        if verdict is None:
            continue
        if verdict.retry_at is None:
            return verdict  # can never fit: say so rather than "try later"
        waits.append(verdict)
    if not waits:
        return Verdict()
    return max(waits, key=lambda v: v.retry_at or 0.0)


def _check(rule: _Rule, now: float) -> Verdict | None:
    if rule.limit <= 0 or rule.amount <= 0:
        return None
    amount_of: Callable[[Use], int] = (lambda u: u.faxes) if rule.unit == "faxes" else (lambda u: u.pages)
    recent = sorted((u for u in rule.uses if u.at > now - rule.window_s), key=lambda u: u.at)
    used = sum(amount_of(u) for u in recent)
    if used + rule.amount <= rule.limit:
        return None
    period = "an hour" if rule.window_s == HOUR_S else "24 hours"
    if rule.amount > rule.limit:
        return Verdict(
            f"550 5.7.1 This mail would be {rule.amount} {rule.unit}, more than the {rule.limit} "
            f"{rule.unit} {rule.subject} may send in {period}; send it in smaller parts."
        )
    to_free = used + rule.amount - rule.limit
    freed = 0
    retry_at = now + rule.window_s
    for use in recent:
        freed += amount_of(use)
        if freed >= to_free:
            retry_at = use.at + rule.window_s
            break
    last = "hour" if rule.window_s == HOUR_S else "24 hours"
    return Verdict(
        f"451 4.7.1 {_capital(rule.subject)} has sent {used} {rule.unit} in the last {last}, and at most "
        f"{rule.limit} are allowed; {retry_phrase(retry_at, now)}.",
        retry_at=retry_at,
    )


def retry_phrase(retry_at: float, now: float) -> str:
    """``try again in 12 minutes (after 14:05 UTC)``: rounded up to the whole minute."""
    at = math.ceil(retry_at / 60.0) * 60.0
    minutes = max(1, math.ceil((retry_at - now) / 60.0))
    when = datetime.fromtimestamp(at, UTC)
    today = datetime.fromtimestamp(now, UTC).date()
    clock = when.strftime("%H:%M UTC") if when.date() == today else when.strftime("%Y-%m-%d %H:%M UTC")
    if minutes < 120:
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    else:
        wait = f"{round(minutes / 60)} hours"
    return f"try again in {wait} (after {clock})"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text.startswith("the ") else text


def encoded_payload_bytes(document_sizes: Sequence[int], destinations: int) -> int:
    """What one ``POST /faxes`` weighs: base64 of every document plus the JSON around it."""
    encoded = sum(4 * math.ceil(size / 3) for size in document_sizes)
    return (
        encoded
        + _JSON_OVERHEAD_BYTES
        + _PER_DOCUMENT_OVERHEAD_BYTES * len(document_sizes)
        + _PER_DESTINATION_OVERHEAD_BYTES * destinations
    )


def payload_refusal(
    document_sizes: Sequence[int], destinations: int, limit: int = EFAX_MAX_PAYLOAD_BYTES
) -> str | None:
    """``552 5.3.4`` when the documents, base64-encoded for eFax, exceed its 100 MB."""
    total = encoded_payload_bytes(document_sizes, destinations)
    if total <= limit:
        return None
    return (
        f"552 5.3.4 The documents come to {total / 1_000_000:.1f} MB once encoded for eFax, "
        f"more than the {limit / 1_000_000:g} MB one fax may carry; send them in several mails."
    )


def _header_end(raw: bytes, stop: int | None) -> int | None:
    """Where the first empty line starts (CRLF CRLF or LF LF), looking before ``stop``."""
    ends = [i for i in (raw.find(b"\r\n\r\n", 0, stop), raw.find(b"\n\n", 0, stop)) if i >= 0]
    return min(ends) if ends else None


def header_refusal(raw: bytes, *, max_bytes: int, max_fields: int) -> str | None:
    """``552 5.3.4`` when the header block is larger or has more fields than allowed.

    The header block ends at the first empty line (CRLF CRLF, or LF LF from a sloppy
    client); a mail with no empty line is all header.
    """
    within = max_bytes + 4  # a mail is mostly body: look no further than the limit allows
    end = _header_end(raw, within)
    if end is None and len(raw) > within:  # too big for sure; how big, for the refusal
        end = _header_end(raw, None)
    size = len(raw) if end is None else end
    if size > max_bytes:
        return (
            f"552 5.3.4 The mail's header is {size} bytes, more than the {max_bytes} bytes this "
            "gateway takes; send it without the extra header fields."
        )
    fields = sum(1 for line in raw[:size].split(b"\n") if line.strip() and line[:1] not in (b" ", b"\t"))
    if fields > max_fields:
        return (
            f"552 5.3.4 The mail has {fields} header fields, more than the {max_fields} this "
            "gateway takes; send it without the extra header fields."
        )
    return None


def document_refusal(err: DocumentError) -> str:
    """The reply for a mail whose documents cannot be faxed: its sentence on one line."""
    code = "552 5.3.4" if isinstance(err, TooManyPages) else "554 5.6.0"
    return f"{code} {one_line(str(err))}"


def one_line(text: str) -> str:
    """Text for a reply line: every run of white space (line breaks too) as one space."""
    return " ".join(text.split())

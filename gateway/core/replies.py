"""Acting by replying to a report: the reply address, its token, and the reply's word (pure).

Every report and notice is sent with ``Reply-To: fax-gateway+<token>@<fax_domain>``. The
token is 160 random bits in lower-case base32 (32 letters and digits: a local part mail
servers keep as written, whatever they do with case); only its SHA-256 is stored
(``token_hash``), so a copy of the database cannot act on anyone's fax. A reply is
acted on once, by the first word of its text (``first_word``): ``retry`` or ``cancel``;
any other word gets an answer listing them (``WORDS``).

Also here: the sentences of the answers the reply worker mails (``answer_mail``), and
``auto_reply`` (an out-of-office or other automatic reply is never acted on, RFC 3834).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Literal
from zoneinfo import ZoneInfo

LOCAL_PART = "fax-gateway"
WORDS: dict[str, str] = {
    "retry": "send a failed or held fax again (one new attempt, with its own report)",
    "cancel": "ask eFax to stop a fax it is still sending",
}
Word = Literal["retry", "cancel", "other"]
_TOKEN = re.compile(r"^[a-z2-7]{32}$")
_QUOTE_INTRO = re.compile(r"^(on .+ wrote:|-----\s*original message\s*-----|from:\s)", re.IGNORECASE)


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


def reply_address(token: str, fax_domain: str) -> str:
    return f"{LOCAL_PART}+{token}@{fax_domain}"


def is_reply_address(address: str, fax_domain: str) -> bool:
    """``fax-gateway+...@<fax_domain>``: a reply to a report, never a fax number."""
    local, _, domain = parseaddr(address)[1].rpartition("@")
    return domain.lower().rstrip(".") == fax_domain.lower() and local.lower().startswith(LOCAL_PART + "+")


def token_of(address: str) -> str | None:
    """The token of a reply address, lower-cased; None when it is not one's shape."""
    local = parseaddr(address)[1].rpartition("@")[0].lower()
    token = local.partition("+")[2]
    return token if _TOKEN.match(token) else None


def auto_reply(auto_submitted: str | None, precedence: str | None) -> bool:
    """An automatic reply (RFC 3834 ``Auto-Submitted``, or ``Precedence: auto_reply/bulk/junk``)."""
    if auto_submitted and auto_submitted.strip().lower() != "no":
        return True
    return (precedence or "").strip().lower() in ("auto_reply", "bulk", "junk", "list")


def _html_text(text: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def first_word(message: EmailMessage) -> Word:
    """``retry``, ``cancel``, or ``other``: the first word of the reply's own text (quoted
    lines and the quoted report are not read; case and punctuation do not matter)."""
    body = message.get_body(("plain", "html"))
    if body is None:
        return "other"
    try:
        text = str(body.get_content())
    except (LookupError, ValueError):
        return "other"
    if body.get_content_subtype() == "html":
        text = _html_text(text)
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">") or _QUOTE_INTRO.match(stripped):
            return "other"
        word = re.sub(r"[^a-z]", "", stripped.split()[0].lower())
        return word if word in ("retry", "cancel") else "other"  # type: ignore[return-value]
    return "other"


def words_text() -> list[str]:
    return [f"  {word}: {what}" for word, what in WORDS.items()]


def reply_hint(until: float, zone: ZoneInfo) -> str:
    """The report's last lines: what a reply does, and until when."""
    day = datetime.fromtimestamp(until, zone).strftime("%Y-%m-%d %H:%M %Z")
    words = " or ".join(WORDS)
    return (
        f"To act on this fax, reply to this mail from your own address with one word on the first "
        f"line: {words}. A reply is taken once, until {day}; anything else gets a list of the words."
    )


def answer_mail(
    *,
    to: str,
    from_field: str,
    subject: str,
    lines: list[str],
    in_reply_to: str | None,
    message_id: str,
    job_id: str,
    now: float,
    zone: ZoneInfo,
) -> EmailMessage:
    """The gateway's answer to a reply; send it with a null envelope sender (``MAIL FROM:<>``)."""
    msg = EmailMessage()
    msg["From"] = from_field
    msg["To"] = formataddr(("", to))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, zone))
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Fax-Gateway-Job"] = job_id
    msg.set_content(
        "\n".join([*lines, "", f"Job id: {job_id}", "This answer was written automatically."]) + "\n"
    )
    return msg


def unknown_word_lines() -> list[str]:
    return [
        "The gateway did not act on your reply: its first word is none of the words it knows.",
        "Reply to the fax report again with one of these words on the first line:",
        *words_text(),
    ]

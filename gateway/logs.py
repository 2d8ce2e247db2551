"""Logs are events: one line per state change, with an action and the ids.

``log.info("fax handed to eFax", extra=event("submitted", job=..., fax=...))`` prints
``... fax handed to eFax action=submitted job=01J... fax=...``. Numbers and addresses
are masked with ``mask_number``/``mask_address`` at INFO; secrets are never passed in.

Values that come from a client (AUTH user names, HELO names, addresses, subjects,
filenames) reach log lines as they are, and ``EventFormatter`` escapes them all in one
place: the message with its arguments and every event field. A line break, another
control character or a character that reorders or hides text (``\\r``, ``\\n``, ``\\x1b``,
U+2028, U+202E ...) is written as ``\\xNN`` / ``\\uNNNN``, so one record is one line and
reads as what it is. ``escape`` does the same for other writers (the audit log).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_FIELDS = "_faxgw_fields"


def event(action: str, **ids: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the action and the ids it concerns."""
    fields = {"action": action, **{k: v for k, v in ids.items() if v is not None}}
    return {_FIELDS: fields}


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every character that is not printable written as an escape.

    Not printable (``str.isprintable``): controls (CR, LF, ESC, C1), the line and
    paragraph separators, format characters (bidi overrides, zero-width ones), spaces
    other than the ASCII space, surrogates, private use and unassigned code points.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


class EventFormatter(logging.Formatter):
    """``%(message)s`` and the event fields with client values escaped (one record, one line).

    A traceback (``exc_info``) follows on lines of its own, each marked ``  | `` and
    escaped too: no text, not even an exception's message, can start a line that
    looks like a record of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show what was given rather than fail
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = escape(message), None
        try:
            first, *rest = super().format(record).split("\n")
        finally:
            record.msg, record.args = saved
        fields = getattr(record, _FIELDS, None)
        if fields:
            first += " " + " ".join(f"{escape(str(k))}={_quote(v)}" for k, v in fields.items())
        return "\n".join([escape(first), *("  | " + escape(line) for line in rest)])


def _quote(value: Any) -> str:
    text = escape(str(value))
    return '"' + text.replace('"', '\\"') + '"' if (" " in text or '"' in text or not text) else text


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access", "mail.log", "pikepdf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def mask_number(number: str) -> str:
    """``13235551212`` -> ``1323555****``."""
    return number[:-4] + "****" if len(number) > 6 else "****"


def mask_address(address: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``."""
    local, at, domain = address.partition("@")
    return (local[:1] + "***" + at + domain) if at else "***"

"""Logs are events: one line per state change, with an action and the ids.

``log.info("fax handed to eFax", extra=event("submitted", job=..., fax=...))`` prints
``... fax handed to eFax action=submitted job=01J... fax=...``. Numbers and addresses
are masked with ``mask_number``/``mask_address`` at INFO; secrets are never passed in.
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


class EventFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, _FIELDS, None)
        if not fields:
            return base
        tail = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return f"{base} {tail}"


def _quote(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


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

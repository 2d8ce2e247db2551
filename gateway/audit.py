"""The audit log: one JSON line per accepted, refused, submitted, delivered, failed and held fax.

Written to the logger ``gateway.audit`` (always at INFO, whatever ``--log-level``) and,
when ``logging.audit_file`` is set, appended to that file as bare JSON lines. Each
line says who (``user alice from 203.0.113.7``, ``trusted 10.0.0.5``), the client
address, the envelope sender and From, the mailbox (fax number sent from), the
destination numbers, pages, the job id and fax id, and the reason for a refusal or
failure. Numbers and addresses are whole here (``logging.mask`` only masks ordinary
logs); document content, subjects and secrets never appear. Values from a client
(user names, addresses, the refusal's text) are written with every character that is
not printable as a JSON escape (``\\u2028``, ``\\u202e``, ``\\u0085``...): one record is
one line for any reader, and the JSON decodes to the very value.

Who calls what:

- SMTP handler: ``accepted(...)`` after the commit, ``refused(...)`` with each refusal
  (and failed sign-ins, ``stage="auth"``) while a client has had few; beyond that,
  ``refusals(...)`` once a minute with their counts (``gateway.smtp.refusals``).
- dispatcher: ``submitted(message, faxes)`` once the fax ids are recorded;
  ``failed(message, reason=..., job=...)`` when a mail cannot be handed to eFax.
- tracker: ``delivered(message, fax_id=..., number=..., pages=...)`` and
  ``failed(message, reason=..., fax_id=..., number=...)`` at a fax's final status.
- admin page: ``admin(action, admin=..., peer=...)`` for every sign-in (and refused
  one, with the name tried), sign-out, retry and cancel, with the mail and the outcome.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.settings import LoggingSettings
from gateway.store.base import StoredMessage

AUDIT_LOGGER = "gateway.audit"


class Audit:
    """Writes audit lines; ``close()`` detaches the file, if any."""

    def __init__(
        self,
        *,
        logger: logging.Logger | None = None,
        audit_file: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.logger = logger or logging.getLogger(AUDIT_LOGGER)
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.clock = clock
        self._file: logging.Handler | None = None
        if audit_file:
            # Created readable by the gateway's user only: it names every sender and number.
            os.makedirs(os.path.dirname(os.path.abspath(audit_file)), mode=0o700, exist_ok=True)
            os.close(os.open(audit_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            self._file = logging.FileHandler(audit_file, encoding="utf-8")
            self._file.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(self._file)

    @classmethod
    def from_settings(cls, settings: LoggingSettings) -> Audit:
        return cls(audit_file=settings.audit_file)

    def close(self) -> None:
        if self._file is not None:
            self.logger.removeHandler(self._file)
            self._file.close()
            self._file = None

    # -- SMTP ingress ------------------------------------------------------------------
    def accepted(
        self,
        *,
        job: str,
        who: str,
        peer: str | None,
        sender: str,
        header_from: str,
        mailbox: str,
        numbers: Iterable[str],
        pages: int,
        documents: int,
    ) -> None:
        self._write(
            "accepted",
            job=job,
            who=who,
            peer=peer,
            sender=sender,
            header_from=header_from,
            mailbox=mailbox,
            to=list(numbers),
            pages=pages,
            documents=documents,
        )

    def refused(
        self,
        *,
        stage: str,
        reply: str,
        who: str,
        peer: str | None,
        sender: str | None = None,
        header_from: str | None = None,
        numbers: Iterable[str] = (),
        user: str | None = None,
    ) -> None:
        self._write(
            "refused",
            stage=stage,
            who=who,
            peer=peer,
            user=user,
            sender=sender,
            header_from=header_from,
            to=list(numbers) or None,
            reply=reply,
        )

    def refusals(self, *, peer: str, counts: dict[str, int], seconds: float) -> None:
        """Refusals to one client address counted rather than written one by one."""
        self._write(
            "refusals", peer=peer, counts=counts, total=sum(counts.values()), seconds=round(seconds, 1)
        )

    # -- dispatcher and tracker ----------------------------------------------------------
    def submitted(self, message: StoredMessage, faxes: Sequence[tuple[str, str]]) -> None:
        """One line per fax handed to eFax: (fax id, destination number)."""
        for fax_id, number in faxes:
            self._write("submitted", **{**_about(message), "fax": fax_id, "to": [number] if number else None})

    def delivered(
        self,
        message: StoredMessage | None,
        *,
        fax_id: str,
        number: str,
        pages: int | None = None,
        job: str | None = None,
    ) -> None:
        fields: dict[str, Any] = _about(message) if message is not None else {"job": job}
        if pages is not None:
            fields["pages"] = pages
        self._write("delivered", **{**fields, "fax": fax_id, "to": [number]})

    def failed(
        self,
        message: StoredMessage | None,
        *,
        reason: str,
        job: str | None = None,
        fax_id: str | None = None,
        number: str | None = None,
    ) -> None:
        fields: dict[str, Any] = _about(message) if message is not None else {"job": job}
        if number is not None:
            fields["to"] = [number]
        self._write("failed", **{**fields, "fax": fax_id, "reason": reason})

    def held(self, message: StoredMessage, *, reason: str) -> None:
        """A fax whose sending eFax never confirmed, held rather than sent twice."""
        self._write("held", **{**_about(message), "reason": reason})

    def held_after_crashes(self, *, kind: str, job: str, reason: str) -> None:
        """A job whose handler crashed ``workers.max_crashes`` times, held for an administrator."""
        self._write("held", kind=kind, job=job, reason=reason)

    # -- the admin page ---------------------------------------------------------------------
    def admin(
        self,
        action: str,
        *,
        admin: str,
        peer: str | None,
        job: str | None = None,
        outcome: str | None = None,
        reason: str | None = None,
    ) -> None:
        """``action``: login, login refused, logout, retry, cancel; ``admin``: the name (tried)."""
        self._write(f"admin {action}", admin=admin, peer=peer, job=job, outcome=outcome, reason=reason)

    # -- replies to reports ----------------------------------------------------------------
    def reply(
        self,
        action: str,
        *,
        job: str,
        sender: str,
        word: str,
        outcome: str,
        who: str | None = None,
        new_job: str | None = None,
    ) -> None:
        """``action``: taken (at SMTP) or done (by the reply worker); ``word``: the reply's first word."""
        self._write(
            f"reply {action}", job=job, sender=sender, who=who, word=word, outcome=outcome, new_job=new_job
        )

    # -- the line ------------------------------------------------------------------------
    def _write(self, name: str, **fields: Any) -> None:
        at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        record = {"audit": name, "at": at, **{k: v for k, v in fields.items() if v is not None}}
        self.logger.info(_printable(json.dumps(record, ensure_ascii=False, separators=(",", ":"))))


def _printable(line: str) -> str:
    """JSON text with what json.dumps leaves raw (U+0085, U+2028, bidi controls...) escaped."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in line)


def _about(message: StoredMessage) -> dict[str, Any]:
    """who, sender, mailbox, numbers and pages of a stored mail (never its content)."""
    who, _, rest = message.auth.partition(" ")
    peer = rest.rpartition(" from ")[2] if " from " in rest else (rest if who == "trusted" else None)
    return {
        "job": message.id,
        "who": message.auth,
        "peer": peer,
        "sender": message.envelope_from,
        "header_from": message.header_from,
        "mailbox": message.mailbox_user_id,
        "to": [r.number for r in message.recipients],
        "pages": sum(d.pages for d in message.documents) or message.options.pages,
    }

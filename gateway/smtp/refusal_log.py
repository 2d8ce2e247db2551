"""Refusals written down: one log line and one audit record each, or a summary per minute.

Consumes: every refusal of mail in (the handler's, the protocol layer's, a refused
connection, a failed or throttled sign-in) with its stage (``connect``, ``auth``,
``mail``, ``rcpt``, ``data``, ``command``, ``session``), session and what it was about.
Produces: the reply, unchanged (so a hook can ``return log.refuse(...)``); a log line
(``refused: <reply>``) and an audit record ``refused`` while the client address has
had few refusals, else a count that becomes one summary line and one audit record
``refusals`` at the end of its minute (``gateway.smtp.refusals.RefusalDigest``).
Touches: the log (under ``gateway.smtp.handler``, the name mail in's lines have always
had), the audit log, and one timer on the running loop for the summaries due.
Settings: ``logging.mask`` (addresses and numbers masked in log lines; the audit log
keeps them whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiosmtpd.smtp import Session

from gateway.audit import Audit
from gateway.logs import event, mask_address, mask_number
from gateway.smtp.identity import Identity, peer
from gateway.smtp.refusals import RefusalDigest, Summary
from gateway.smtp.throttle import Throttled

log = logging.getLogger("gateway.smtp.handler")  # mail in's log lines keep their name


def _keep(text: str) -> str:
    return text


class RefusalLog:
    def __init__(self, identity: Identity, audit: Audit, *, mask: bool) -> None:
        self.identity = identity
        self.audit = audit
        self.digest = RefusalDigest()
        self._summary_timer: asyncio.TimerHandle | None = None
        self.mask_address: Callable[[str], str] = mask_address if mask else _keep
        self.mask_number: Callable[[str], str] = mask_number if mask else _keep

    def refuse(
        self,
        reply: str,
        stage: str,
        session: Session,
        *,
        sender: str | None = None,
        numbers: list[str] | None = None,
        header_from: str | None = None,
    ) -> str:
        client = peer(session)
        if not self.whole(client, stage, reply):
            return reply
        log.info(
            "refused: %s",
            reply,
            extra=event(
                "refused",
                stage=stage,
                peer=client,
                helo=session.host_name,
                sender=self.mask_address(sender) if sender else None,
                to=",".join(self.mask_number(n) for n in numbers) if numbers else None,
            ),
        )
        self.audit.refused(
            stage=stage,
            reply=reply,
            who=self.identity.who(session),
            peer=client,
            sender=sender,
            header_from=header_from,
            numbers=numbers or (),
            user=self.identity.user(session),
        )
        return reply

    def connection_refused(self, ip: str, reply: str) -> None:
        if self.whole(ip, "connect", reply):
            log.warning("connection refused: %s", reply, extra=event("connection refused", peer=ip))
            self.audit.refused(stage="connect", reply=reply, who=f"unknown {ip}", peer=ip)

    def sign_in_failed(self, session: Session, login: str, failures: int, reply: str) -> None:
        client = peer(session)
        if not self.whole(client, "auth", reply):
            return
        log.warning(
            "sign-in failed: %s",
            reply,
            extra=event("auth failed", user=login, peer=client, helo=session.host_name, failures=failures),
        )
        self.audit.refused(stage="auth", reply=reply, who=self.identity.who(session), peer=client, user=login)

    def sign_ins_throttled(self, session: Session, threshold: Throttled) -> None:
        what = f"the {threshold.kind} {threshold.key}"
        if threshold.locked_for_s is None:
            log.warning(
                "sign-ins for %s now wait before their password is checked (%d failed)",
                what,
                threshold.failures,
                extra=event("auth delayed", peer=peer(session), **{threshold.kind: threshold.key}),
            )
        else:
            log.warning(
                "sign-ins for %s refused for %g seconds after %d failures",
                what,
                threshold.locked_for_s,
                threshold.failures,
                extra=event("auth locked", peer=peer(session), **{threshold.kind: threshold.key}),
            )

    def whole(self, client: str | None, stage: str, reply: str) -> bool:
        """Is this refusal written whole? Else it is counted, for a summary at its window's end."""
        noted = self.digest.note(client, stage, reply[:3])
        if noted == "counted first" and self._summary_timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: summarised at close
                loop = asyncio.get_running_loop()
                self._summary_timer = loop.call_later(
                    self.digest.seconds_left(client) + 0.01, self._summaries_due
                )
        return noted == "whole"

    def write_due(self) -> None:
        """The summaries whose minute is over (called as each session closes)."""
        self._write_summaries(self.digest.due())

    def close(self) -> None:
        """At the end: every refusal still only counted is summarised."""
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        self._write_summaries(self.digest.due(everything=True))

    def _summaries_due(self) -> None:
        self._summary_timer = None
        self._write_summaries(self.digest.due())
        left = self.digest.next_due()
        if left is not None:
            self._summary_timer = asyncio.get_running_loop().call_later(left + 0.01, self._summaries_due)

    def _write_summaries(self, summaries: list[Summary]) -> None:
        for summary in summaries:
            log.warning(
                "%d more refusals for %s within a minute, not logged one by one: %s",
                summary.total,
                summary.peer,
                summary.text(),
                extra=event("refusals", peer=summary.peer, count=summary.total),
            )
            self.audit.refusals(
                peer=summary.peer, counts=summary.counts, seconds=summary.last_at - summary.first_at
            )

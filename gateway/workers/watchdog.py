"""The watchdog: quiet failures of a mailbox get noticed, once per incident.

Consumes: the store's final outcomes of each mailbox's sent faxes (``faxes``) and the
faxes received on it (``received``). Produces: an incident opened or closed in the
store's events log (``Store.set_incident``, action ``incident opened``/``incident closed``,
detail ``failures:<user id>`` or ``silence:<user id>``), and for each change one mail to
``admin_address`` and the mailbox's ``admins``, with a null envelope sender. The judgement
is ``gateway.core.watchdog``. Touches: the store, the mail relay.

An incident is recorded before its mail is sent, so that a restart or another gateway
never tells it twice; a mail the relay refuses is logged, not retried (nor reported on).
Runs once at start, then every ``policy.watchdog_every_s``. Of several gateways sharing a
database, one at a time looks: the one holding the store lock ``watchdog`` (taken for
``2 * every_s``, so that another takes over once its holder is gone).

With ``digest = true`` on a mailbox, the first look of each day also mails its digest of
the day before (in ``timezone``): faxes sent, delivered, failed with their reasons,
received; mails held now. Each day's digest is marked in the events log before it goes
(``Store.mark_once``, action ``digest sent``), so it goes once.

Settings: ``policy.failure_alert_after`` (0: off), ``inbound.silence_alert_h`` (0: off),
``inbound.silence_usual_faxes``, ``policy.watchdog_every_s``, ``admin_address``,
``mailboxes[].admins``, ``mailboxes[].digest``, ``timezone``, ``relay.from_address``,
``relay.from_name``.
"""

from __future__ import annotations

import email.policy
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time

from gateway.core.watchdog import (
    Digest,
    Incident,
    IncidentKind,
    delivered_again,
    digest_notice,
    failing_streak,
    incident_key,
    notice,
    silent,
)
from gateway.logs import event
from gateway.mail.relay import MailError, MailSender
from gateway.settings import Mailbox, Settings
from gateway.store.base import Store, StoreError
from gateway.workers.base import Wakeable, worker_owner

log = logging.getLogger(__name__)

SMTP_POLICY = email.policy.SMTP

HOUR_S = 3600.0


class Watchdog(Wakeable):
    name = "watchdog"

    def __init__(
        self,
        store: Store,
        sender: MailSender,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.sender = sender
        self.mailboxes = list(settings.mailboxes)
        self.admin = settings.admin_address
        self.failure_after = settings.policy.failure_alert_after
        self.silence_s = settings.inbound.silence_alert_h * HOUR_S
        self.usual = settings.inbound.silence_usual_faxes
        self.every_s = settings.policy.watchdog_every_s
        self.from_address = settings.relay.from_address
        self.from_name = settings.relay.from_name
        self.zone = settings.zone
        self.clock = clock

    @staticmethod
    def wanted(settings: Settings) -> bool:
        """Whether there is anything to watch at all."""
        return (
            settings.policy.failure_alert_after > 0
            or settings.inbound.silence_alert_h > 0
            or any(m.digest for m in settings.mailboxes)
        )

    async def run(self) -> None:
        owner = worker_owner(self.name)
        while not self._stopping.is_set():
            try:
                now = self.clock()
                if await self.store.take_lock(self.name, owner=owner, now=now, lease_s=2 * self.every_s):
                    await self.check()
            except StoreError as err:
                log.error("cannot look for quiet failures: %s", err, extra=event("watchdog failed"))
            await self._rest(self.every_s)

    async def check(self) -> int:
        """One look at every mailbox; how many incidents opened or closed (each told once)."""
        changed = 0
        for mailbox in self.mailboxes:
            if self.failure_after > 0:
                changed += await self._failures(mailbox)
            if self.silence_s > 0:
                changed += await self._silence(mailbox)
        yesterday = datetime.fromtimestamp(self.clock(), self.zone).date() - timedelta(days=1)
        await self.send_digests(yesterday)
        return changed

    async def send_digests(self, day: date) -> int:
        """The digest of ``day`` (in the gateway's zone) for every mailbox with ``digest``,
        unless it went out already; how many were sent."""
        start = datetime.combine(day, day_time(), self.zone)
        since, until = start.timestamp(), (start + timedelta(days=1)).timestamp()
        sent = 0
        for mailbox in self.mailboxes:
            if not mailbox.digest:
                continue
            to = self._recipients(mailbox)
            if not to:
                continue
            key = f"digest:{mailbox.user_id}:{day.isoformat()}"
            if not await self.store.mark_once(key, action="digest sent", now=self.clock()):
                continue  # sent before, by this gateway or another
            digest = Digest(
                mailbox.fax_number,
                day.isoformat(),
                tuple(await self.store.mailbox_day(mailbox.user_id, since=since, until=until)),
                await self.store.count_received(mailbox.user_id, since=since, until=until),
                await self.store.count_held(mailbox.user_id),
            )
            now = self.clock()
            mail = digest_notice(
                digest,
                to=to,
                from_name=self.from_name,
                from_address=self.from_address,
                message_id=_message_id_for(key, self.from_address),
                now=datetime.fromtimestamp(now, UTC),
            )
            if await self._deliver(mail.as_bytes(policy=SMTP_POLICY), to, "digest", mailbox):
                sent += 1
        return sent

    def _recipients(self, mailbox: Mailbox) -> list[str]:
        return list(dict.fromkeys([a for a in [self.admin, *mailbox.admins] if a]))

    async def _deliver(self, data: bytes, to: list[str], what: str, mailbox: Mailbox) -> bool:
        try:  # a null sender: the notice cannot bounce back to us
            await self.sender.deliver(data, sender="", recipients=to)
        except MailError as err:
            log.error(
                "the watchdog's notice was not taken: %s",
                err,
                extra=event("admin not told", incident=what, mailbox=mailbox.user_id),
            )
            return False
        log.info("administrators told", extra=event("admin told", incident=what, mailbox=mailbox.user_id))
        return True

    async def _failures(self, mailbox: Mailbox) -> int:
        outcomes = await self.store.mailbox_outcomes(mailbox.user_id, limit=self.failure_after)
        code = failing_streak(outcomes, self.failure_after)
        if code is not None:
            incident = Incident("failures", True, mailbox.fax_number, code, self.failure_after)
        elif delivered_again(outcomes):
            incident = Incident("failures", False, mailbox.fax_number)
        else:
            return 0
        return await self._change(mailbox, incident)

    async def _silence(self, mailbox: Mailbox) -> int:
        now = self.clock()
        recent = await self.store.count_received(mailbox.user_id, since=now - self.silence_s, until=now + 1)
        hours = self.silence_s / HOUR_S
        if recent:
            incident = Incident("silence", False, mailbox.fax_number, hours=hours)
        else:
            before = await self.store.count_received(
                mailbox.user_id, since=now - 2 * self.silence_s, until=now - self.silence_s
            )
            if not silent(recent, before, self.usual):
                return 0
            incident = Incident("silence", True, mailbox.fax_number, hours=hours)
        return await self._change(mailbox, incident)

    async def _change(self, mailbox: Mailbox, incident: Incident) -> int:
        key = incident_key(incident.kind, mailbox.user_id)
        now = self.clock()
        if not await self.store.set_incident(key, opened=incident.opened, now=now):
            return 0  # it stood so already: told before
        action = "incident opened" if incident.opened else "incident closed"
        log.warning(
            "%s for mailbox %s",
            action,
            mailbox.user_id,
            extra=event(action, incident=incident.kind, mailbox=mailbox.user_id, code=incident.error_code),
        )
        await self._tell(mailbox, incident, now)
        return 1

    async def _tell(self, mailbox: Mailbox, incident: Incident, now: float) -> None:
        to = self._recipients(mailbox)
        if not to:
            log.warning(
                "no admin_address nor mailbox admins set; nobody is told",
                extra=event("admin not told", incident=incident.kind, mailbox=mailbox.user_id),
            )
            return
        mail = notice(
            incident,
            to=to,
            from_name=self.from_name,
            from_address=self.from_address,
            message_id=_message_id(incident.kind, mailbox.user_id, incident.opened, now, self.from_address),
            now=datetime.fromtimestamp(now, UTC),
        )
        await self._deliver(mail.as_bytes(policy=SMTP_POLICY), to, incident.kind, mailbox)


def _message_id(kind: IncidentKind, user_id: str, opened: bool, now: float, from_address: str) -> str:
    domain = from_address.rpartition("@")[2].strip().strip("<>") or "fax-gateway.invalid"
    safe = re.sub(r"[^A-Za-z0-9.-]", ".", user_id)
    return f"<fax-incident.{kind}.{safe}.{'opened' if opened else 'closed'}.{int(now)}@{domain}>"


def _message_id_for(key: str, from_address: str) -> str:
    domain = from_address.rpartition("@")[2].strip().strip("<>") or "fax-gateway.invalid"
    return f"<fax-{re.sub(r'[^A-Za-z0-9.-]', '.', key)}@{domain}>"

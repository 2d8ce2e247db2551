"""Recent sending per envelope sender and per mailbox, kept in memory for the limits.

Consumes: the store's per-minute usage (``sender_usage``/``mailbox_usage``) and the
handler's accepts. Produces: the ``Use`` lists that ``gateway.core.policy.check_rates``
judges. Touches: nothing else.

The store is the truth, and a mail costs three limit checks (MAIL, RCPT, DATA), so
each sender and each mailbox is read from the store once and then kept here: every
mail this process commits is added to the copy as it commits, and a mail being
committed counts already (two sessions of one sender cannot both slip under a limit).
A copy older than ``refresh_s`` is read again, so that mail accepted by another
process sharing the store counts within that time (on a shared store the commit itself
judges the limits once more on the stored counts: ``SendingLimits.at_commit``, so
alternating instances cannot double a limit); mail this process committed while that
read was under way may be counted twice until the next read, never less than once.

Copies are summed per minute like the store's rows (at most 1,440 a day per key), and
copies not used for ``refresh_s`` are dropped when many have piled up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.core.policy import DAY_S, Use
from gateway.store.base import Store, Usage

_MINUTE_S = 60.0
_SWEEP_AT = 4096  # copies kept before unused ones are dropped


@dataclass
class _Copy:
    read_at: float  # clock time the store read was asked for
    uses: list[Use] = field(default_factory=list)  # summed per minute, oldest first
    used_at: float = 0.0

    def add(self, use: Use) -> None:
        last = self.uses[-1] if self.uses else None
        if last is not None and last.at // _MINUTE_S == use.at // _MINUTE_S:
            self.uses[-1] = Use(max(last.at, use.at), last.faxes + use.faxes, last.pages + use.pages)
        else:
            self.uses.append(use)

    def recent(self, now: float) -> list[Use]:
        since = now - DAY_S
        if self.uses and self.uses[0].at <= since:
            self.uses = [u for u in self.uses if u.at > since]
        return self.uses


_Key = tuple[str, str]  # ("sender", lower-case address) | ("mailbox", eFax user id)


class UsageWindows:
    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time, refresh_s: float = 60.0
    ) -> None:
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self._copies: dict[_Key, _Copy] = {}
        self._reading: dict[_Key, tuple[_Copy, asyncio.Future[_Copy]]] = {}
        self._in_flight: dict[str, tuple[str, str, Use]] = {}  # job -> (sender key, mailbox, use)

    async def recent(
        self, sender: str | None, mailbox: str | None, *, max_age_s: float | None = None
    ) -> tuple[list[Use], list[Use]]:
        """The last 24 hours of (sender, mailbox) use, mails being committed included.

        ``sender`` (any case) or ``mailbox`` None: that list is empty and not read.
        ``max_age_s``: read the store again when the copy is older (default ``refresh_s``;
        0 when other processes share the store and this is the last check before commit).
        Raises the store's error when a copy has to be read and cannot be.
        """
        now = self.clock()
        age = self.refresh_s if max_age_s is None else max_age_s
        key = sender.lower() if sender is not None else None
        sender_uses = (
            list((await self._copy(("sender", key), now, age)).recent(now)) if key is not None else []
        )
        mailbox_uses = list((await self._copy(("mailbox", mailbox), now, age)).recent(now)) if mailbox else []
        for who, box, use in self._in_flight.values():
            if who == key:
                sender_uses.append(use)
            if box == mailbox:
                mailbox_uses.append(use)
        return sender_uses, mailbox_uses

    def committing(self, job: str, sender: str, mailbox: str, use: Use) -> None:
        """A mail is being committed: it counts from now on."""
        self._in_flight[job] = (sender.lower(), mailbox, use)

    def committed(self, job: str) -> None:
        """The commit succeeded: the mail counts for good."""
        entry = self._in_flight.pop(job, None)
        if entry is None:
            return
        sender, mailbox, use = entry
        for key in (("sender", sender), ("mailbox", mailbox)):
            reading = self._reading.get(key)  # a copy being read now must not miss it either
            for copy in (self._copies.get(key), reading[0] if reading else None):
                if copy is not None:
                    copy.add(use)

    def failed(self, job: str) -> None:
        """The commit failed: the mail does not count."""
        self._in_flight.pop(job, None)

    async def _copy(self, key: _Key, now: float, max_age_s: float) -> _Copy:
        copy = self._copies.get(key)
        if copy is not None and now - copy.read_at < max_age_s:
            copy.used_at = now
            return copy
        reading = self._reading.get(key)
        if reading is None:
            fresh = _Copy(read_at=now, used_at=now)
            future: asyncio.Future[_Copy] = asyncio.ensure_future(self._read(key, fresh))
            reading = self._reading[key] = (fresh, future)
        return await asyncio.shield(reading[1])

    async def _read(self, key: _Key, fresh: _Copy) -> _Copy:
        kind, name = key
        since = fresh.read_at - DAY_S
        try:
            read: Awaitable[list[Usage]] = (
                self.store.sender_usage(name, since=since)
                if kind == "sender"
                else self.store.mailbox_usage(name, since=since)
            )
            stored = sorted((Use(u.at, u.faxes, u.pages) for u in await read), key=lambda u: u.at)
        finally:
            del self._reading[key]
        # Commits made while the read ran were added to ``fresh`` already; keep them after
        # the stored rows (a few may be in both: counted twice until the next read).
        fresh.uses = stored + fresh.uses
        if len(self._copies) >= _SWEEP_AT:
            self._sweep(fresh.read_at)
        self._copies[key] = fresh
        return fresh

    def _sweep(self, now: float) -> None:
        for key in [k for k, c in self._copies.items() if now - c.used_at >= self.refresh_s]:
            del self._copies[key]

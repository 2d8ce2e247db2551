"""Failed sign-ins, counted across sessions: a growing delay, then a temporary lockout.

Consumes: the outcome of every AUTH attempt, by client address and by user name (the
name as given, whether such a user exists or not). Produces: how long the next attempt
waits before its password is checked, whether it is refused at once (``454 4.7.0``,
locked out), and the moments worth one log line: the first delay and the lockout of
each address or name, each said once per episode.

The rule, for one address and for one name alike (the larger of the two counts):
failures within the last ``smtp.auth_lockout_s`` count. After the n-th, every attempt
waits ``smtp.auth_failure_delay_s`` x 2^(n-1) seconds, at most
``smtp.auth_failure_max_delay_s``; at ``smtp.auth_lockout_failures`` the address (or
the name) is locked out for ``smtp.auth_lockout_s``: its attempts are refused without
a password check. A successful sign-in forgets the failures of its address (not of the
name: an attacker guessing a name's password from elsewhere keeps counting). IPv6
clients are counted by their /64, which one host usually has to itself.

At most ``MAX_KEYS`` addresses and names are remembered (the oldest are forgotten), so
a flood of invented names cannot grow memory. State lives in the process: every
gateway instance counts on its own.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 10_000


def client_key(host: str) -> str:
    """What a client address is counted as: IPv4 as it is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    locked_until: float = 0.0
    said_delay: bool = False
    said_lock: bool = False


@dataclass(frozen=True)
class Throttled:
    """One newly crossed threshold, worth one log line."""

    kind: str  # "address" | "user"
    key: str
    failures: int
    locked_for_s: float | None  # None: the delays began; else: locked out this long


class AuthThrottle:
    def __init__(
        self,
        *,
        delay_s: float,
        max_delay_s: float,
        lockout_failures: int,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self.lockout_failures = lockout_failures
        self.lockout_s = lockout_s
        self.clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def locked(self, address: str, user: str) -> float | None:
        """Seconds left of a lockout of the address or of the name; None when neither is."""
        now = self.clock()
        left = [r.locked_until - now for r in self._both(address, user, create=False)]
        longest = max((t for t in left if t > 0), default=0.0)
        return longest or None

    def delay(self, address: str, user: str) -> float:
        """Seconds to wait before checking this attempt's password."""
        if self.delay_s <= 0:
            return 0.0
        n = max((self._count(r) for r in self._both(address, user, create=False)), default=0)
        if n == 0:
            return 0.0
        return float(min(self.delay_s * 2 ** min(n - 1, 30), self.max_delay_s))

    def failed(self, address: str, user: str) -> list[Throttled]:
        """Count one failure; the thresholds it crossed for the first time this episode."""
        now = self.clock()
        crossed: list[Throttled] = []
        for (kind, key), record in zip(
            (("address", client_key(address)), ("user", user)),
            self._both(address, user, create=True),
            strict=True,
        ):
            record.failures.append(now)
            n = self._count(record)
            if self.lockout_failures and n >= self.lockout_failures and record.locked_until <= now:
                record.locked_until = now + self.lockout_s
                record.failures.clear()  # after the lockout, the count starts afresh
                if not record.said_lock:
                    record.said_lock = True
                    crossed.append(Throttled(kind, key, n, self.lockout_s))
            elif self.delay_s > 0 and not record.said_delay:
                record.said_delay = True
                crossed.append(Throttled(kind, key, n, None))
        return crossed

    def succeeded(self, address: str) -> None:
        self._records.pop(("address", client_key(address)), None)

    # -- the records ------------------------------------------------------------------------
    def _both(self, address: str, user: str, *, create: bool) -> list[_Record]:
        found = []
        for key in (("address", client_key(address)), ("user", user)):
            record = self._records.get(key)
            if record is None:
                if not create:
                    continue
                record = self._records[key] = _Record()
                while len(self._records) > MAX_KEYS:
                    self._records.popitem(last=False)
            self._records.move_to_end(key)
            if record.locked_until and record.locked_until <= self.clock():
                record.locked_until = 0.0
                record.said_lock = False  # a new episode may be said again
            found.append(record)
        return found

    def _count(self, record: _Record) -> int:
        since = self.clock() - self.lockout_s
        while record.failures and record.failures[0] <= since:
            record.failures.popleft()
        if not record.failures and not record.locked_until:
            record.said_delay = False
        return len(record.failures)

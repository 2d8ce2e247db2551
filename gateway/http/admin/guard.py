"""What stands between the admin page and a stranger: throttled sign-ins, form tokens.

- ``LoginThrottle``: after ``limit`` failed sign-ins within ``WINDOW_S`` (15 minutes)
  from one client address, or for one admin name, further attempts from that address
  or for that name are refused (429) until the oldest failure is that old, whether
  the password is right or not. Kept in the process (each instance counts its own).
- ``new_token`` / ``token_ok``: the CSRF token kept in the signed session and repeated
  in every form; compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable

WINDOW_S = 900.0
MAX_KEYS = 10_000  # addresses and names remembered at once; the oldest are forgotten


class LoginThrottle:
    def __init__(
        self, limit: int, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait_s(self, keys: Iterable[str]) -> float:
        """Seconds until a sign-in under these keys is looked at again; 0: now."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.limit:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            if not times:
                if len(self._failures) >= MAX_KEYS:
                    del self._failures[next(iter(self._failures))]
                self._failures[key] = times
            times.append(now)

    def succeeded(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_ok(expected: object, presented: object) -> bool:
    if not isinstance(expected, str) or not isinstance(presented, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())

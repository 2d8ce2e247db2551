"""A token bucket: at most ``rate_per_s`` requests per second on average, ``burst`` at once.

Pure apart from its own counters: the time is always passed in (``now``, unix seconds),
so tests and benchmarks drive it with a simulated clock. ``reserve`` never refuses; it
takes a token now or in the future and says how long to wait for it, so callers that
share one bucket are served in the order they asked (tokens may go negative: that is
the queue of reservations).
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_per_s: float, *, burst: float = 1.0, now: float | None = None) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated = max(self._updated, now)

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0.0: go now)."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s

    def available(self, now: float) -> float:
        """Tokens that could be taken at ``now`` without waiting (negative: reservations queued)."""
        self._refill(now)
        return self._tokens

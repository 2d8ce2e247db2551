"""Retry policy as a pure value: when to try again, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 5.0
    maximum_s: float = 900.0
    lifetime_s: float = 86_400.0
    multiplier: float = 2.0

    def delay(
        self, attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after ``attempts`` failed tries: exponential, capped, with jitter.

        Jitter is "equal jitter" (half fixed, half random) so retries spread out but never
        come back almost at once. A server's Retry-After is a floor.
        """
        ceiling = min(self.maximum_s, self.initial_s * self.multiplier ** max(attempts - 1, 0))
        draw = (rng or random).random()
        delay = ceiling / 2 + draw * ceiling / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.maximum_s))
        return delay

    def expired(self, *, created_at: float, now: float) -> bool:
        return now - created_at >= self.lifetime_s

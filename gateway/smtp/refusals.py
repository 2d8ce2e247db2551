"""Refusals in aggregate: a client that collects hundreds of refusals gets a few lines, not hundreds.

Consumes: every refusal the handler gives (stage and reply code), by client address
(IPv6 by its /64). Produces: for each refusal, whether it is written whole (log line and
audit record, as before) or only counted; and, once a counted address's window is over,
one summary (one log line, one audit record ``refusals``) with the counts by stage and
code.

The rule: per address, the first ``WHOLE_PER_WINDOW`` refusals of each ``WINDOW_S`` are
written whole; the rest of that window are counted. The handler asks for the summaries
that are due when a window ends (it schedules one call then), when a session closes and
when it stops (all of them). The metrics count every refusal, whatever is written.

At most ``MAX_PEERS`` addresses are followed; beyond that, the oldest is summarised
early. State lives in the process.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.smtp.throttle import client_key

WHOLE_PER_WINDOW = 10
WINDOW_S = 60.0
MAX_PEERS = 10_000

Noted = Literal["whole", "counted", "counted first"]  # "counted first": a summary will be due


@dataclass
class _Window:
    started: float
    whole: int = 0
    counted: Counter[str] = field(default_factory=Counter)
    first_counted: float = 0.0
    last_counted: float = 0.0


@dataclass(frozen=True)
class Summary:
    peer: str
    counts: dict[str, int]  # "rcpt 553" -> 37
    first_at: float  # clock of the first and the last refusal counted
    last_at: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self) -> str:
        return ", ".join(f"{what} x{n}" for what, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))


class RefusalDigest:
    def __init__(
        self,
        *,
        whole_per_window: int = WHOLE_PER_WINDOW,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.whole_per_window = whole_per_window
        self.window_s = window_s
        self.clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def note(self, peer: str | None, stage: str, code: str) -> Noted:
        key = client_key(peer or "")
        now = self.clock()
        window = self._windows.get(key)
        if window is not None and now - window.started >= self.window_s and not window.counted:
            del self._windows[key]  # over, with nothing to say
            window = None
        if window is None:
            window = self._windows[key] = _Window(now)
        if window.whole < self.whole_per_window and not window.counted:
            window.whole += 1
            return "whole"
        first = not window.counted
        if first:
            window.first_counted = now
        window.counted[f"{stage} {code}"] += 1
        window.last_counted = now
        return "counted first" if first else "counted"

    def due(self, *, everything: bool = False) -> list[Summary]:
        """The summaries of windows that are over (or of all windows with counts)."""
        now = self.clock()
        out: list[Summary] = []
        for key in list(self._windows):
            window = self._windows[key]
            over = now - window.started >= self.window_s
            crowded = len(self._windows) > MAX_PEERS
            if not (over or everything or crowded):
                break  # windows are in the order they started: the rest are younger
            if window.counted:
                out.append(Summary(key, dict(window.counted), window.first_counted, window.last_counted))
            if over or crowded or everything:
                del self._windows[key]
        return out

    def next_due(self) -> float | None:
        """Seconds until the first window with counts is over; None when none has counts."""
        now = self.clock()
        starts = [w.started for w in self._windows.values() if w.counted]
        return max(0.0, min(starts) + self.window_s - now) if starts else None

    def seconds_left(self, peer: str | None) -> float:
        window = self._windows.get(client_key(peer or ""))
        return 0.0 if window is None else max(0.0, window.started + self.window_s - self.clock())

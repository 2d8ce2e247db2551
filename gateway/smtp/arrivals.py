"""Arrivals: how many mails are in their DATA phase right now, so that work which can wait does.

Consumes: the SMTP server's DATA phases (``receiving``). Produces: ``quiet()``, which
background workers await before taking a job. Touches: nothing else. Settings: none
(``busy_at``: 2 mails, ``max_wait_s``: 1 second, fixed in code).

A client waiting for ``250`` is a person or a scanner holding a connection; a fax
waiting to be submitted is a row in the store. So while ``busy_at`` or more mails are
in their DATA phase at once, the workers that ``app`` marks as deferring wait, each
for at most ``max_wait_s`` before it takes one job anyway: submission slows down
under a burst of mail but never stops (the first worker of each kind never defers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Arrivals:
    """Mails being received (from ``354`` to the reply), counted; ``quiet()`` to wait on."""

    def __init__(self, *, busy_at: int = 2, max_wait_s: float = 1.0) -> None:
        self.busy_at = busy_at
        self.max_wait_s = max_wait_s
        self.receiving = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextlib.contextmanager
    def receiving_mail(self) -> Iterator[None]:
        """Around one mail's DATA phase: from ``354`` to the reply."""
        self.receiving += 1
        if self.receiving >= self.busy_at:
            self._quiet.clear()
        try:
            yield
        finally:
            self.receiving -= 1
            if self.receiving < self.busy_at:
                self._quiet.set()

    @property
    def busy(self) -> bool:
        return not self._quiet.is_set()

    async def quiet(self) -> None:
        """Return once fewer than ``busy_at`` mails are coming in, or after ``max_wait_s``."""
        if self._quiet.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), timeout=self.max_wait_s)

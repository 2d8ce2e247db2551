"""The bearer token: one per client, shared by every concurrent call.

eFax tokens live 24 hours and there is no refresh token; asking for a new one
may end the previous one (UNCONFIRMED), so the process must not fetch more than
it needs.  ``TokenSource`` holds one token and an ``asyncio.Lock``:

- ``get()`` returns the current token, fetching one first when there is none or
  when it is within ``margin_s`` of expiry (capped at half the token's lifetime,
  so a short-lived token is not refetched on every call).  Concurrent callers
  wait on the lock and share one fetch.
- ``renew(stale)`` is for a 401: it fetches a new token unless another caller
  has already replaced ``stale``, so twenty calls failing at once cause one fetch.
- ``force()`` always fetches (credential checks).

The fetch itself (POST /tokens) is the client's; this module knows no HTTP.
Times come from the injected monotonic ``clock`` (seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (access_token, expires_in_s)


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float


class TokenSource:
    """One shared bearer token, refreshed before it expires."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float], margin_s: float) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin_s = margin_s
        self._lock = asyncio.Lock()
        self._token: _Token | None = None

    @property
    def current(self) -> str | None:
        """The token in use, if any (for redaction; never log it)."""
        return self._token.value if self._token else None

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    async def get(self) -> str:
        """The current token, fetched first if missing or about to expire."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            return await self._renew()

    async def renew(self, stale: str) -> str:
        """A token other than ``stale``: fetched now unless someone already did."""
        async with self._lock:
            fresh = self._fresh()
            if fresh is not None and fresh != stale:
                return fresh
            return await self._renew()

    async def force(self) -> str:
        """Fetch a new token now, replacing the current one."""
        async with self._lock:
            return await self._renew()

    async def _renew(self) -> str:
        started = self._clock()
        value, expires_in_s = await self._fetch()
        margin = min(self._margin_s, expires_in_s / 2)
        self._token = _Token(value, started + expires_in_s - margin)
        return value

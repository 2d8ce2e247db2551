"""SMTP AUTH PLAIN and LOGIN for the gateway's users, offered only over TLS.

Consumes: the ``[[users]]`` of the configuration (name, scrypt ``password_hash``, the
fax numbers of the mailboxes each may send from). Produces: an authenticated session
whose ``session.auth_data`` is an ``AuthUser``; the handler then binds the user to its
mailboxes at ``MAIL FROM``.

aiosmtpd calls every ``auth_<MECHANISM>`` method of the handler for that mechanism;
``AuthMechanisms`` is mixed into the handler so the password check (scrypt, tens of
milliseconds) runs in threads of its own (``smtp.auth_hash_threads``), not on the event
loop and not in the threads that read and convert mails: a queue of conversions never
holds up a sign-in. An unknown user name costs the same check against a throw-away
hash, so replies do not tell which names exist. Passwords and hashes are never logged.

Failed attempts are counted across sessions (``gateway.smtp.throttle``): after one from
an address or for a user name, each attempt waits a growing delay before its password
is checked; after ``smtp.auth_lockout_failures`` the address or name is locked out for
``smtp.auth_lockout_s`` (``454 4.7.0``, no password checked). A third failed attempt in
one session closes it with ``421 4.7.0``. AUTH is only advertised after STARTTLS or on
the implicit-TLS listener (aiosmtpd's ``auth_require_tls``); before that, ``AUTH`` gets
``538 5.7.11``.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import math
import os
from base64 import b64decode
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Session

from gateway.core.passwords import hash_password, verify_password
from gateway.logs import event
from gateway.settings import User
from gateway.smtp.throttle import AuthThrottle, Throttled

log = logging.getLogger(__name__)

MAX_FAILURES_PER_SESSION = 3
_FAILURES = "faxgw_auth_failures"


@dataclass(frozen=True)
class AuthUser:
    """``session.auth_data`` after a successful AUTH (aiosmtpd reads ``login``)."""

    login: str


class UserDirectory:
    """Who may sign in: user name -> (password hash, fax numbers of its mailboxes)."""

    def __init__(self, users: Sequence[User], *, threads: int = 2) -> None:
        self._users = {u.name: u for u in users}
        self._dummy: str | None = None
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None  # made on first use

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _in_own_thread(self, fn: Callable[..., str | bool], *args: bytes | str) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="faxgw-auth")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def mailboxes_of(self, name: str) -> set[str]:
        user = self._users.get(name)
        return {"".join(c for c in n if c.isdigit()) for n in user.mailboxes} if user else set()

    async def check(self, login: bytes, password: bytes) -> str | None:
        """The user's name when the password is right, else None (in a thread of its own)."""
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        user = self._users.get(name)
        if user is not None:
            encoded = user.password_hash.get_secret_value()
        else:
            if self._dummy is None:
                self._dummy = await self._in_own_thread(hash_password, os.urandom(16))
            encoded = self._dummy
        ok = await self._in_own_thread(verify_password, password, encoded)
        return name if ok and user is not None else None


class AuthMechanisms:
    """aiosmtpd AUTH mechanisms, mixed into the SMTP handler (which sets ``users``)."""

    users: UserDirectory
    throttle: AuthThrottle

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await _first_answer(server, args, "", "The AUTH PLAIN answer")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 The AUTH PLAIN answer is not authzid NUL user NUL password.")
            return AuthResult(success=False, handled=True)
        return await self._sign_in(server, "PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await _first_answer(server, args, "Username:", "The AUTH LOGIN user name")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(password, bytes)
        return await self._sign_in(server, "LOGIN", login, password)

    async def _sign_in(self, server: SMTP, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        session = server.session
        assert session is not None
        shown = login.decode("utf-8", "replace")[:64]
        address = _ip(session) or ""
        locked = self.throttle.locked(address, shown)
        if locked is not None:
            minutes = max(1, math.ceil(locked / 60))
            reply = (
                f"454 4.7.0 Too many failed sign-ins from this address or for this user name; "
                f"sign-ins are refused for {minutes} more minute{'s' if minutes != 1 else ''}."
            )
            return await self._failed(server, session, shown, reply, [])
        wait = self.throttle.delay(address, shown)
        if wait > 0:
            await asyncio.sleep(wait)
        name = await self.users.check(login, password)
        if name is not None:
            self.throttle.succeeded(address)
            log.info("signed in", extra=event("signed in", user=name, mechanism=mechanism, peer=address))
            return AuthResult(success=True, auth_data=AuthUser(name))
        crossed = self.throttle.failed(address, shown)
        return await self._failed(
            server, session, shown, "535 5.7.8 The user name or password is wrong.", crossed
        )

    async def _failed(
        self, server: SMTP, session: Session, shown: str, reply: str, crossed: list[Throttled]
    ) -> AuthResult:
        failures = getattr(session, _FAILURES, 0) + 1
        setattr(session, _FAILURES, failures)
        self.sign_in_failed(session, shown, failures, reply)
        for threshold in crossed:
            self.sign_ins_throttled(session, threshold)
        if failures >= MAX_FAILURES_PER_SESSION:
            await server.push("421 4.7.0 Too many failed sign-ins; closing the connection.")
            if server.transport is not None:
                server.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=reply)

    def sign_in_failed(self, session: Session, login: str, failures: int, reply: str) -> None:
        """Hook for the handler: log and audit one failed AUTH (never the password)."""

    def sign_ins_throttled(self, session: Session, threshold: Throttled) -> None:
        """Hook for the handler: sign-ins from an address or for a name are now delayed or locked."""


def _ip(session: Session) -> str | None:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else None


async def _first_answer(server: SMTP, args: list[str], prompt: str, what: str) -> bytes | None:
    """The initial response given with AUTH, or the answer to ``prompt``; None when refused."""
    if len(args) == 1:
        answer = await server.challenge_auth(prompt)
        return None if answer is MISSING else answer
    try:
        return b64decode(args[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        await server.push(f"501 5.5.2 {what} is not valid base64.")
        return None

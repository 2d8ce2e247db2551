"""SMTP AUTH PLAIN and LOGIN for the gateway's users, offered only over TLS.

Consumes: the ``[[users]]`` of the configuration (name, scrypt ``password_hash``, the
fax numbers of the mailboxes each may send from). Produces: an authenticated session
whose ``session.auth_data`` is an ``AuthUser``; the handler then binds the user to its
mailboxes at ``MAIL FROM``.

aiosmtpd calls every ``auth_<MECHANISM>`` method of the handler for that mechanism;
``AuthMechanisms`` is mixed into the handler so the password check (scrypt, tens of
milliseconds) runs in a thread, not on the event loop. An unknown user name costs the
same check against a throw-away hash, so replies do not tell which names exist.
Passwords and hashes are never logged; a third failed attempt in one session closes
it with ``421 4.7.0``. AUTH is only advertised after STARTTLS or on the implicit-TLS
listener (aiosmtpd's ``auth_require_tls``); before that, ``AUTH`` gets ``538 5.7.11``.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import os
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import dataclass

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Session

from gateway.core.passwords import hash_password, verify_password
from gateway.logs import event
from gateway.settings import User

log = logging.getLogger(__name__)

MAX_FAILURES_PER_SESSION = 3
_FAILURES = "faxgw_auth_failures"


@dataclass(frozen=True)
class AuthUser:
    """``session.auth_data`` after a successful AUTH (aiosmtpd reads ``login``)."""

    login: str


class UserDirectory:
    """Who may sign in: user name -> (password hash, fax numbers of its mailboxes)."""

    def __init__(self, users: Sequence[User]) -> None:
        self._users = {u.name: u for u in users}
        self._dummy: str | None = None

    def mailboxes_of(self, name: str) -> set[str]:
        user = self._users.get(name)
        return {"".join(c for c in n if c.isdigit()) for n in user.mailboxes} if user else set()

    async def check(self, login: bytes, password: bytes) -> str | None:
        """The user's name when the password is right, else None (in a thread)."""
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        user = self._users.get(name)
        if user is not None:
            encoded = user.password_hash.get_secret_value()
        else:
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(hash_password, os.urandom(16))
            encoded = self._dummy
        ok = await asyncio.to_thread(verify_password, password, encoded)
        return name if ok and user is not None else None


class AuthMechanisms:
    """aiosmtpd AUTH mechanisms, mixed into the SMTP handler (which sets ``users``)."""

    users: UserDirectory

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
        name = await self.users.check(login, password)
        shown = login.decode("utf-8", "replace")[:64]
        if name is not None:
            log.info("signed in", extra=event("signed in", user=name, mechanism=mechanism, peer=_ip(session)))
            return AuthResult(success=True, auth_data=AuthUser(name))
        failures = getattr(session, _FAILURES, 0) + 1
        setattr(session, _FAILURES, failures)
        self.sign_in_failed(session, shown, failures)
        if failures >= MAX_FAILURES_PER_SESSION:
            await server.push("421 4.7.0 Too many failed sign-ins; closing the connection.")
            if server.transport is not None:
                server.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 The user name or password is wrong."
        )

    def sign_in_failed(self, session: Session, login: str, failures: int) -> None:
        """Hook for the handler: log and audit one failed AUTH (never the password)."""


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

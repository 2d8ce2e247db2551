"""Password hashes for SMTP AUTH users: scrypt (RFC 7914) from the standard library.

A hash is one self-describing string, so its cost can be raised later without
breaking the hashes already in the configuration::

    scrypt$n=16384,r=8,p=1$<salt, base64>$<derived key, base64>

``fax-gateway hash-password`` makes one (``hash_password``); the SMTP server checks a
password against one with ``verify_password`` (constant-time comparison). Both are
CPU-bound for tens of milliseconds on purpose: call them off the event loop.

A hash is a secret too (it allows offline guessing): the settings keep it as a
``SecretStr`` and nothing logs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 16384  # 2**14: about 16 MiB and 50 ms per check on a current core
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
_MAX_MEMORY = 512 * 1024 * 1024  # refuse parameters that would need more than this


class BadPasswordHash(ValueError):
    """The string is not a hash this module made; ``str()`` never contains the string."""


@dataclass(frozen=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"{SCHEME}$n={self.n},r={self.r},p={self.p}${salt}${key}"


def _derive(password: bytes, *, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    memory = 128 * n * r * (p + 2)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=memory + (1 << 20), dklen=length)


def hash_password(
    password: str | bytes,
    *,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """A new hash of ``password`` with a random salt (``salt`` is for tests only)."""
    secret = password.encode("utf-8") if isinstance(password, str) else password
    _check_cost(n, r, p)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _derive(secret, salt=salt, n=n, r=r, p=p, length=KEY_BYTES)
    return ScryptHash(n, r, p, salt, key).encode()


def parse_hash(encoded: str) -> ScryptHash:
    """Read a hash string; raise BadPasswordHash (without echoing it) when malformed."""
    parts = encoded.strip().split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise BadPasswordHash(
            "is not a password hash made by 'fax-gateway hash-password' "
            "(expected scrypt$n=...,r=...,p=...$salt$hash)"
        )
    try:
        params = dict(item.split("=", 1) for item in parts[1].split(","))
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(parts[2], validate=True)
        key = base64.b64decode(parts[3], validate=True)
    except (ValueError, KeyError, binascii.Error):
        raise BadPasswordHash("has unreadable scrypt parameters, salt or hash") from None
    _check_cost(n, r, p)
    if len(salt) < 8 or len(key) < 16:
        raise BadPasswordHash("has a salt or hash that is too short")
    return ScryptHash(n, r, p, salt, key)


def _check_cost(n: int, r: int, p: int) -> None:
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise BadPasswordHash("has scrypt parameters out of range (n a power of 2, r 1-64, p 1-16)")
    if 128 * n * r * (p + 2) > _MAX_MEMORY:
        raise BadPasswordHash("has scrypt parameters that would need more than 512 MiB per check")


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Does ``password`` match the hash? Constant-time; a malformed hash never matches."""
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        stored = parse_hash(encoded)
    except BadPasswordHash:
        return False
    key = _derive(secret, salt=stored.salt, n=stored.n, r=stored.r, p=stored.p, length=len(stored.key))
    return hmac.compare_digest(key, stored.key)

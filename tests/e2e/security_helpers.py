"""Helpers for the security tests: trustme certificates, TLS/AUTH SMTP clients, a raw-socket client.

Everything here talks to real servers on loopback; the blocking clients run in a thread
(``asyncio.to_thread``) so the gateway keeps serving on the test's event loop.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from gateway.core.passwords import hash_password
from gateway.settings import Settings
from tests.e2e.conftest import USER_PASSWORD, SmtpResult, gateway_settings, smtp_transaction
from tests.helpers import smtp_error_text

USER = "alice"
USER_HASH = hash_password(USER_PASSWORD)
ALICE_NUMBER = "13235550100"  # the fax_number of ALICE_USER's mailbox in gateway_settings
SCANNER_NUMBER = "13235550200"


@dataclass(frozen=True)
class Certs:
    cert: Path
    key: Path
    client: ssl.SSLContext  # trusts the test CA


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = directory / "server.pem", directory / "server.key"
    server.cert_chain_pems[0].write_to_path(str(cert))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(cert), append=True)
    server.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certs(cert, key, client)


def secure_settings(tmp_path: Path, simulator_url: str, certs: Certs, **overrides: Any) -> Settings:
    """TLS on both listeners, one user (alice, bound to alice's mailbox), loopback NOT trusted."""
    smtp = {
        "tls_cert_file": str(certs.cert),
        "tls_key_file": str(certs.key),
        "implicit_tls_listen": "127.0.0.1:0",
        "trusted_networks": [],
        **overrides.pop("smtp", {}),
    }
    users = overrides.pop("users", [{"name": USER, "password_hash": USER_HASH, "mailboxes": [ALICE_NUMBER]}])
    return gateway_settings(tmp_path, simulator_url, smtp=smtp, users=users, **overrides)


def send(
    port: int,
    data: bytes,
    *,
    sender: str,
    rcpts: list[str],
    context: ssl.SSLContext | None = None,
    implicit: bool = False,
    user: tuple[str, str] | None = None,
    mechanism: str = "PLAIN",
) -> SmtpResult:
    """One mail: STARTTLS (or implicit TLS) with ``context``, AUTH with ``user``; the first refusal."""
    client: smtplib.SMTP
    if implicit:
        client = smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, context=context)
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    with client:
        client.ehlo("client.example.com")
        if context is not None and not implicit:
            client.starttls(context=context)
            client.ehlo("client.example.com")
        if user is not None:
            client.user, client.password = user
            try:
                method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
                client.auth(mechanism, method, initial_response_ok=mechanism == "PLAIN")
            except smtplib.SMTPAuthenticationError as err:
                return SmtpResult(err.smtp_code, smtp_error_text(err), "auth")
        return smtp_transaction(client, sender, rcpts, data)


@dataclass
class Raw:
    """A byte-level SMTP client: what was sent and received, exactly."""

    port: int
    timeout: float = 10.0
    source: str | None = None  # the client address, e.g. "127.0.0.2" (any of 127.0.0.0/8 works)
    sock: socket.socket | ssl.SSLSocket = field(init=False)
    received: bytearray = field(default_factory=bytearray)
    _buffer: bytes = b""

    def __post_init__(self) -> None:
        source = (self.source, 0) if self.source else None
        self.sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=self.timeout, source_address=source
        )

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole reply (all its lines), as received."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unread: {self._buffer!r}")
            self.received += chunk
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"

    def closed(self) -> bool:
        """True when the server closed the connection (after anything still buffered)."""
        try:
            return not self._buffer and self.sock.recv(65536) == b""
        except (ConnectionResetError, ssl.SSLEOFError):
            return True

    def starttls(self, context: ssl.SSLContext) -> None:
        assert not self._buffer, "nothing may be pending before the handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""What ``fax-gateway check`` and mail out say when a relay answers as Microsoft 365 does.

docs/microsoft-365.md and docs/exchange.md quote these lines. The server is a stand-in on
loopback speaking the replies Microsoft documents for smtp.office365.com:587 (STARTTLS
offered; AUTH only after it; MAIL refused without TLS; SMTP AUTH turned off for the
tenant): the replies are Microsoft's words, the gateway's sentences around them are
what this test sees."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from gateway.commands.check import check
from gateway.mail.relay import MailTransient, RelaySender
from gateway.settings import RelaySettings, load_settings

AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    "Visit https://aka.ms/smtp_auth_disabled for more information."
)
STARTTLS_REQUIRED = "451 5.7.3 STARTTLS is required to send mail"
MESSAGE = b"From: fax-gateway@example.com\r\nTo: alice@example.com\r\nSubject: x\r\n\r\nhi\r\n"


class _Office365:
    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if session.ssl is None:
            return STARTTLS_REQUIRED
        envelope.mail_from = address
        return "250 2.1.0 Sender OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK"


def _tenant_without_smtp_auth(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    return AuthResult(success=False, handled=False, message=AUTH_DISABLED)


@pytest.fixture
async def office365(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # check builds its TLS context as serve does
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            _Office365(),
            hostname="SN4PR0401CA0001.outlook.office365.com",
            tls_context=server_ctx,
            authenticator=_tenant_without_smtp_auth,
            auth_require_tls=True,
            loop=loop,
        ),
        host="127.0.0.1",
        port=0,
    )
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


def _settings(tmp_path: Path, port: int, **relay: Any) -> Any:
    return load_settings(
        None,
        {
            "database": {"url": f"sqlite:///{tmp_path}/gateway.db"},
            "relay": {"host": "127.0.0.1", "port": port, "timeout_s": 5, **relay},
        },
    )


async def test_smtp_auth_turned_off_for_the_tenant(
    tmp_path: Path, office365: int, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, office365, tls="starttls", username="fax@example.com", password="pw-x")
    assert await check(settings) == 2
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("relay:"))
    assert line.startswith(f"relay: 127.0.0.1:{office365} refused the username fax@example.com")
    assert "5.7.139" in line and "SmtpClientAuthentication is disabled for the Tenant" in line
    assert "pw-x" not in out


async def test_a_login_without_starttls(
    tmp_path: Path, office365: int, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, office365, tls="none", username="fax@example.com", password="pw-x")
    assert await check(settings) == 2  # a setting to change, and check says which
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("relay:")]
    assert lines[0].startswith(f"relay: cannot use 127.0.0.1:{office365}:") and "AUTH" in lines[0]
    assert 'set relay.tls = "starttls"' in lines[1]


async def test_mail_without_starttls_is_refused_at_mail_from(tmp_path: Path, office365: int) -> None:
    settings = RelaySettings(host="127.0.0.1", port=office365, tls="none", timeout_s=5)
    with pytest.raises(MailTransient) as refused:
        await RelaySender(settings).deliver(MESSAGE, sender="", recipients=["alice@example.com"])
    assert str(refused.value) == f"the relay 127.0.0.1:{office365} answered {STARTTLS_REQUIRED}"

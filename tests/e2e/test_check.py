"""``fax-gateway check`` catches what bites on day one: the real command, as a process,
against real SMTP relays on loopback (aiosmtpd demanding STARTTLS or AUTH, or answering as
Microsoft 365 does), with one sentence for each problem."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.process import command
from tests.sink import SmtpSink

CLEAN_MAILBOXES = """
[[mailboxes]]
user_id = "11111111-22222222"
fax_number = "13235550100"
senders = ["alice@example.com"]
deliver_to = ["alice@example.com"]

[[mailboxes]]
user_id = "33333333-44444444"
fax_number = "+44 20 7946 0958"
senders = ["*@scan.example.com"]
deliver_to = ["frontdesk@example.com"]
"""


async def run_check(tmp_path: Path, toml: str) -> tuple[int, str]:
    """``python -m gateway.cli check --config ...`` while the relays serve on this loop."""
    config = tmp_path / "check.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/gateway.db"\n\n{toml}')
    return await command(config, "check")


class _Relay:
    """An aiosmtpd server on 127.0.0.1 port 0, with the SMTP options a real relay has."""

    def __init__(self, handler: Any, **options: Any) -> None:
        self.handler = handler
        self.options = options
        self.port = 0
        self.server: asyncio.Server | None = None
        self.sessions: list[SMTP] = []

    async def start(self) -> _Relay:
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            with warnings.catch_warnings():  # AUTH in clear: the test relay asks for it
                warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
                self.sessions.append(SMTP(self.handler, hostname="relay.test", loop=loop, **self.options))
            return self.sessions[-1]

        self.server = await loop.create_server(session, host="127.0.0.1", port=0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        assert self.server is not None
        for session in self.sessions:
            if session.transport is not None:
                session.transport.close()
        self.server.close()
        await self.server.wait_closed()


class _Answers:
    """Answers MAIL FROM with a fixed reply, as Microsoft 365 does to a client it wants
    encrypted or signed in."""

    def __init__(self, mail_reply: str) -> None:
        self.mail_reply = mail_reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        return self.mail_reply


@pytest.fixture
async def relays() -> AsyncIterator[Callable[..., Any]]:
    started: list[_Relay] = []

    async def start(handler: Any, **options: Any) -> _Relay:
        started.append(await _Relay(handler, **options).start())
        return started[-1]

    yield start
    for relay in started:
        await relay.stop()


def _server_tls() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def _relay_toml(port: int, **extra: str) -> str:
    lines = ["[relay]", 'host = "127.0.0.1"', f"port = {port}", 'from_address = "fax-gateway@example.com"']
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def _refuse_everyone(*_: Any) -> AuthResult:
    return AuthResult(success=False)


async def test_a_relay_that_demands_starttls_the_settings_do_not_use(
    tmp_path: Path, relays: Callable[..., Any]
) -> None:
    relay = await relays(SmtpSink(), tls_context=_server_tls(), require_starttls=True)
    code, out = await run_check(tmp_path, _relay_toml(relay.port, tls="none") + CLEAN_MAILBOXES)
    assert code == 2, out
    assert (
        f"relay: 127.0.0.1:{relay.port} takes mail only after STARTTLS (it answered MAIL FROM:<> with "
        '"530 Must issue a STARTTLS command first"), but relay.tls is "none", so every report and '
        'received fax would be refused: set relay.tls = "starttls" (or "implicit" for port 465).'
    ) in out


async def test_a_relay_that_demands_auth_the_settings_do_not_use(
    tmp_path: Path, relays: Callable[..., Any]
) -> None:
    relay = await relays(
        SmtpSink(), auth_required=True, auth_require_tls=False, authenticator=_refuse_everyone
    )
    code, out = await run_check(tmp_path, _relay_toml(relay.port, tls="none") + CLEAN_MAILBOXES)
    assert code == 2, out
    assert (
        f"relay: 127.0.0.1:{relay.port} takes mail only from a client that signs in (it answered "
        'MAIL FROM:<> with "530 5.7.0 Authentication required"; it offers AUTH LOGIN PLAIN), but '
        "relay.username is empty, so every report and received fax would be refused: set "
        "relay.username and relay.password"
    ) in out
    assert 'relay.tls = "starttls": passwords only over TLS' in out


async def test_a_relay_that_offers_auth_only_after_starttls_to_settings_signing_in_in_clear(
    tmp_path: Path, relays: Callable[..., Any]
) -> None:
    relay = await relays(
        SmtpSink(), tls_context=_server_tls(), auth_required=True, authenticator=_refuse_everyone
    )
    toml = _relay_toml(relay.port, tls="none", username="fax-gateway", password="relay-password-do-not-log")
    code, out = await run_check(tmp_path, toml + CLEAN_MAILBOXES)
    assert code == 2, out
    assert (
        f"relay: 127.0.0.1:{relay.port} offers no AUTH on a connection in clear (most relays offer it "
        'only after STARTTLS): set relay.tls = "starttls".'
    ) in out
    assert "relay-password-do-not-log" not in out


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (
            "451 5.7.3 STARTTLS is required to send mail [AM0PR01CA0001.eurprd01.prod.outlook.com]",
            "after STARTTLS",
        ),
        ("530 5.7.57 Client not authenticated to send mail. [AM0PR01CA0001]", "from a client that signs in"),
    ],
)
async def test_microsoft_365_refusals_are_read_for_what_they_ask(
    tmp_path: Path, relays: Callable[..., Any], reply: str, says: str
) -> None:
    relay = await relays(_Answers(reply))
    code, out = await run_check(tmp_path, _relay_toml(relay.port, tls="none") + CLEAN_MAILBOXES)
    assert code == 2, out
    assert (
        f'relay: 127.0.0.1:{relay.port} takes mail only {says} (it answered MAIL FROM:<> with "{reply}"'
        in out
    )


async def test_a_relay_that_will_not_relay_to_the_users(tmp_path: Path, relays: Callable[..., Any]) -> None:
    sink = SmtpSink()
    sink.fail_rcpt["alice@example.com"] = "554 5.7.1 <alice@example.com>: Relay access denied"
    relay = await relays(sink)
    code, out = await run_check(tmp_path, _relay_toml(relay.port, tls="none") + CLEAN_MAILBOXES)
    assert code == 2, out
    assert (
        f'relay: 127.0.0.1:{relay.port} refused to take mail for alice@example.com (it answered "554 '
        '5.7.1 <alice@example.com>: Relay access denied"), so reports and received faxes to it would be '
        "refused; set relay.username and relay.password"
    ) in out
    assert sink.messages == []  # the check sends nothing


async def test_settings_that_load_but_bite_each_get_a_sentence(
    tmp_path: Path, relays: Callable[..., Any]
) -> None:
    sink = SmtpSink()
    relay = await relays(sink)
    toml = f"""
[smtp]
trusted_networks = ["127.0.0.0/8", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32", "192.168.1.0/24"]

[relay]
host = "127.0.0.1"
port = {relay.port}
tls = "none"

[[mailboxes]]
user_id = "11111111-22222222"
fax_number = "13235550100"
senders = ["alice@example.com"]

[[mailboxes]]
user_id = "11111111-22222222"
fax_number = "+1 (323) 555-0100"
senders = ["bob@example.com"]

[[mailboxes]]
user_id = "55555555-66666666"
fax_number = "12345"
senders = ["carol@example.com"]
"""
    code, out = await run_check(tmp_path, toml)
    assert code == 2, out  # two mailboxes on one number and one user_id: wrong, not just risky
    assert (
        "relay.from_address: fax-gateway@fax.local is not a routable address: it is in fax_domain "
        "(fax.local), which only this gateway and the mail server in front of it know, so mail servers "
        "on the way to your users refuse or file as junk the reports and received faxes sent through "
        "127.0.0.1, and nothing sent back to it arrives; set it to an address of your own domain"
    ) in out
    assert (
        "mailbox 12345 (user_id 55555555-66666666): fax_number 12345 is not a fax number (phonenumbers "
        "knows no such number, read as in US)"
    ) in out
    assert "mailboxes: 2 mailboxes have the fax number 13235550100 (13235550100, +1 (323) 555-0100)" in out
    assert "mailboxes: 2 mailboxes have the user_id 11111111-22222222" in out
    assert (
        "smtp.trusted_networks: 0.0.0.0/0 is every address on the internet; anyone there may fax "
        "on the account's bill without signing in, merely by claiming an address a mailbox allows "
        "(smtp.require_tls does not apply to trusted networks), and with no TLS certificate "
        "(smtp.tls_cert_file) its documents cross that network in clear. That is an open door"
    ) in out
    assert "smtp.trusted_networks: 10.0.0.0/8 is a network wider than a /24 (16,777,216 addresses)" in out
    assert "smtp.trusted_networks: 2001:db8::/32 is a network wider than a /64" in out
    assert "127.0.0.0/8 is" not in out and "192.168.1.0/24 is" not in out
    assert sink.messages == []


async def test_a_sound_configuration_gets_no_warning(tmp_path: Path, relays: Callable[..., Any]) -> None:
    sink = SmtpSink()
    relay = await relays(sink)
    toml = '[smtp]\ntrusted_networks = ["127.0.0.0/8", "::1/128", "192.168.1.0/24"]\n\n'
    code, out = await run_check(tmp_path, toml + _relay_toml(relay.port, tls="none") + CLEAN_MAILBOXES)
    assert code == 0, out
    assert (
        f"relay: 127.0.0.1:{relay.port} accepted the connection and would take a report "
        "(MAIL FROM:<>, RCPT TO:<alice@example.com>)"
    ) in out
    for word in (
        "routable",
        "not a fax number",
        "open door",
        "mailboxes have",
        "only after STARTTLS",
        "signs in",
    ):
        assert word not in out, out
    assert sink.messages == [] and len(relay.sessions) == 1
    assert "is now workers." not in out


async def test_worker_keys_still_under_dispatch_are_named_with_their_new_place(tmp_path: Path) -> None:
    toml = "[dispatch]\nworkers = 2\nlease_s = 60\nbackoff_max_s = 300\n\n" + CLEAN_MAILBOXES
    code, out = await run_check(tmp_path, toml)
    assert code == 0, out  # a warning: the old names still work
    assert "dispatch.lease_s is now workers.lease_s (it governs every worker)" in out
    assert "dispatch.backoff_max_s is now workers.backoff_max_s" in out
    assert "dispatch.workers" not in out

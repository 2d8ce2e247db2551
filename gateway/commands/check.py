"""``fax-gateway check``: is this configuration usable? One sentence per finding.

Exit 0 when everything answers, 2 when the configuration or credentials are wrong,
1 when something is unreachable. Secrets are never printed.
"""

from __future__ import annotations

from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxAuthError, EfaxError
from gateway.mail.relay import MailError, RelayLoginRefused, RelaySender
from gateway.settings import Settings
from gateway.smtp.tls import describe as describe_smtp
from gateway.store import check_database


async def check(settings: Settings) -> int:
    status = 0
    print("configuration: ok")
    if not settings.mailboxes:
        print("mailboxes: none configured, so nobody may fax and no received fax is delivered")
    for box in settings.mailboxes:
        if not box.senders:
            print(f"mailbox {box.fax_number}: senders is empty, so nobody may fax from it")
    smtp_status, smtp_lines = describe_smtp(settings.smtp, len(settings.users))
    print("\n".join(smtp_lines))
    status = max(status, smtp_status)
    db_status, db_line = await check_database(
        settings.database.url, password=settings.database.password.get_secret_value()
    )
    print(db_line)
    status = max(status, db_status)
    if settings.efax.simulated:
        print("efax: no app_id configured; serve will use the built-in simulator")
    else:
        status = max(status, await _check_efax(settings))
    if settings.relay.host:
        status = max(status, await _check_relay(settings))
    else:
        print(f"relay: none configured; mail is written to the Maildir {settings.relay.maildir}")
    return status


async def _check_efax(settings: Settings) -> int:
    e = settings.efax
    async with EfaxClient(
        base_url=e.base_url,
        app_id=e.app_id,
        api_key=e.api_key.get_secret_value(),
        connect_timeout_s=e.connect_timeout_s,
        read_timeout_s=e.read_timeout_s,
    ) as client:
        if not await client.health():
            print(f"efax: {e.base_url} does not answer /health")
        try:
            await client.check_credentials()
        except EfaxAuthError:
            print(f"efax: the App ID {e.app_id} and API key were refused by {e.base_url}")
            return 2
        except EfaxError as err:
            print(f"efax: cannot check the credentials: {err}")
            return 1
    print(f"efax: credentials accepted by {e.base_url}")
    return 0


async def _check_relay(settings: Settings) -> int:
    """Connect as delivery does (``RelaySender.probe``: its TLS context, STARTTLS, AUTH)."""
    r = settings.relay
    try:
        await RelaySender(r).probe()
    except RelayLoginRefused as err:
        print(f"relay: {err}")
        return 2
    except MailError as err:
        print(f"relay: {err}")
        return 1
    print(f"relay: {r.host}:{r.port} accepted the connection" + (" and login" if r.username else ""))
    return 0

"""``fax-gateway check``: is this configuration usable? One sentence per finding.

Exit 0 when everything answers, 2 when the configuration or credentials are wrong,
1 when something is unreachable. Secrets are never printed. Besides loading the settings
and trying the database, eFax and the relay, it says what loads but bites on the first
day (``check_findings``): an unroutable report From:, mailboxes that are not fax numbers
or share one, trusted networks that are an open door, a relay that takes mail only with
STARTTLS or AUTH the settings do not use. Warnings leave the exit status as it is.
"""

from __future__ import annotations

from gateway.commands import check_findings
from gateway.commands.check_findings import Finding
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
    status = max(status, _say(check_findings.configuration(settings)))
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


def _say(findings: list[Finding]) -> int:
    for finding in findings:
        print(finding.sentence)
    return max((f.status for f in findings), default=0)


async def _check_relay(settings: Settings) -> int:
    """Connect as delivery does (``RelaySender.probe``: its TLS context, STARTTLS, AUTH),
    and ask MAIL FROM:<> and RCPT TO: as a report would, sending nothing."""
    r = settings.relay
    recipient = check_findings.probe_recipient(settings)
    try:
        probe = await RelaySender(r).probe(recipient)
    except RelayLoginRefused as err:
        print(f"relay: {err}")
        return 2
    except MailError as err:
        print(f"relay: {err}")
        if r.tls == "none" and r.username and "AUTH" in str(err).upper():
            print(
                f"relay: {r.host}:{r.port} offers no AUTH on a connection in clear (most relays offer "
                'it only after STARTTLS): set relay.tls = "starttls".'
            )
            return 2
        return 1
    findings = check_findings.relay(settings, probe, recipient)
    if not any(f.status for f in findings):
        print(
            f"relay: {r.host}:{r.port} accepted the connection"
            + (" and login" if r.username else "")
            + " and would take a report (MAIL FROM:<>"
            + (f", RCPT TO:<{recipient}>)" if recipient else ")")
        )
    return _say(findings)

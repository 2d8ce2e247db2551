"""What ``fax-gateway check`` says about settings that load but bite on the first day.

Each finding is one sentence that names the setting, says what goes wrong and what to
do. ``status`` 2 means the configuration is wrong (the gateway would misbehave: two
mailboxes on one number, a relay that refuses what the settings send); 0 is a warning
(it works, but dangerously or against how mail is routed).

- ``configuration(settings)``: the report From: address unroutable while a real relay is
  configured; a mailbox whose ``fax_number`` is not a valid number; two mailboxes with
  one number or one ``user_id``; ``smtp.trusted_networks`` wider than a /24 (IPv6: a
  /64), which lets every machine in it fax without signing in; a renamed key still
  set under its old name (``dispatch.lease_s`` for ``workers.lease_s`` ...).
- ``relay(settings, probe)``: what the relay answered to a connection made as delivery
  makes it (``RelaySender.probe``): mail taken only after STARTTLS or AUTH that the
  settings do not use, the null sender or the relaying refused, STARTTLS offered but
  not used.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from email.utils import parseaddr

import phonenumbers

from gateway.mail.relay import RelayProbe
from gateway.settings import Settings, split_host_port

# Domains that exist on no mail route: RFC 6761/6762 special-use names and their kin.
_UNROUTABLE_SUFFIXES = (".local", ".localhost", ".localdomain", ".invalid", ".test", ".example", ".internal")
_WIDEST_V4, _WIDEST_V6 = 24, 64  # one office LAN; wider is a whole site or the internet


@dataclass(frozen=True)
class Finding:
    sentence: str
    status: int = 0  # 0: a warning; 2: the configuration is wrong


def configuration(settings: Settings) -> list[Finding]:
    return [
        *_from_address(settings),
        *_mailboxes(settings),
        *_trusted_networks(settings),
        *(Finding(sentence) for sentence in settings.deprecations()),
    ]


def _from_address(settings: Settings) -> list[Finding]:
    if not settings.relay.host:
        return []  # written to the Maildir: nothing is routed
    address = parseaddr(settings.relay.from_address)[1] or settings.relay.from_address
    domain = address.rpartition("@")[2].lower().rstrip(".")
    fax_domain = settings.fax_domain
    if domain == fax_domain or domain.endswith("." + fax_domain):
        why = (
            f"it is in fax_domain ({fax_domain}), which only this gateway and the mail server in front "
            "of it know"
        )
    elif "." not in domain or f".{domain}".endswith(_UNROUTABLE_SUFFIXES):
        why = f"{domain or 'its domain'} is not a domain on the internet"
    else:
        return []
    return [
        Finding(
            f"relay.from_address: {address} is not a routable address: {why}, so mail servers on "
            f"the way to your users refuse or file as junk the reports and received faxes sent "
            f"through {settings.relay.host}, and nothing sent back to it arrives; set it to an "
            "address of your own domain, such as fax-gateway@example.com."
        )
    ]


def _mailboxes(settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    by_number: dict[str, list[str]] = defaultdict(list)
    by_user: dict[str, list[str]] = defaultdict(list)
    for box in settings.mailboxes:
        number = _e164(box.fax_number, settings.default_country)
        if number is None:
            found.append(
                Finding(
                    f"mailbox {box.fax_number} (user_id {box.user_id}): fax_number {box.fax_number} is "
                    f"not a fax number (phonenumbers knows no such number, read as in "
                    f"{settings.default_country}); copy it from the eFax admin portal, with the "
                    "country code, e.g. 13235551212."
                )
            )
        by_number[number or "".join(ch for ch in box.fax_number if ch.isdigit())].append(box.fax_number)
        by_user[box.user_id].append(box.fax_number)
    for number, spellings in by_number.items():
        if len(spellings) > 1:
            found.append(
                Finding(
                    f"mailboxes: {len(spellings)} mailboxes have the fax number {number} "
                    f"({', '.join(spellings)}); each eFax number is one mailbox, or its received "
                    "faxes are read and mailed twice and its senders are matched against the wrong "
                    "list: merge their senders and deliver_to into one [[mailboxes]] entry.",
                    status=2,
                )
            )
    for user_id, numbers in by_user.items():
        if len(numbers) > 1:
            found.append(
                Finding(
                    f"mailboxes: {len(numbers)} mailboxes have the user_id {user_id} (fax numbers "
                    f"{', '.join(numbers)}); eFax's user-id names one user and one number, so faxes "
                    "would go out from, and be read for, the wrong number: give each mailbox the "
                    "user_id shown for its number in the eFax admin portal.",
                    status=2,
                )
            )
    return found


def _e164(number: str, country: str) -> str | None:
    """The number's E.164 digits when phonenumbers knows it as valid: as written (national
    numbers read in ``country``), or as digits that start with the country code."""
    for text, region in ((number, country), ("+" + number.lstrip("+"), None)):
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    return None


def _trusted_networks(settings: Settings) -> list[Finding]:
    smtp = settings.smtp
    found = []
    clear = ""
    if not smtp.tls_cert_file:
        clear = ", and with no TLS certificate (smtp.tls_cert_file) its documents cross that network in clear"
    for text in smtp.trusted_networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.is_loopback:
            continue  # this machine only
        widest = _WIDEST_V4 if net.version == 4 else _WIDEST_V6
        if net.prefixlen == 0:
            who = "every address on the internet"
        elif net.prefixlen < widest:
            who = f"a network wider than a /{widest} ({net.num_addresses:,} addresses)"
        else:
            continue
        found.append(
            Finding(
                f"smtp.trusted_networks: {text} is {who}; anyone there may fax on the account's "
                "bill without signing in, merely by claiming an address a mailbox allows "
                f"(smtp.require_tls does not apply to trusted networks){clear}. That is an open "
                "door: list only your scanners' and mail server's addresses (e.g. 192.0.2.10/32) "
                "and let people sign in with SMTP AUTH (over TLS: smtp.tls_cert_file)."
            )
        )
    return found


def probe_recipient(settings: Settings) -> str | None:
    """An address reports and received faxes go to, to ask the relay RCPT TO about."""
    for box in settings.mailboxes:
        for address in [*box.deliver_to, *box.senders]:
            if "@" in address and "*" not in address:
                return address
    return settings.admin_address or None


def relay(settings: Settings, probe: RelayProbe, recipient: str | None) -> list[Finding]:
    r = settings.relay
    where = f"{r.host}:{r.port}"
    reply = probe.mail_reply
    if not probe.mail_taken:
        # Postfix and aiosmtpd: "530 5.7.0 Must issue a STARTTLS command first"; Microsoft 365:
        # "451 5.7.3 STARTTLS is required to send mail", "530 5.7.57 Client not authenticated".
        text = reply.lower()
        wants_tls = "starttls" in text or " tls " in f" {text} " or " 5.7.3 " in f" {text} "
        wants_auth = "auth" in text or " 5.7.57 " in f" {text} "
        needs_something = reply.startswith("530")
        if not probe.encrypted and (
            wants_tls or (needs_something and probe.offers_starttls and not wants_auth)
        ):
            return [
                Finding(
                    f"relay: {where} takes mail only after STARTTLS (it answered MAIL FROM:<> with "
                    f'"{reply}"), but relay.tls is "none", so every report and received fax would be '
                    f'refused: set relay.tls = "starttls" (or "implicit" for port 465).',
                    status=2,
                )
            ]
        if not probe.signed_in and (wants_auth or needs_something):
            offered = f"; it offers AUTH {' '.join(probe.auth_methods)}" if probe.auth_methods else ""
            tls = "" if probe.encrypted else ' (and relay.tls = "starttls": passwords only over TLS)'
            return [
                Finding(
                    f"relay: {where} takes mail only from a client that signs in (it answered MAIL "
                    f'FROM:<> with "{reply}"{offered}), but relay.username is empty, so every report '
                    "and received fax would be refused: set relay.username and relay.password "
                    f"(FAXGW_RELAY__PASSWORD or FAXGW_RELAY__PASSWORD_FILE){tls}.",
                    status=2,
                )
            ]
        return [
            Finding(
                f'relay: {where} refused MAIL FROM:<> (the null sender reports go out with) with "{reply}"; '
                "reports would not go out: allow the gateway to send with a null sender there.",
                status=2,
            )
        ]
    found = []
    if recipient and probe.rcpt_reply.startswith("5"):
        sign_in = ""
        if not probe.signed_in:
            sign_in = "; set relay.username and relay.password, or let the relay take the gateway's mail"
        found.append(
            Finding(
                f'relay: {where} refused to take mail for {recipient} (it answered "{probe.rcpt_reply}"), '
                f"so reports and received faxes to it would be refused{sign_in}.",
                status=2,
            )
        )
    host = split_host_port(f"{r.host}:0")[0]
    if not probe.encrypted and probe.offers_starttls and not _loopback(host):
        found.append(
            Finding(
                f'relay: {where} offers STARTTLS but relay.tls is "none", so reports and received faxes '
                'cross the network unencrypted: set relay.tls = "starttls".'
            )
        )
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

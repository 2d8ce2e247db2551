"""The one typed settings root, built once at start-up and passed down.

Sources, highest priority first:

1. command-line flags (passed in as ``overrides``),
2. environment variables ``FAXGW_...`` (nested with ``__``, e.g. ``FAXGW_EFAX__APP_ID``),
   and secrets read from files named by ``FAXGW_..._FILE`` (e.g. ``FAXGW_EFAX__API_KEY_FILE``),
3. a TOML file: ``--config PATH``, else ``$FAXGW_CONFIG``, else ``config/gateway.toml`` when present,
4. the defaults below.

Every setting carries its unit in its name or type, and a description (checked by
``tests/unit/test_settings.py``). Secrets are ``SecretStr`` and never appear in
``repr``, logs or errors. A bad value stops start-up with a sentence that names the
key (``ConfigError``). The settings are not changed once built: what start-up adds
(the simulator's demo mailbox) goes into a copy.

Renamed keys: ``dispatch.lease_s``, ``.heartbeat_s``, ``.poll_idle_s``,
``.backoff_initial_s``, ``.backoff_max_s`` and ``.lifetime_s`` govern every worker and
live in ``[workers]``; the old names are still read (``workers.*`` wins when both are
set), and ``deprecations()`` words them for the start-up log and ``fax-gateway check``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.core.notices import from_field
from gateway.core.passwords import parse_hash
from gateway.core.tracking import TrackingSchedule

ENV_PREFIX = "FAXGW_"
DEFAULT_CONFIG = Path("config/gateway.toml")


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` says which key and why."""


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, for example 127.0.0.1:2525")
    return value


def split_host_port(value: str) -> tuple[str, int]:
    """``"[::1]:25"`` or ``"127.0.0.1:25"`` -> (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmtpSettings(_Section):
    listen: str = Field(
        "127.0.0.1:2525", description="host:port of the SMTP listener; port 0 picks a free one"
    )
    hostname: str = Field("fax-gateway", description="name the server gives in its greeting")
    trusted_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="CIDR networks that may fax without SMTP AUTH (scanners, a local MTA)",
    )
    max_message_bytes: int = Field(
        50_000_000, gt=0, description="largest mail accepted, advertised with SIZE"
    )
    max_recipients: int = Field(10, gt=0, le=50, description="most fax recipients in one mail (eFax: 50)")
    session_timeout_s: float = Field(
        300, gt=0, description="seconds a session may wait between two commands before it is closed"
    )
    data_timeout_s: float = Field(
        600, gt=0, description="seconds the whole DATA transfer of one mail may take (trickling is cut off)"
    )
    tls_cert_file: str = Field(
        "", description="PEM certificate chain for STARTTLS and implicit TLS; empty: no TLS"
    )
    tls_key_file: str = Field("", description="PEM private key; empty: the key is in tls_cert_file")
    tls_min_version: Literal["1.0", "1.1", "1.2", "1.3"] = Field(
        "1.2", description="oldest TLS version accepted; lower only for old scanners"
    )
    implicit_tls_listen: str = Field(
        "", description="host:port of a second listener speaking TLS from the first byte (port 465 style)"
    )
    require_tls: bool = Field(
        False, description="clients outside trusted_networks must STARTTLS before anything else"
    )
    max_sessions: int = Field(100, gt=0, description="SMTP sessions open at the same time, all clients")
    max_sessions_per_ip: int = Field(
        20, gt=0, description="sessions open at once from one client address (trusted networks exempt)"
    )
    reserved_trusted_sessions: int = Field(
        10,
        ge=0,
        description=(
            "of max_sessions, sessions only trusted_networks may use: clients outside them get "
            "421 4.7.0 once max_sessions minus this many are open (scanners and the local MTA "
            "still get in during a flood); at most half of max_sessions is kept"
        ),
    )
    hard_error_limit: int = Field(
        20,
        ge=0,
        description=(
            "refused commands (4xx/5xx replies) a session may collect without a mail being "
            "accepted before it is closed with 421 4.7.0 (Postfix's smtpd_hard_error_limit); 0: no limit"
        ),
    )
    auth_failure_delay_s: float = Field(
        1.0,
        ge=0,
        description=(
            "seconds a sign-in waits, after one failed sign-in from the same client address or "
            "for the same user name, before its password is checked; doubles with each further "
            "failure, up to auth_failure_max_delay_s; 0: no delay"
        ),
    )
    auth_failure_max_delay_s: float = Field(
        30.0, ge=0, description="the longest wait auth_failure_delay_s grows to, seconds"
    )
    auth_lockout_failures: int = Field(
        10,
        ge=0,
        description=(
            "failed sign-ins from one client address (IPv6: its /64) or for one user name within "
            "auth_lockout_s after which its sign-ins are refused (454 4.7.0) for auth_lockout_s; 0: never"
        ),
    )
    auth_lockout_s: float = Field(
        900,
        gt=0,
        description="seconds failed sign-ins are counted, and a lockout lasts",
    )
    auth_hash_threads: int = Field(
        2,
        ge=1,
        le=16,
        description=(
            "threads that check passwords (scrypt), apart from the ones that read and convert "
            "mails, so a busy conversion cannot hold up a sign-in"
        ),
    )
    max_header_bytes: int = Field(262_144, gt=0, description="largest header block of a mail, bytes")
    max_headers: int = Field(500, gt=0, description="most header fields in one mail")
    reader_processes: int | None = Field(
        None,
        ge=0,
        le=64,
        description=(
            "confined child processes kept ready to read mails (every mail is parsed in one, "
            "never in the gateway's process); unset: the number of cores, at least 2; 0 is "
            "taken as 1"
        ),
    )
    reader_processes_max: int | None = Field(
        None,
        ge=1,
        le=256,
        description=(
            "most mails read at once, each in its own child; more wait in line; unset: 4 x reader_processes"
        ),
    )
    reader_cpu_s: float = Field(
        30, gt=0, description="CPU seconds reading one mail may take; more: refused with 554 5.6.0"
    )
    reader_timeout_s: float = Field(
        40,
        gt=0,
        description=(
            "seconds reading one mail may take (waiting for a LibreOffice turn not counted); "
            "more: refused with 554 5.6.0"
        ),
    )
    reader_memory_mb: int = Field(
        1024,
        ge=256,
        description="memory (address space) one reader may use, MB; a mail needing more: 552 5.3.4",
    )
    reader_memory_total_mb: int = Field(
        640,
        ge=128,
        description=(
            "memory all readers together (LibreOffice counted) may grow above idle, MB; past it "
            "the largest is stopped and its mail answered 452 4.3.1 (sent again later)"
        ),
    )
    office_conversions: int = Field(
        1, ge=1, le=32, description="LibreOffice conversions at once, all mails together; more wait in line"
    )
    reader_user: str = Field(
        "faxgw-reader",
        description=(
            "user the reader processes run as when the gateway runs as root (unknown: nobody); "
            "otherwise they run as the gateway's user"
        ),
    )

    partial_window_s: float = Field(
        3600, gt=0, description="how long the pieces of a split (message/partial) mail are kept"
    )

    _check_listen = field_validator("listen")(staticmethod(_host_port))

    @field_validator("implicit_tls_listen")
    @classmethod
    def _implicit_listen(cls, value: str) -> str:
        return _host_port(value) if value else value

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _tls_needs_a_certificate(self) -> SmtpSettings:
        if not self.tls_cert_file:
            if self.implicit_tls_listen:
                raise ValueError("implicit_tls_listen needs tls_cert_file (and tls_key_file)")
            if self.require_tls:
                raise ValueError("require_tls needs tls_cert_file (and tls_key_file)")
            if self.tls_key_file:
                raise ValueError("tls_key_file is set but tls_cert_file is empty")
        return self


class EfaxSettings(_Section):
    base_url: str = Field("https://api.securedocex.com", description="eFax Enterprise API root")
    app_id: str = Field("", description="eFax App ID; empty runs the built-in simulator")
    api_key: SecretStr = Field(SecretStr(""), description="eFax API key")
    connect_timeout_s: float = Field(10, gt=0, description="seconds to wait for a connection to eFax")
    read_timeout_s: float = Field(60, gt=0, description="seconds to wait for each read of eFax's answer")
    write_timeout_s: float = Field(120, gt=0, description="seconds to wait for each write of a request")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local simulator)")
        return value.rstrip("/")

    @property
    def simulated(self) -> bool:
        return not self.app_id


class RelaySettings(_Section):
    host: str = Field("", description="SMTP relay for mail out; empty writes to the Maildir")
    port: int = Field(587, ge=1, le=65535, description="the relay's TCP port")
    tls: Literal["starttls", "implicit", "none"] = Field(
        "starttls", description="starttls (required, port 587), implicit (port 465) or none (plain text)"
    )
    username: str = Field("", description="SMTP AUTH user name at the relay; empty: no AUTH")
    password: SecretStr = Field(SecretStr(""), description="SMTP AUTH password at the relay (or ..._FILE)")
    timeout_s: float = Field(60, gt=0, description="seconds one relay connection or command may take")
    maildir: Path = Field(Path("var/mail"), description="where mail goes when no relay is set")
    from_address: str = Field(
        "fax-gateway@fax.local",
        description=(
            "From: of reports and received faxes (and the envelope sender of received faxes); "
            "an address of your own domain that mail servers accept, not one in fax_domain"
        ),
    )
    from_name: str = Field("Fax gateway", description="the display name beside from_address; empty: none")
    max_message_bytes: int = Field(
        25_000_000, gt=0, description="largest mail the relay takes; bigger received faxes are announced"
    )

    @property
    def from_header(self) -> str:
        """``"Fax gateway" <fax-gateway@example.com>``: the From: of the mail the gateway writes."""
        return from_field(self.from_name, self.from_address)


class DatabaseSettings(_Section):
    url: str = Field(
        "sqlite:///var/gateway.db",
        description=(
            "sqlite:///relative or sqlite:////absolute (one instance), or "
            "postgresql://user@host:port/db (several instances; the password here or in password)"
        ),
    )
    password: SecretStr = Field(
        SecretStr(""), description="the PostgreSQL password when the url has none (or ..._FILE)"
    )
    keep_days: float = Field(
        30,
        ge=0,
        description=(
            "days the bytes of a finished fax are kept (the mail and its documents once its "
            "dispatch has ended; a received fax's PDF once mailed); its record stays; 0: forever"
        ),
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///path or postgresql://user:password@host:port/database")
        return value


class HttpSettings(_Section):
    listen: str = Field(
        "127.0.0.1:8025", description="host:port for /healthz, /metrics, /webhooks/efax and /admin"
    )
    session_secret: SecretStr = Field(
        SecretStr(""),
        description=(
            "key that signs the admin page's session cookie (32+ characters, or ..._FILE); "
            "empty: a random key per process, so sign-ins end at a restart"
        ),
    )
    session_max_age_s: int = Field(28_800, ge=60, description="an admin sign-in lasts this long")
    cookie_secure: bool = Field(
        False, description="mark the session cookie Secure (set it when the page is served over HTTPS)"
    )
    login_failures: int = Field(
        5, ge=1, description="failed sign-ins per address or admin name in 15 minutes before a pause"
    )

    _check_listen = field_validator("listen")(staticmethod(_host_port))


class InboundSettings(_Section):
    poll_interval_s: int = Field(60, ge=30, description="how often each mailbox's received list is read")
    workers: int = Field(2, ge=1, le=32, description="received faxes mailed at the same time")
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC key agreed with eFax; empty: webhook off"
    )
    webhook_header: str = Field("X-HMAC-Signature", description="header carrying the HMAC-SHA256 signature")
    webhook_max_bytes: int = Field(1_000_000, gt=0, description="largest webhook body accepted")
    silence_alert_h: float = Field(
        0,
        ge=0,
        description=(
            "hours without a received fax after which a mailbox that usually receives is reported "
            "to admin_address and its admins (once, and once when faxes come again); 0: off"
        ),
    )
    silence_usual_faxes: int = Field(
        3,
        ge=1,
        description="faxes received in the silence_alert_h hours before it: a mailbox that usually receives",
    )


class TrackingSettings(_Section):
    first_check_s: float = Field(20, gt=0, description="first status read after submission")
    max_interval_s: float = Field(300, gt=0, description="status reads back off up to this interval")
    unconfirmed_after_s: float = Field(86_400, gt=0, description="send a 'still not confirmed' report once")
    give_up_after_s: float = Field(259_200, gt=0, description="stop tracking a fax after this long")
    max_requests_per_s: float = Field(5.0, gt=0, description="status reads per second, all faxes together")
    workers: int = Field(4, ge=1, le=64, description="status reads in flight at the same time")

    @property
    def schedule(self) -> TrackingSchedule:
        """The four ages above as the pure core takes them (``gateway.core.tracking``)."""
        return TrackingSchedule(
            first_check_s=self.first_check_s,
            max_interval_s=self.max_interval_s,
            unconfirmed_after_s=self.unconfirmed_after_s,
            give_up_after_s=self.give_up_after_s,
        )


class RepliesSettings(_Section):
    enabled: bool = Field(
        True, description="reports carry a reply address (fax-gateway+<token>@fax_domain) to retry or cancel"
    )
    window_s: float = Field(
        604_800, gt=0, description="how long a report's reply address works, seconds (7 days)"
    )


class PolicySettings(_Section):
    allowed_countries: list[str] = Field(
        default_factory=list, description="ISO codes faxes may go to; empty: default_country only"
    )
    allow_numbers: list[str] = Field(
        default_factory=list,
        description="E.164 patterns (+4420794609*) allowed even outside allowed_countries",
    )
    deny_numbers: list[str] = Field(
        default_factory=list, description="E.164 patterns (+1900*) never dialled; deny wins over allow"
    )
    faxes_per_hour_per_sender: int = Field(
        60, ge=0, description="faxes (one per number) per envelope sender in any hour; 0: no limit"
    )
    faxes_per_hour_per_mailbox: int = Field(
        300, ge=0, description="faxes per mailbox (fax number) in any hour; 0: no limit"
    )
    pages_per_day_per_sender: int = Field(
        1000, ge=0, description="pages (times numbers) per envelope sender in any 24 hours; 0: no limit"
    )
    pages_per_day_per_mailbox: int = Field(
        5000, ge=0, description="pages per mailbox in any 24 hours; 0: no limit"
    )
    require_authentication_results: Literal["", "dmarc", "spf", "dmarc_or_spf"] = Field(
        "", description="unauthenticated sessions need this pass in an Authentication-Results header; '': off"
    )
    authserv_id: str = Field(
        "", description="the upstream MTA's authserv-id: only its Authentication-Results headers count"
    )
    failure_alert_after: int = Field(
        0,
        ge=0,
        description=(
            "sent faxes of one mailbox failing in a row with the same error before admin_address and "
            "the mailbox's admins are told (once, and once when a fax is delivered again); 0: off"
        ),
    )
    watchdog_every_s: float = Field(
        300,
        gt=0,
        description="seconds between the watchdog's looks at failures in a row and silent mailboxes",
    )

    @field_validator("allowed_countries")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        return [_region(code) for code in value]

    @field_validator("allow_numbers", "deny_numbers")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not re.fullmatch(r"\+[0-9*?\[\]-]+", pattern):
                raise ValueError(f"{pattern!r} is not an E.164 pattern such as +1900* or +4420794609??")
        return value

    @model_validator(mode="after")
    def _authserv(self) -> PolicySettings:
        if self.require_authentication_results and not self.authserv_id.strip():
            raise ValueError("require_authentication_results needs authserv_id (the upstream MTA's name)")
        return self


class LoggingSettings(_Section):
    mask: bool = Field(True, description="mask numbers and addresses in ordinary logs (audit log: whole)")
    audit_file: str = Field(
        "", description="also append the audit log (JSON lines) here; empty: logger gateway.audit only"
    )


class User(_Section):
    """An SMTP AUTH user (AUTH PLAIN and LOGIN, over TLS only)."""

    name: str = Field(min_length=1, description="the SMTP AUTH user name")
    password_hash: SecretStr = Field(description="made by 'fax-gateway hash-password' (scrypt)")
    mailboxes: list[str] = Field(
        default_factory=list, description="fax_number of each [[mailboxes]] this user may send from"
    )

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: SecretStr) -> SecretStr:
        parse_hash(value.get_secret_value())
        return value


class Admin(_Section):
    """A person who may sign in to the admin page (``/admin`` on ``http.listen``)."""

    name: str = Field(min_length=1, description="the sign-in name, written into the audit log")
    password_hash: SecretStr = Field(description="made by 'fax-gateway hash-password' (scrypt)")
    mailboxes: list[str] = Field(
        default_factory=list,
        description="fax_number of each [[mailboxes]] this admin sees and acts on; empty: all of them",
    )

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: SecretStr) -> SecretStr:
        parse_hash(value.get_secret_value())
        return value


WORKER_KEYS_MOVED = (
    "lease_s",
    "heartbeat_s",
    "poll_idle_s",
    "backoff_initial_s",
    "backoff_max_s",
    "lifetime_s",
)  # once under [dispatch], now [workers]: the old names are still read


class WorkersSettings(_Section):
    """What governs every worker (dispatch, track, report, receive, deliver), not one stage."""

    lease_s: float = Field(
        30,
        ge=5,
        description=(
            "seconds a claimed job stays its worker's without a heartbeat; the process renews "
            "its leases every heartbeat_s, and a lease silent this long is taken over by any "
            "gateway sharing the store (the work of a dead instance goes on within about this)"
        ),
    )
    heartbeat_s: float = Field(5, gt=0, description="seconds between renewals of a process's leases")
    poll_idle_s: float = Field(1.0, gt=0, description="seconds between looks for due work by an idle worker")
    backoff_initial_s: float = Field(
        5, gt=0, description="seconds before the first retry of a job that failed for now; doubles each time"
    )
    backoff_max_s: float = Field(900, gt=0, description="seconds between retries at most, however many")
    lifetime_s: float = Field(
        86_400, gt=0, description="seconds a job is retried at most (a fax: then its failure is reported)"
    )
    max_crashes: int = Field(
        3,
        ge=1,
        description=(
            "times a job's handler may fail unexpectedly (a crash, or its process dying while it "
            "held the job) before the job is held for an administrator (fax-gateway queue retry ID)"
        ),
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkersSettings:
        if self.heartbeat_s * 3 > self.lease_s:
            raise ValueError(
                "heartbeat_s must be at most a third of lease_s, or leases run out between beats"
            )
        return self


class DispatchSettings(_Section):
    workers: int = Field(4, ge=1, le=64, description="faxes submitted to eFax at the same time")
    reconcile_window_s: float = Field(
        900,
        ge=0,
        description=(
            "after a POST /faxes of unknown outcome, seconds the dispatcher keeps looking for the "
            "fax in eFax's sent list before it holds the job (it never resends on its own)"
        ),
    )
    reconcile_every_s: float = Field(60, gt=0, description="seconds between two looks at the sent list")
    # The old names of workers.*: still read, with a deprecation line at start.
    lease_s: float | None = Field(None, ge=5, description="seconds; deprecated: now workers.lease_s")
    heartbeat_s: float | None = Field(None, gt=0, description="seconds; deprecated: now workers.heartbeat_s")
    poll_idle_s: float | None = Field(None, gt=0, description="seconds; deprecated: now workers.poll_idle_s")
    backoff_initial_s: float | None = Field(
        None, gt=0, description="seconds; deprecated: now workers.backoff_initial_s"
    )
    backoff_max_s: float | None = Field(
        None, gt=0, description="seconds; deprecated: now workers.backoff_max_s"
    )
    lifetime_s: float | None = Field(None, gt=0, description="seconds; deprecated: now workers.lifetime_s")


class Mailbox(_Section):
    user_id: str = Field(description="the eFax user-id header for this number")
    fax_number: str = Field(description="the eFax number this mailbox sends from and receives on")
    senders: list[str] = Field(default_factory=list, description="addresses or *@domain allowed to fax")
    deliver_to: list[str] = Field(default_factory=list, description="who gets this number's received faxes")
    cover: Literal["auto", "always", "never"] = Field(
        "auto", description="cover page: auto (when the mail has attachments and text), always, never"
    )
    reports: Literal["all", "failures"] = Field("all", description="which outcome reports senders get")
    report_attachment: Literal["confirmation", "confirmation+fax", "none"] = Field(
        "confirmation",
        description=(
            "what a delivered report carries: a one-page transmission confirmation PDF per fax, "
            "that and the faxed documents themselves, or nothing"
        ),
    )
    timezone: str = Field(
        "", description="IANA zone for this mailbox's confirmations beside UTC; empty: the top-level timezone"
    )
    retention: Literal["keep", "delete_after_delivery"] = Field(
        "keep", description="what happens to a received fax at eFax once it was mailed"
    )
    deliver_mode: Literal["together", "separately"] = Field(
        "together", description="one mail to all deliver_to addresses, or one mail each"
    )
    digest: bool = Field(
        False,
        description=(
            "mail admins (or admin_address) a daily digest of yesterday: faxes sent, delivered, "
            "failed (with reasons), received; mails held"
        ),
    )
    admins: list[str] = Field(
        default_factory=list,
        description="told beside admin_address when this mailbox's faxes fail in a row or stop coming in",
    )

    @field_validator("timezone")
    @classmethod
    def _mailbox_zone(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Berlin") from err
        return value

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        """The mailbox's own zone, else ``default`` (the top-level ``timezone``)."""
        return ZoneInfo(self.timezone) if self.timezone else default


def _digits(number: str) -> str:
    """``+1 (323) 555-0100`` -> ``13235550100``: fax numbers compared as digits."""
    return "".join(ch for ch in number if ch.isdigit())


def _region(code: str) -> str:
    code = code.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{code!r} is not an ISO country code phonenumbers knows")
    return code


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    fax_domain: str = Field("fax.local", description="recipients are <number>@fax_domain")
    default_country: str = Field("US", description="how national numbers are read")
    timezone: str = Field("UTC", description="IANA zone for times in reports and received-fax mails")
    admin_address: str = Field(
        "",
        description=(
            "told when a received fax cannot be delivered to an address, and by the watchdog "
            "(policy.failure_alert_after, inbound.silence_alert_h)"
        ),
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings, description="[smtp]: mail in")
    efax: EfaxSettings = Field(default_factory=EfaxSettings, description="[efax]: the eFax Enterprise API")
    relay: RelaySettings = Field(
        default_factory=RelaySettings, description="[relay]: mail out (reports, received faxes)"
    )
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="[database]: the store and how long it keeps work"
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings, description="[http]: health, metrics, the webhook and the admin page"
    )
    inbound: InboundSettings = Field(
        default_factory=InboundSettings, description="[inbound]: received faxes, polled and mailed"
    )
    tracking: TrackingSettings = Field(
        default_factory=TrackingSettings, description="[tracking]: status reads of faxes sent"
    )
    replies: RepliesSettings = Field(
        default_factory=RepliesSettings, description="[replies]: acting on a fax by replying to its report"
    )
    policy: PolicySettings = Field(
        default_factory=PolicySettings, description="[policy]: destinations and sending limits"
    )
    dispatch: DispatchSettings = Field(
        default_factory=DispatchSettings, description="[dispatch]: handing faxes to eFax"
    )
    workers: WorkersSettings = Field(
        default_factory=WorkersSettings,
        description="[workers]: leases, polling, retries and crashes of every worker",
    )
    logging: LoggingSettings = Field(
        default_factory=LoggingSettings, description="[logging]: logs and the audit log"
    )
    mailboxes: list[Mailbox] = Field(
        default_factory=list, description="[[mailboxes]]: one per eFax user (fax number)"
    )
    users: list[User] = Field(default_factory=list, description="[[users]]: SMTP AUTH users")
    admins: list[Admin] = Field(
        default_factory=list, description="[[admins]]: who may sign in to the admin page"
    )

    _check_country = field_validator("default_country")(staticmethod(_region))

    @model_validator(mode="before")
    @classmethod
    def _worker_keys_under_dispatch(cls, data: Any) -> Any:
        """``dispatch.lease_s`` and the rest of ``WORKER_KEYS_MOVED`` also set ``workers.*``,
        unless ``workers`` sets them itself."""
        if not isinstance(data, dict):
            return data
        dispatch = data.get("dispatch")
        if not isinstance(dispatch, dict):
            return data
        moved = {k: dispatch[k] for k in WORKER_KEYS_MOVED if dispatch.get(k) is not None}
        workers = data.get("workers", {})
        if not moved or not isinstance(workers, dict):
            return data
        return {**data, "workers": {**moved, **workers}}

    def deprecations(self) -> list[str]:
        """One sentence per old key that is set (for the start-up log and ``check``)."""
        return [
            f"dispatch.{key} is now workers.{key} (it governs every worker); the old name still "
            f"works for now: move it to [workers]"
            for key in WORKER_KEYS_MOVED
            if getattr(self.dispatch, key) is not None
        ]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Berlin") from err
        return value

    @model_validator(mode="after")
    def _users_name_mailboxes(self) -> Settings:
        numbers = {_digits(m.fax_number) for m in self.mailboxes}
        names: set[str] = set()
        for index, user in enumerate(self.users):
            if user.name in names:
                raise ValueError(f"users[{index}]: the name {user.name!r} is used twice")
            names.add(user.name)
            for number in user.mailboxes:
                if _digits(number) not in numbers:
                    raise ValueError(
                        f"users[{index}] ({user.name}): {number} is not the fax_number of any [[mailboxes]]"
                    )
        admins: set[str] = set()
        for index, admin in enumerate(self.admins):
            if admin.name in admins:
                raise ValueError(f"admins[{index}]: the name {admin.name!r} is used twice")
            admins.add(admin.name)
            for number in admin.mailboxes:
                if _digits(number) not in numbers:
                    raise ValueError(
                        f"admins[{index}] ({admin.name}): {number} is not the fax_number of any [[mailboxes]]"
                    )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("fax_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return value.strip().lower().rstrip(".")

    @property
    def allowed_countries(self) -> frozenset[str]:
        return frozenset(self.policy.allowed_countries or [self.default_country])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _EnvWithoutFiles(settings_cls),
            _SecretFileSource(settings_cls),
        ]
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


class _EnvWithoutFiles(EnvSettingsSource):
    """The environment, less the ``..._FILE`` names that _SecretFileSource reads."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in super()._load_env_vars().items() if not k.endswith("_file")}


class _SecretFileSource(PydanticBaseSettingsSource):
    """``FAXGW_EFAX__API_KEY_FILE=/run/secrets/key`` -> ``efax.api_key`` = the file's text."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, path in os.environ.items():
            if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")):
                continue
            keys = name.removeprefix(ENV_PREFIX).removesuffix("_FILE").lower().split("__")
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ConfigError(f"{name}: cannot read the secret file {path}: {err.strerror}") from err
            node = found
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
        return found


def config_path(explicit: Path | None) -> Path | None:
    """Which TOML file to read: explicit, then $FAXGW_CONFIG, then config/gateway.toml."""
    if explicit is not None:
        return explicit
    env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings root, or raise ConfigError naming the bad key."""
    path = config_path(config)
    if path is not None and not path.is_file():
        raise ConfigError(f"the configuration file {path} does not exist")
    cls: type[Settings] = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}}
    )
    try:
        return cls(**(overrides or {}))
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None
    except ValueError as err:  # TOML syntax errors
        raise ConfigError(f"the configuration file {path} cannot be read: {err}") from None


def describe_validation_error(err: ValidationError) -> str:
    sentences = []
    for item in err.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "is not a known setting"
        elif item["type"] == "missing":
            message = "is required"
        sentences.append(f"configuration key {key}: {message}.")
    return " ".join(sentences)

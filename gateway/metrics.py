"""Prometheus metrics, one registry per running gateway (no module-level state).

Names and labels never carry numbers, addresses or secrets. Counters are bumped
where things happen; the gauges (jobs by kind and state, poll lag) are refreshed
from the store when ``/metrics`` is scraped (``refresh``).

Who calls what:

- eFax client: ``observe_efax(route, outcome, seconds)`` through ``EfaxClient.on_call``
  (latency histogram; errors counted when the outcome is not a 2xx status).
- SMTP handler: ``smtp_session_opened()`` once per connection,
  ``smtp_refusal(code)`` for every 4xx/5xx reply it gives, ``smtp_mail_accepted()``
  for every 250 after DATA.
- receiver / deliverer: ``faxes_received``, ``received_delivered``, ``received_failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

JOB_KINDS = ("dispatch", "track", "report", "deliver")
JOB_STATES = ("queued", "active", "deferred", "done", "failed", "held", "dead")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.smtp_sessions = Counter("faxgw_smtp_sessions", "SMTP sessions opened", registry=r)
        self.smtp_accepted = Counter("faxgw_smtp_accepted", "mails accepted (250)", registry=r)
        self.smtp_refused = Counter("faxgw_smtp_refused", "SMTP refusals by reply code", ["code"], registry=r)
        self.smtp_read = Counter(
            "faxgw_smtp_mails_read",
            "mails parsed and their documents found, by where: reader (a child process), loop, thread",
            ["where"],
            registry=r,
        )
        self.faxes_submitted = Counter("faxgw_faxes_submitted", "faxes handed to eFax", registry=r)
        self.faxes_final = Counter(
            "faxgw_faxes_final", "sent faxes that reached a final state", ["outcome"], registry=r
        )
        self.faxes_received = Counter("faxgw_faxes_received", "received faxes recorded", registry=r)
        self.received_delivered = Counter(
            "faxgw_received_delivered", "received faxes mailed to their inboxes", registry=r
        )
        self.received_failed = Counter(
            "faxgw_received_failed",
            "received faxes (or one address of one) that could not be mailed",
            ["reason"],
            registry=r,
        )
        self.efax_calls = Histogram(
            "faxgw_efax_call_seconds", "eFax API call latency", ["route", "outcome"], registry=r
        )
        self.efax_errors = Counter(
            "faxgw_efax_errors",
            "eFax API calls that failed, by route and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.poll_lag = Gauge(
            "faxgw_poll_lag_seconds", "seconds since the oldest mailbox was last polled", registry=r
        )
        self.jobs = Gauge("faxgw_jobs", "jobs in the store", ["kind", "state"], registry=r)
        self.reports_sent = Counter("faxgw_reports_sent", "reports mailed to senders", registry=r)

    # -- hooks for the SMTP handler ------------------------------------------------
    def smtp_session_opened(self) -> None:
        self.smtp_sessions.inc()

    def smtp_refusal(self, code: int) -> None:
        self.smtp_refused.labels(code=str(code)).inc()

    def smtp_mail_accepted(self) -> None:
        self.smtp_accepted.inc()

    def smtp_mail_read(self, where: str) -> None:
        self.smtp_read.labels(where=where).inc()

    # -- hook for the eFax client (EfaxClient.on_call) --------------------------------
    def observe_efax(self, route: str, outcome: str, seconds: float) -> None:
        """One eFax request: its route template, status code or error name, and duration."""
        self.efax_calls.labels(route=route, outcome=outcome).observe(seconds)
        if not (outcome.isdigit() and outcome.startswith("2")):
            self.efax_errors.labels(route=route, outcome=outcome).inc()

    # -- gauges refreshed at scrape time ------------------------------------------------
    def refresh(
        self,
        *,
        job_counts: Mapping[tuple[str, str], int],
        last_polls: Iterable[float],
        now: float,
    ) -> None:
        """Jobs by kind and state (zero included), and the oldest mailbox's poll age."""
        kinds = sorted({*JOB_KINDS, *(k for k, _ in job_counts)})
        states = sorted({*JOB_STATES, *(s for _, s in job_counts)})
        for kind in kinds:
            for state in states:
                self.jobs.labels(kind=kind, state=state).set(job_counts.get((kind, state), 0))
        ages = [max(0.0, now - at) for at in last_polls]
        self.poll_lag.set(max(ages) if ages else 0.0)

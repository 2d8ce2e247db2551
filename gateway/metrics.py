"""Prometheus metrics, one registry per running gateway (no module-level state).

Names and labels never carry numbers, addresses or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.smtp_sessions = Counter("faxgw_smtp_sessions", "SMTP sessions opened", registry=r)
        self.smtp_accepted = Counter("faxgw_smtp_accepted", "mails accepted (250)", registry=r)
        self.smtp_refused = Counter(
            "faxgw_smtp_refused", "SMTP refusals by reply code", ["code"], registry=r
        )
        self.faxes_submitted = Counter("faxgw_faxes_submitted", "faxes handed to eFax", registry=r)
        self.faxes_final = Counter(
            "faxgw_faxes_final", "sent faxes that reached a final state", ["outcome"], registry=r
        )
        self.faxes_received = Counter("faxgw_faxes_received", "received faxes recorded", registry=r)
        self.received_delivered = Counter(
            "faxgw_received_delivered", "received faxes mailed to their inboxes", registry=r
        )
        self.efax_calls = Histogram(
            "faxgw_efax_call_seconds", "eFax API call latency", ["route", "outcome"], registry=r
        )
        self.poll_lag = Gauge(
            "faxgw_poll_lag_seconds", "seconds since the oldest mailbox was last polled", registry=r
        )
        self.jobs = Gauge("faxgw_jobs", "jobs in the store", ["kind", "state"], registry=r)
        self.reports_sent = Counter("faxgw_reports_sent", "reports mailed to senders", registry=r)

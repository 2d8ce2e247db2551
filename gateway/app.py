"""``fax-gateway serve``: every stage in one process, wired through the store.

Start order: a check that every place it writes to can be written (``gateway.datadir``),
store, eFax (the built-in simulator when no App ID is configured), mail
out, workers, HTTP, and last the SMTP listener, so nothing is accepted before it can
be stored and worked on. Stop order is the reverse: stop accepting, let workers finish
the job in hand, give back what they hold, close the store. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit import Audit
from gateway.convert.fonts import find_text_fonts
from gateway.convert.office import find_office_converter
from gateway.core.documents import ExtractionLimits
from gateway.core.retry import RetryPolicy
from gateway.datadir import check_data_paths
from gateway.efax.client import EfaxClient
from gateway.logs import event
from gateway.mail.relay import MailSender, make_sender
from gateway.metrics import Metrics
from gateway.settings import Mailbox, Settings, split_host_port
from gateway.smtp.handler import FaxHandler
from gateway.smtp.reading import MailReaders, ReaderBudget
from gateway.smtp.server import bound_port, start_smtp_listeners
from gateway.store import Store, StoreError, open_store
from gateway.store.base import JobKind
from gateway.workers.base import Heartbeat, Worker
from gateway.workers.dispatch import Dispatcher
from gateway.workers.purge import Purger
from gateway.workers.recovery import recover_orphans
from gateway.workers.watchdog import Watchdog

log = logging.getLogger(__name__)

SIMULATOR_APP_ID = "simulator"
DEMO_SENDER = "demo@example.com"
SHUTDOWN_GRACE_S = 20.0


def with_demo_mailbox(settings: Settings) -> Settings:
    """The settings ``serve`` runs with: as given, or, on the built-in simulator with no
    mailbox configured, a copy with one demo mailbox (``demo@example.com`` may fax from
    13235550100 and gets what it receives), so the first test fax needs no configuration."""
    if not settings.efax.simulated or settings.mailboxes:
        return settings
    demo = Mailbox(
        user_id="demo-user", fax_number="13235550100", senders=[DEMO_SENDER], deliver_to=[DEMO_SENDER]
    )
    return settings.model_copy(update={"mailboxes": [demo]})


@dataclass
class Gateway:
    """The running parts of one ``serve``; ``start()``/``stop()`` or ``async with``."""

    settings: Settings
    store: Store | None = None
    efax: EfaxClient | None = None
    mail: MailSender | None = None
    simulator: Any = None
    smtp_server: asyncio.Server | None = None
    smtp_tls_server: asyncio.Server | None = None  # implicit TLS (smtp.implicit_tls_listen)
    audit: Audit | None = None
    handler: FaxHandler | None = None  # the SMTP handler: its refusal summaries and AUTH threads
    readers: MailReaders | None = None  # confined child processes that parse mails
    purger: Purger | None = None  # database.keep_days
    watchdog: Watchdog | None = None  # policy.failure_alert_after, inbound.silence_alert_h
    heartbeat: Heartbeat | None = None  # renews the workers' leases
    http_server: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    workers: list[Worker] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = with_demo_mailbox(self.settings)  # a copy: the settings handed in stay as they are

    @property
    def smtp_port(self) -> int:
        assert self.smtp_server is not None
        return bound_port(self.smtp_server)

    async def start(self) -> None:
        s = self.settings
        for sentence in s.deprecations():  # renamed keys, said once as the process starts
            log.warning("configuration: %s", sentence, extra=event("deprecated setting"))
        check_data_paths(s)  # a read-only data directory: one sentence, exit 2
        self.store = await open_store(s.database.url, password=s.database.password.get_secret_value())
        warm = s.smtp.reader_processes
        self.readers = MailReaders(
            max(2, os.cpu_count() or 1) if warm is None else max(1, warm),
            max_processes=s.smtp.reader_processes_max,
            budget=ReaderBudget(
                cpu_s=s.smtp.reader_cpu_s,
                wall_s=s.smtp.reader_timeout_s,
                memory_bytes=s.smtp.reader_memory_mb * 1024 * 1024,
                office_conversions=s.smtp.office_conversions,
                total_bytes=s.smtp.reader_memory_total_mb * 1024 * 1024,
            ),
            user=s.smtp.reader_user,
        )
        await self.readers.start()  # they warm up while the rest starts
        self.audit = Audit.from_settings(s.logging)
        base_url, app_id, api_key = s.efax.base_url, s.efax.app_id, s.efax.api_key.get_secret_value()
        if s.efax.simulated:
            from gateway.simulator.server import start_simulator

            self.simulator = await start_simulator()
            base_url, app_id, api_key = self.simulator.base_url, SIMULATOR_APP_ID, SIMULATOR_APP_ID
        self.efax = EfaxClient(
            base_url=base_url,
            app_id=app_id,
            api_key=api_key,
            connect_timeout_s=s.efax.connect_timeout_s,
            read_timeout_s=s.efax.read_timeout_s,
            write_timeout_s=s.efax.write_timeout_s,
        )
        self.mail = make_sender(s.relay)
        policy = RetryPolicy(
            initial_s=s.workers.backoff_initial_s,
            maximum_s=s.workers.backoff_max_s,
            lifetime_s=s.workers.lifetime_s,
        )
        for n in range(s.dispatch.workers):
            self.workers.append(
                Dispatcher(
                    self.store,
                    self.efax,
                    s.mailboxes,
                    audit=self.audit,
                    policy=policy,
                    name=f"dispatch-{n}",
                    reconcile_window_s=s.dispatch.reconcile_window_s,
                    reconcile_every_s=s.dispatch.reconcile_every_s,
                    lease_s=s.workers.lease_s,
                    idle_s=s.workers.poll_idle_s,
                    max_crashes=s.workers.max_crashes,
                )
            )
        self.workers.extend(self._tracking_workers())
        self.workers.extend(self._inbound_workers())
        for worker in self.workers:  # a job held after crashes is audited whichever worker held it
            if worker.audit is None:
                worker.audit = self.audit
        await recover_orphans(  # before any worker of ours claims
            self.store, now=time.time(), max_crashes=s.workers.max_crashes, audit=self.audit
        )
        self.heartbeat = Heartbeat(
            self.store,
            self.workers,
            every_s=s.workers.heartbeat_s,
            lease_s=s.workers.lease_s,
        )
        self.tasks.append(asyncio.create_task(self.heartbeat.run(), name=self.heartbeat.name))
        for worker in self.workers:
            self.tasks.append(asyncio.create_task(worker.run(), name=worker.name))
        self.store.listen(self._wake_kind)  # jobs queued by other gateways sharing the store
        if s.database.keep_days > 0:
            self.purger = Purger(self.store, keep_days=s.database.keep_days)
            self.tasks.append(asyncio.create_task(self.purger.run(), name=self.purger.name))
        if Watchdog.wanted(s):
            self.watchdog = Watchdog(self.store, self.mail, s)
            self.tasks.append(asyncio.create_task(self.watchdog.run(), name=self.watchdog.name))
        await self._start_http()
        fonts = find_text_fonts()
        if fonts is None:
            log.warning(
                "DejaVu fonts not found (Debian: fonts-dejavu-core); "
                "text faxes go to eFax as TXT, without a heading",
                extra=event("no text fonts"),
            )
        limits = ExtractionLimits(office_converter=find_office_converter(), text_fonts=fonts)
        handler = self.handler = FaxHandler(
            s,
            self.store,
            limits=limits,
            on_accept=self._nudge_dispatch,
            metrics=self.metrics,
            audit=self.audit,
            readers=self.readers,
        )
        kinds: set[JobKind] = set()
        for worker in self.workers:  # the first of each kind keeps going under a burst of mail
            kind: JobKind | None = getattr(worker, "kind", None)  # the poller has none: it claims no job
            if kind in kinds:
                worker.defer_to = handler.arrivals
            elif kind is not None:
                kinds.add(kind)
        self.smtp_server, self.smtp_tls_server = await start_smtp_listeners(handler, s.smtp)
        self._announce()

    def _tracking_workers(self) -> list[Worker]:
        """Outbound tracking and reports to senders: trackers sharing one rate limit, a reporter."""
        from gateway.workers.report import Reporter
        from gateway.workers.track import Tracker, TrackingShared

        s = self.settings
        assert self.store is not None and self.efax is not None and self.mail is not None
        policy = RetryPolicy(
            initial_s=s.workers.backoff_initial_s,
            maximum_s=s.workers.backoff_max_s,
            lifetime_s=s.workers.lifetime_s,
        )
        reporter = Reporter(
            self.store,
            self.mail,
            s,
            policy=policy,
            metrics=self.metrics,
            name="report-0",
            lease_s=s.workers.lease_s,
            idle_s=s.workers.poll_idle_s,
            max_crashes=s.workers.max_crashes,
        )
        shared = TrackingShared.for_settings(s.tracking)
        trackers: list[Worker] = [
            Tracker(
                self.store,
                self.efax,
                s.tracking,
                shared=shared,
                metrics=self.metrics,
                on_report=reporter.nudge,
                audit=self.audit,
                name=f"track-{n}",
                lease_s=s.workers.lease_s,
                idle_s=s.workers.poll_idle_s,
                max_crashes=s.workers.max_crashes,
            )
            for n in range(s.tracking.workers)
        ]
        from gateway.workers.partials import PartialReaper

        reaper = PartialReaper(
            self.store,
            self.mail,
            from_address=s.relay.from_header,
            window_s=s.smtp.partial_window_s,
            policy=policy,
            name="partial-0",
            lease_s=s.workers.lease_s,
            idle_s=s.workers.poll_idle_s,
            max_crashes=s.workers.max_crashes,
        )
        from gateway.workers.replies import ReplyWorker

        answers = ReplyWorker(
            self.store,
            self.mail,
            s,
            canceller=self.efax,
            policy=policy,
            audit=self.audit,
            on_queued=self._wake_queue,
            name="reply-0",
            lease_s=s.workers.lease_s,
            idle_s=s.workers.poll_idle_s,
            max_crashes=s.workers.max_crashes,
        )
        return [*trackers, reporter, reaper, answers]

    def _inbound_workers(self) -> list[Worker]:
        """Received faxes: the poller and delivery to the mapped inboxes.

        Also times every eFax call into the metrics (``EfaxClient.on_call``).
        """
        from gateway.workers.deliver import Deliverer
        from gateway.workers.receive import Poller

        s = self.settings
        assert self.store is not None and self.efax is not None and self.mail is not None
        self.efax.on_call = self.metrics.observe_efax
        policy = RetryPolicy(
            initial_s=s.workers.backoff_initial_s,
            maximum_s=s.workers.backoff_max_s,
            lifetime_s=s.workers.lifetime_s,
        )
        names = [f"deliver-{n}" for n in range(s.inbound.workers)]
        deliverers: list[Worker] = [
            Deliverer(
                self.store,
                self.efax,
                self.mail,
                s,
                policy=policy,
                metrics=self.metrics,
                name=name,
                lease_s=s.workers.lease_s,
                idle_s=s.workers.poll_idle_s,
                max_crashes=s.workers.max_crashes,
            )
            for name in names
        ]

        def wake_deliverers() -> None:
            for deliverer in deliverers:
                deliverer.nudge()

        poller = Poller(
            self.store,
            self.efax,
            s.mailboxes,
            interval_s=s.inbound.poll_interval_s,
            metrics=self.metrics,
            on_new=wake_deliverers,
            lease_s=s.workers.lease_s,
        )
        return [poller, *deliverers]

    def _wake_kind(self, kind: JobKind) -> None:
        for worker in self.workers:
            if getattr(worker, "kind", None) == kind:
                worker.nudge()

    def _wake_queue(self) -> None:
        """Jobs were made due by hand (the admin page): their workers look now."""
        for kind in (JobKind.DISPATCH, JobKind.TRACK, JobKind.REPORT):
            self._wake_kind(kind)

    def _nudge_dispatch(self) -> None:
        for worker in self.workers:
            if isinstance(worker, Dispatcher):
                worker.nudge()

    async def _start_http(self) -> None:
        """The HTTP side, given what it needs (``HttpContext``) rather than the app."""
        from gateway.http.app import start_http
        from gateway.http.context import HttpContext, Wake
        from gateway.workers.receive import Poller

        assert self.store is not None and self.efax is not None
        poller = next((w for w in self.workers if isinstance(w, Poller)), None)

        def polled_since() -> dict[str, float]:
            if poller is None:
                return {}
            return {mailbox.user_id: poller.started_at for mailbox in poller.mailboxes}

        def fetch(fax_id: str, hint_number: str | None) -> None:
            assert poller is not None
            poller.trigger(fax_id, hint_number=hint_number)

        wake = Wake(
            track=lambda: self._wake_kind(JobKind.TRACK),
            fetch=fetch if poller is not None else None,
            poll=poller.nudge if poller is not None else None,
            queue=self._wake_queue,
        )
        context = HttpContext(
            settings=self.settings,
            store=self.store,
            metrics=self.metrics,
            efax_up=self.efax.health,
            polled_since=polled_since,
            wake=wake,
            readers_ready=lambda: self.readers is not None and self.readers.ready,
            audit=self.audit,
            canceller=self.efax,
        )
        self.http_server = await start_http(context)

    def _announce(self) -> None:
        s = self.settings
        host, _ = split_host_port(s.smtp.listen)
        port = self.smtp_port
        log.info(
            "SMTP listening on %s:%d for <number>@%s",
            host,
            port,
            s.fax_domain,
            extra=event("listening", port=port),
        )
        if self.http_server is not None:
            log.info("HTTP listening on %s", self.http_server.base_url, extra=event("listening"))
            if s.admins:
                log.info(
                    "admin page on %s/admin for %d [[admins]]",
                    self.http_server.base_url,
                    len(s.admins),
                    extra=event("admin page"),
                )
        if self.simulator is not None:
            log.info(
                "no eFax account configured (efax.app_id is empty): using the built-in eFax "
                "simulator at %s; nothing is really faxed",
                self.simulator.base_url,
                extra=event("simulator"),
            )
        if s.relay.host:
            log.info("mail out through %s:%d", s.relay.host, s.relay.port, extra=event("relay"))
        else:
            log.info(
                "mail out is written to the Maildir %s", s.relay.maildir.resolve(), extra=event("maildir")
            )
        sender = s.mailboxes[0].senders[0] if s.mailboxes and s.mailboxes[0].senders else DEMO_SENDER
        log.info(
            "send a test fax: uv run fax-gateway send --smtp %s:%d --from %s --to 13235551212 "
            "--text 'Hello from fax-gateway'",
            host,
            port,
            sender,
            extra=event("hint"),
        )

    async def stop(self) -> None:
        if self.smtp_tls_server is not None:
            self.smtp_tls_server.close()
        if self.smtp_server is not None:
            self.smtp_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.smtp_server.wait_closed(), timeout=2)
        if self.handler is not None:
            self.handler.close()
        if self.readers is not None:
            await self.readers.stop()
        for worker in self.workers:
            worker.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.purger is not None:
            self.purger.stop()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.store is not None:
            for worker in self.workers:
                with contextlib.suppress(StoreError):  # else its leases run out
                    await self.store.release(owner=worker.owner, now=time.time())
        if self.http_server is not None:
            await self.http_server.stop()
        if self.efax is not None:
            await self.efax.aclose()
        if self.mail is not None:
            await self.mail.aclose()
        if self.simulator is not None:
            await self.simulator.stop()
        if self.store is not None:
            await self.store.close()
        if self.audit is not None:
            self.audit.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(settings: Settings, *, started: Callable[[Gateway], Awaitable[None]] | None = None) -> int:
    """Run until SIGTERM or SIGINT; then shut down gracefully and return 0."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    gateway = Gateway(settings)
    try:
        await gateway.start()
        if started is not None:
            await started(gateway)
        await stopping.wait()
        log.info("stopping: no new mail is accepted", extra=event("stopping"))
    finally:
        await gateway.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped", extra=event("stopped"))
    return 0

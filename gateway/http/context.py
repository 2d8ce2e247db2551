"""What the HTTP side is given: a few values and narrow callables, never the application.

``serve`` (``gateway.app``) builds one ``HttpContext`` and hands it to ``start_http``.
The views read and call only what is here, so the HTTP side imports neither the app
nor a worker: the webhook records its trigger in the store and says "look now" through
``Wake``; readiness asks the store, eFax's health and the polls' start times; the admin page
reads the store and cancels through ``canceller``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.audit import Audit
from gateway.metrics import Metrics
from gateway.operations.actions import Canceller
from gateway.settings import Settings
from gateway.store.base import Store


@dataclass(frozen=True)
class Wake:
    """What the webhook may ask of the workers; each call only says "look now"."""

    track: Callable[[], None]  # a track job was made due: the trackers read it now
    # Read this received fax now (fax id, destination number hint, to ask its mailbox
    # first); None when no mailbox receives faxes.
    fetch: Callable[[str, str | None], None] | None = None
    poll: Callable[[], None] | None = None  # read every mailbox now; None likewise
    queue: Callable[[], None] | None = None  # jobs were made due by hand: dispatch, track, report now


@dataclass(frozen=True)
class HttpContext:
    settings: Settings  # http.listen; inbound.webhook_*; inbound.poll_interval_s
    store: Store
    metrics: Metrics
    efax_up: Callable[[], Awaitable[bool]]  # eFax's GET /health says UP
    # Each polled mailbox (user id) and when its reads started counting (the poller's
    # start); empty when no mailbox is polled.
    polled_since: Callable[[], Mapping[str, float]]
    wake: Wake
    audit: Audit | None = None  # the admin page's actions and sign-ins
    canceller: Canceller | None = None  # eFax's cancel request, for the admin page's cancel
    # A reader process is ready to read mail (gateway.smtp.reading); none: SMTP answers 451.
    readers_ready: Callable[[], bool] = lambda: True

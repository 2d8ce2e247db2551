"""``/readyz`` and ``/metrics``: what a load balancer and Prometheus ask the gateway.

Ready means all three hold (503 with the failing check named otherwise):

- ``store``: a write commits (``store.touch``: one row rewritten, fsynced);
- ``efax``: eFax's ``GET /health`` says UP within ``EFAX_PROBE_S`` (3 s);
- ``polls``: every polled mailbox was read successfully within the last three
  ``inbound.poll_interval_s`` (counted from start-up until its first success).

``/metrics`` refreshes the store-derived gauges (jobs by kind and state, poll lag)
and returns the registry in Prometheus text format.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.http.context import HttpContext

EFAX_PROBE_S = 3.0
STALE_POLLS = 3  # intervals


async def last_polls(ctx: HttpContext) -> dict[str, float]:
    """Each polled mailbox's last successful read (or the poller's start)."""
    since = ctx.polled_since()
    if not since:
        return {}
    records = {p.user_id: p for p in await ctx.store.polls()}
    out = {}
    for user_id, started_at in since.items():
        record = records.get(user_id)
        ok_at = record.last_ok_at if record is not None else None
        out[user_id] = ok_at if ok_at is not None else started_at
    return out


async def readiness(ctx: HttpContext) -> dict[str, str]:
    now = time.time()
    checks: dict[str, str] = {}
    try:
        await ctx.store.touch(now=now)
        checks["store"] = "ok"
    except Exception as err:  # reported, not raised: this is a probe
        checks["store"] = f"failing: {type(err).__name__}"
    try:
        up = await asyncio.wait_for(ctx.efax_up(), EFAX_PROBE_S)
    except TimeoutError:
        up = False
    checks["efax"] = "ok" if up else "unreachable"
    checks["readers"] = "ok" if ctx.readers_ready() else "none ready: mails get 451 until one starts"
    limit = STALE_POLLS * ctx.settings.inbound.poll_interval_s
    try:
        stale = {uid: now - at for uid, at in (await last_polls(ctx)).items() if now - at > limit}
        checks["polls"] = "ok"
        if stale:
            checks["polls"] = "stale: " + ", ".join(
                f"{uid} {age:.0f} s ago" for uid, age in sorted(stale.items())
            )
    except Exception as err:
        checks["polls"] = f"failing: {type(err).__name__}"
    return checks


async def readyz(request: Request, ctx: HttpContext) -> Response:
    checks = await readiness(ctx)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def metrics(request: Request, ctx: HttpContext) -> Response:
    ctx.metrics.refresh(
        job_counts=await ctx.store.count_jobs(),
        last_polls=(await last_polls(ctx)).values(),
        now=time.time(),
    )
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""``/admin``: the queue, a mail's story, received faxes, retry and cancel, for a signed-in admin.

Pages (all under ``/admin``; each answers 303 to ``/admin/login`` without a sign-in):

    GET  /                     held, failing, in flight, done today; received faxes (``?days=3``)
    GET  /mail/{id}            a mail's story, as ``fax-gateway queue show`` tells it
    GET  /mail/{id}/retry      what a retry would do, and a button to confirm it (id: the mail,
                               or one of its faxes: then its tracking, as ``queue retry`` does)
    GET  /mail/{id}/cancel     what a cancel would do, and a button to confirm it
    POST /mail/{id}/retry      do it (``gateway.operations.actions``), then back to the story
    POST /mail/{id}/cancel     likewise
    GET  /login, POST /login   sign in; POST /logout  sign out

Who: an ``[[admins]]`` entry (name and a ``fax-gateway hash-password`` hash); nothing else
signs in: no reverse-proxy header is trusted. An admin with ``mailboxes`` sees and acts
on those mailboxes only; the others' mails and faxes are left out whole, and a story of
one of them is answered as unknown (404). The page never shows a setting, a secret or a
password hash.

Protection: the session is a cookie signed with ``http.session_secret`` (random per
process when empty), ``HttpOnly``, ``SameSite=Strict``, path ``/admin``, ``Secure`` with
``http.cookie_secure``; a sign-in lasts ``http.session_max_age_s``. Every POST carries
the session's CSRF token (403 without it). Sign-ins are throttled (``guard.py``,
``http.login_failures``), checked off the event loop, and equally slow for unknown
names. Every sign-in, refused sign-in, sign-out, retry and cancel is an audit line with
the admin's name (``gateway.audit``). Pages are sent with ``Cache-Control: no-store``,
a CSP allowing nothing from elsewhere, and ``X-Frame-Options: DENY``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.core.passwords import hash_password, parse_hash, verify_password
from gateway.http.admin.guard import LoginThrottle, new_token, token_ok
from gateway.http.context import HttpContext
from gateway.logs import event
from gateway.operations import actions
from gateway.operations.overview import queue_overview, received_faxes
from gateway.operations.story import find_story, when
from gateway.settings import Admin

log = logging.getLogger(__name__)

PREFIX = "/admin"
COOKIE = "faxgw_admin"
DEFAULT_DAYS = 3
MAX_DAYS = 30
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ACTIONS = ("retry", "cancel")
MAX_FORM_BYTES = 16_384  # a sign-in or a confirmation is a few hundred bytes
TOO_BIG = "The form is larger than any of this page's forms."
STALE_FORM = "The form's security token is missing or out of date: reload the page and try again."


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


@dataclass(frozen=True)
class Viewer:
    admin: Admin
    user_ids: frozenset[str] | None  # the mailboxes (eFax user ids) this admin may see; None: all

    def sees(self, user_id: str) -> bool:
        return self.user_ids is None or user_id in self.user_ids


def create_admin_app(ctx: HttpContext) -> Starlette:
    settings = ctx.settings
    http = settings.http
    admins = {a.name: a for a in settings.admins}
    deliver_to = {m.user_id: list(m.deliver_to) for m in settings.mailboxes}
    numbers = {m.user_id: m.fax_number for m in settings.mailboxes}
    throttle = LoginThrottle(http.login_failures)
    # Unknown names cost one check too, at the first admin's scrypt cost.
    cost = parse_hash(settings.admins[0].password_hash.get_secret_value())
    decoy = hash_password(secrets.token_bytes(16), n=cost.n, r=cost.r, p=cost.p)
    secret = http.session_secret.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.info(
            "admin page: http.session_secret is not set; sign-ins last until this process stops",
            extra=event("admin sessions"),
        )
    env = Environment(
        loader=PackageLoader("gateway.http.admin", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = settings.zone

    def viewer(request: Request) -> Viewer | None:
        session = request.session
        admin = admins.get(str(session.get("admin", "")))
        since = session.get("since")
        if (
            admin is None
            or not isinstance(since, (int, float))
            or time.time() - since > http.session_max_age_s
        ):
            return None
        if not admin.mailboxes:
            return Viewer(admin, None)
        wanted = {_digits(n) for n in admin.mailboxes}
        return Viewer(
            admin, frozenset(m.user_id for m in settings.mailboxes if _digits(m.fax_number) in wanted)
        )

    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str) or not token:
            token = new_token()
            request.session["csrf"] = token
        return token

    def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values = {"who": None, "error": None, **values}
        page = env.get_template(name).render(
            prefix=PREFIX,
            csrf=csrf(request),
            when=lambda ts: when(ts, zone),
            zone=zone.key,
            number=lambda user_id: numbers.get(user_id, user_id),
            **values,
        )
        return HTMLResponse(page, status_code=status, headers=HEADERS)

    def too_big(request: Request) -> bool:
        """A form without a length, or longer than any of this page's forms."""
        length = request.headers.get("content-length", "")
        return not length.isdigit() or int(length) > MAX_FORM_BYTES

    def peer(request: Request) -> str | None:
        return request.client.host if request.client else None

    def audit(action: str, **fields: Any) -> None:
        if ctx.audit is not None:
            ctx.audit.admin(action, **fields)

    Page = Callable[[Request, Viewer], Awaitable[Response]]

    def signed_in(page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = viewer(request)
            if who is None:
                return RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)
            if request.method == "POST":
                if too_big(request):
                    return render(request, "message.html", 413, who=who, title="Refused", lines=[TOO_BIG])
                form = await request.form(max_files=0, max_fields=10)
                if not token_ok(request.session.get("csrf"), form.get("csrf")):
                    log.warning("admin page: a form without its token", extra=event("admin csrf"))
                    return render(request, "message.html", 403, who=who, title="Refused", lines=[STALE_FORM])
            return await page(request, who)

        return endpoint

    async def login_form(request: Request) -> Response:
        if viewer(request) is not None:
            return RedirectResponse(f"{PREFIX}/", status_code=303, headers=HEADERS)
        return render(request, "login.html")

    async def login(request: Request) -> Response:
        if too_big(request):
            return render(request, "login.html", 413, error=TOO_BIG)
        form = await request.form(max_files=0, max_fields=10)
        name = str(form.get("name", ""))[:200]
        password = str(form.get("password", ""))[:1000]
        client = peer(request) or "?"
        if not token_ok(request.session.get("csrf"), form.get("csrf")):
            return render(request, "login.html", 403, error=STALE_FORM)
        keys = [f"addr {client}", f"name {name.lower()}"]
        wait = throttle.wait_s(keys)
        if wait > 0:
            audit("login refused", admin=name, peer=client, reason="throttled")
            minutes = max(1, round(wait / 60))
            error = f"Too many failed sign-ins from here or for this name: try again in {minutes} minutes."
            return render(request, "login.html", 429, error=error)
        admin = admins.get(name)
        encoded = admin.password_hash.get_secret_value() if admin is not None else decoy
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if admin is None or not ok:
            throttle.failed(keys)
            audit("login refused", admin=name, peer=client, reason="wrong name or password")
            log.warning("admin page: a sign-in refused", extra=event("admin login refused", client=client))
            return render(request, "login.html", 401, error="Wrong name or password.")
        throttle.succeeded(keys)
        request.session.clear()
        request.session.update({"admin": admin.name, "since": time.time(), "csrf": new_token()})
        audit("login", admin=admin.name, peer=client)
        return RedirectResponse(f"{PREFIX}/", status_code=303, headers=HEADERS)

    async def logout(request: Request, who: Viewer) -> Response:
        audit("logout", admin=who.admin.name, peer=peer(request))
        request.session.clear()
        return RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)

    async def overview(request: Request, who: Viewer) -> Response:
        try:
            days = min(MAX_DAYS, max(1, int(request.query_params.get("days", DEFAULT_DAYS))))
        except ValueError:
            days = DEFAULT_DAYS
        now = time.time()
        since = now - days * 86_400
        queue = await queue_overview(ctx.store, now=now, since=since, zone=zone, visible=who.sees)
        received = await received_faxes(
            ctx.store, lambda user_id: deliver_to.get(user_id, []), since=since, visible=who.sees
        )
        return render(request, "overview.html", who=who, queue=queue, received=received, days=days)

    async def story_or_404(request: Request, who: Viewer) -> Any:
        some_id = request.path_params["id"]
        story = await find_story(ctx.store, some_id, zone)
        if (
            story is None
            or request.path_params.get("action", "retry") not in ACTIONS
            or not who.sees(story.message.mailbox_user_id)
        ):
            return render(
                request, "message.html", 404, who=who, title="Not found", lines=[f"No mail or fax {some_id}."]
            )
        return story

    async def story(request: Request, who: Viewer) -> Response:
        found = await story_or_404(request, who)
        if isinstance(found, Response):
            return found
        flash = request.session.pop("flash", None)
        return render(request, "story.html", who=who, story=found, flash=flash or [])

    async def confirm(request: Request, who: Viewer) -> Response:
        found = await story_or_404(request, who)
        if isinstance(found, Response):
            return found
        action, target = request.path_params["action"], request.path_params["id"]
        if action == "retry":
            plan = await actions.retry(ctx.store, target, now=time.time(), dry_run=True)
            lines, possible = list(plan.said), plan.ok
        else:
            cancel = await actions.cancel_plan(ctx.store, target)
            possible = cancel.before_sending or bool(cancel.open_faxes)
            if cancel.before_sending:
                lines = [f"The mail {found.message.id} has not reached eFax yet: it will not be sent."]
            elif cancel.open_faxes:
                lines = [
                    f"eFax will be asked to stop the fax {f.fax_id} to {f.destination} ({f.status}); "
                    "it may still be delivered before eFax stops it."
                    for f in cancel.open_faxes
                ]
            else:
                lines = ["Its faxes have already finished: there is nothing to cancel."]
        return render(
            request,
            "confirm.html",
            who=who,
            story=found,
            action=action,
            target=target,
            lines=lines,
            possible=possible,
        )

    async def act(request: Request, who: Viewer) -> Response:
        found = await story_or_404(request, who)
        if isinstance(found, Response):
            return found
        action, target = request.path_params["action"], request.path_params["id"]
        mail = found.message.id  # the target is the mail or one of its faxes (its tracking)
        source = f"admin page, {who.admin.name}"
        if action == "retry":
            outcome = await actions.retry(ctx.store, target, now=time.time(), source=source)
            if outcome.ok and ctx.wake.queue is not None:
                ctx.wake.queue()
        else:
            outcome = await actions.cancel(ctx.store, target, ctx.canceller, now=time.time(), source=source)
            if outcome.ok:
                ctx.wake.track()
                if ctx.wake.queue is not None:
                    ctx.wake.queue()
        audit(
            action,
            admin=who.admin.name,
            peer=peer(request),
            job=mail if target == mail else f"{mail} (fax {target})",
            outcome="done" if outcome.ok else "nothing done",
            reason="; ".join(outcome.said) or outcome.error,
        )
        request.session["flash"] = [*outcome.said, *([outcome.error] if outcome.error else [])]
        return RedirectResponse(f"{PREFIX}/mail/{mail}", status_code=303, headers=HEADERS)

    session = Middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=COOKIE,
        max_age=http.session_max_age_s,
        path=PREFIX,
        same_site="strict",
        https_only=http.cookie_secure,
    )
    return Starlette(
        routes=[
            Route("/", signed_in(overview), methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", signed_in(logout), methods=["POST"]),
            Route("/mail/{id}", signed_in(story), methods=["GET"]),
            Route("/mail/{id}/{action:str}", signed_in(confirm), methods=["GET"]),
            Route("/mail/{id}/{action:str}", signed_in(act), methods=["POST"]),
        ],
        middleware=[session],
    )

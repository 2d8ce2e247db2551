"""The admin page over plain HTTP: who gets in, what they see, what a form needs.

The browser test (test_admin_browser.py) walks the page as a person does; these check
the refusals and boundaries request by request. Real gateway, simulator, SMTP."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.admin_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    SCANNER_ADMIN,
    SCANNER_PASSWORD,
    SESSION_SECRET,
    admin_settings,
    admin_url,
    held_mail,
)
from tests.e2e.conftest import ALICE, ALICE_USER, gateway_settings
from tests.e2e.tracking_helpers import job_state
from tests.helpers import wait_until
from tests.sink import SmtpSink

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def token(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    form = await client.get("/login")
    return await client.post("/login", data={"name": name, "password": password, "csrf": token(form)})


async def test_the_page_is_off_without_admins(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Gateway(gateway_settings(tmp_path, simulator.base_url)) as gw:
        assert gw.http_server is not None
        async with httpx.AsyncClient(base_url=gw.http_server.base_url) as client:
            for path in ("/admin", "/admin/", "/admin/login"):
                reply = await client.get(path)
                assert reply.status_code == 404 and "no [[admins]]" in reply.text


async def test_signed_in_admin_retries_a_held_mail_audited_with_their_name(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    async with Gateway(admin_settings(tmp_path, simulator)) as gw:
        job = await held_mail(gw, simulator)
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as client:
            assert (await client.get("/")).headers["location"] == "/admin/login"  # not signed in
            signed = await sign_in(client, ADMIN, ADMIN_PASSWORD)
            assert signed.status_code == 303 and signed.headers["location"] == "/admin/"
            cookie = signed.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie

            page = await client.get("/")
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            held = page.text.split('id="held"')[1].split("<h2")[0]
            assert job in held and "+1 323-555-1212" in held

            story = await client.get(f"/mail/{job}")
            assert "dispatch: held" in story.text and "story:" not in story.text

            confirm = await client.get(f"/mail/{job}/retry")
            assert "recipients will have it twice" in confirm.text
            assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD  # asking changed nothing

            done = await client.post(f"/mail/{job}/retry", data={"csrf": token(confirm)})
            assert done.status_code == 303 and done.headers["location"] == f"/admin/mail/{job}"
            after = await client.get(f"/mail/{job}")
            assert "sending it again now to +1 323-555-1212" in after.text
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert any('"audit":"admin login"' in x and f'"admin":"{ADMIN}"' in x for x in lines)
    assert any('"audit":"admin retry"' in x and f'"admin":"{ADMIN}"' in x and job in x for x in lines)
    assert all(SESSION_SECRET not in r.getMessage() for r in caplog.records)


async def test_wrong_passwords_are_refused_then_throttled_and_forms_need_their_token(
    tmp_path: Path,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    async with Gateway(admin_settings(tmp_path, simulator)) as gw:
        job = await held_mail(gw, simulator)
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as client:
            no_token = await client.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD})
            assert no_token.status_code == 403 and "security token" in no_token.text
            for _ in range(3):  # http.login_failures = 3
                wrong = await sign_in(client, ADMIN, "not it")
                assert wrong.status_code == 401 and "Wrong name or password." in wrong.text
            unknown = await sign_in(client, "mallory", "guess")
            assert unknown.status_code == 429  # the address is paused, whatever the name
            paused = await sign_in(client, ADMIN, ADMIN_PASSWORD)
            assert paused.status_code == 429 and "try again in 15 minutes" in paused.text
            assert (await client.get("/")).status_code == 303  # still not signed in
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as other:
            signed = await sign_in(other, SCANNER_ADMIN, SCANNER_PASSWORD)  # a new cookie, same address
            assert signed.status_code == 429
        assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert sum('"audit":"admin login refused"' in x for x in lines) >= 5
    assert any('"admin":"mallory"' in x for x in lines)
    assert not any(ADMIN_PASSWORD in r.getMessage() for r in caplog.records)


async def test_a_form_without_its_token_changes_nothing(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Gateway(admin_settings(tmp_path, simulator)) as gw:
        job = await held_mail(gw, simulator)
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as client:
            assert (await sign_in(client, ADMIN, ADMIN_PASSWORD)).status_code == 303
            for data in ({}, {"csrf": "forged"}):
                for action in ("retry", "cancel"):
                    refused = await client.post(f"/mail/{job}/{action}", data=data)
                    assert refused.status_code == 403 and "security token" in refused.text
            assert (await client.post("/logout", data={})).status_code == 403
            huge = await client.post(f"/mail/{job}/retry", data={"csrf": "x" * 20_000})
            assert huge.status_code == 413  # refused before the form is read
        assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD
        # A signed-out browser holding an old cookie: the token of another session is no use.
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as stranger:
            page = await stranger.get("/login")
            refused = await stranger.post(f"/mail/{job}/retry", data={"csrf": token(page)})
            assert refused.status_code == 303 and refused.headers["location"] == "/admin/login"
        assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD


async def test_an_admin_of_one_mailbox_never_sees_another_mailboxs_mail(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Gateway(admin_settings(tmp_path, simulator)) as gw:
        job = await held_mail(gw, simulator)  # alice's mailbox, 13235550100
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as client:
            assert (await sign_in(client, SCANNER_ADMIN, SCANNER_PASSWORD)).status_code == 303
            page = await client.get("/")
            assert page.status_code == 200
            assert job not in page.text and "13235550100" not in page.text and "555-1212" not in page.text
            for path in (f"/mail/{job}", f"/mail/{job}/retry"):
                assert (await client.get(path)).status_code == 404
            refused = await client.post(f"/mail/{job}/retry", data={"csrf": token(page)})
            assert refused.status_code == 404
        assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD


async def test_received_faxes_show_their_delivery_per_address_to_those_allowed(
    tmp_path: Path, simulator: RunningSimulator, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.admin_helpers import admin_entries
    from tests.e2e.inbound_helpers import BOB, done, mailboxes, poller, receive, running
    from tests.e2e.inbound_helpers import settings as inbound_settings

    sink.fail_rcpt[BOB] = "550 5.1.1 <bob@example.com>: no such user"
    config = inbound_settings(
        tmp_path,
        simulator,
        sink,
        mailboxes=mailboxes([ALICE, BOB], deliver_mode="separately"),
        admins=admin_entries(),
        http={"session_secret": SESSION_SECRET},
    )
    async with running(config, monkeypatch, tmp_path) as gw:
        (fax,) = await receive(simulator, ALICE_USER)
        await poller(gw).poll_once()
        await wait_until(done(gw, 1), timeout=20)
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as client:
            assert (await sign_in(client, ADMIN, ADMIN_PASSWORD)).status_code == 303
            page = (await client.get("/")).text
            received = page.split('id="received"')[1]
            row = received.split(f'data-fax="{fax}"')[1].split("</tr>")[0]
            assert "13235550100" in row and "13235551212" in row  # the mailbox, the caller
            assert f"{ALICE}: mailed" in row
            assert f"{BOB}: refused" in row and "the administrator was told" in row
        async with httpx.AsyncClient(base_url=admin_url(gw), timeout=10) as other:
            assert (await sign_in(other, SCANNER_ADMIN, SCANNER_PASSWORD)).status_code == 303
            page = (await other.get("/")).text
            assert fax not in page and ALICE not in page and BOB not in page

"""The admin page in a real browser (headless Chromium): sign in, see a held mail, retry it
with the confirmation step, see it sent; a wrong password refused; a form whose CSRF
token was taken out refused. Real gateway, simulator and SMTP; the browser drives HTTP.

Set SCREENSHOTS_DIR to keep the pages as PNGs (the README's pictures come from here:
``SCREENSHOTS_DIR=docs/img uv run pytest tests/e2e/test_admin_browser.py``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from gateway.store.base import JobKind, JobState
from tests.e2e.admin_helpers import ADMIN, ADMIN_PASSWORD, admin_settings, admin_url, held_mail
from tests.e2e.browser import chromium
from tests.e2e.conftest import sim_get
from tests.e2e.tracking_helpers import job_state
from tests.helpers import wait_until

T = TypeVar("T")


async def browse(step: Callable[[], T]) -> T:
    """Selenium blocks: each step runs in a thread while the gateway serves on this loop."""
    return await asyncio.to_thread(step)


def click_and_wait(driver: Any, element: Any) -> None:
    """Click, and wait until the page it leads to has replaced this one."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    element.click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(element))


def shoot(driver: Any, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"admin-{name}.png"))


async def test_an_admin_signs_in_sees_a_held_mail_retries_it_and_sees_it_sent(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By

    monkeypatch.chdir(tmp_path)
    async with Gateway(admin_settings(tmp_path, simulator)) as gw:
        job = await held_mail(gw, simulator, subject="Signed lease, page 1-3")
        base = admin_url(gw)
        with chromium() as driver:
            d: Any = driver

            def sign_in(password: str) -> str:
                d.get(f"{base}/")  # redirected to the sign-in form
                assert d.current_url == f"{base}/login"
                d.find_element(By.ID, "name").send_keys(ADMIN)
                d.find_element(By.ID, "password").send_keys(password)
                click_and_wait(d, d.find_element(By.ID, "sign-in"))
                return str(d.current_url)

            # A wrong password: refused, and still on the form.
            assert await browse(lambda: sign_in("not the password")) == f"{base}/login"
            said = await browse(lambda: d.find_element(By.ID, "error").text)
            assert said == "Wrong name or password."
            await browse(lambda: shoot(d, "login"))

            # The right one: the queue, the held mail first.
            assert await browse(lambda: sign_in(ADMIN_PASSWORD)) == f"{base}/"
            assert await browse(lambda: d.find_element(By.ID, "admin-name").text) == ADMIN

            def held_row() -> Any:
                rows = d.find_elements(By.CSS_SELECTOR, f'tr.job[data-mail="{job}"]')
                table = d.find_element(By.ID, "held").find_element(By.XPATH, "following-sibling::table")
                assert rows and rows[0] in table.find_elements(By.CSS_SELECTOR, "tr.job")
                return rows[0]

            row_text = await browse(lambda: held_row().text)
            assert "held" in row_text and "+1 323-555-1212" in row_text
            await browse(lambda: shoot(d, "queue"))

            # Retry -> the confirmation says what will happen; a forged form is refused.
            await browse(lambda: click_and_wait(d, held_row().find_element(By.LINK_TEXT, "Retry…")))
            plan = await browse(lambda: d.find_element(By.ID, "plan").text)
            assert "sending" not in plan and "recipients will have it twice" in plan
            await browse(lambda: shoot(d, "confirm"))

            def submit_without_token() -> str:
                d.execute_script("document.querySelector('#confirm').form.elements.csrf.remove()")
                click_and_wait(d, d.find_element(By.ID, "confirm"))
                return str(d.find_element(By.TAG_NAME, "main").text)

            refused = await browse(submit_without_token)
            assert "security token is missing or out of date" in refused
            assert await job_state(gw, JobKind.DISPATCH, job) == JobState.HELD

            def confirm_retry() -> str:
                d.get(f"{base}/mail/{job}/retry")
                click_and_wait(d, d.find_element(By.ID, "confirm"))
                return str(d.find_element(By.ID, "said").text)

            said = await browse(confirm_retry)
            assert "sending it again now to +1 323-555-1212" in said

            # Sent: the story, reloaded, shows the fax delivered.
            def story() -> str:
                d.get(f"{base}/mail/{job}")
                return str(d.find_element(By.ID, "facts").text)

            async def delivered() -> str | None:
                facts = await browse(story)
                return facts if ": delivered" in facts and "dispatch: done" in facts else None

            facts = await wait_until(delivered, timeout=30, interval=0.3)
            assert "report (final): done" in facts or "report (final)" in facts
            events = await browse(lambda: d.find_element(By.ID, "events").text)
            assert f"admin page, {ADMIN}" in events
            await browse(lambda: shoot(d, "story"))

            # Back on the queue: no longer held, sent today.
            def queue_sections() -> tuple[str, str]:
                d.get(f"{base}/")
                held = d.find_element(By.ID, "held").text
                done = d.find_element(By.ID, "done-today").find_element(By.XPATH, "following-sibling::*[1]")
                return str(held), str(done.text)

            held, done = await browse(queue_sections)
            assert held.endswith("(0)") and job in done
        assert len(await sim_get(simulator, "/_sim/faxes")) == 1  # sent once

"""The only wait helper: poll a predicate until it holds, never sleep-to-catch-up."""

from __future__ import annotations

import asyncio
import inspect
import smtplib
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Return the predicate's first truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def smtp_error_text(err: smtplib.SMTPResponseException) -> str:
    """The reply text of an SMTP error (smtplib keeps it as bytes, typeshed says bytes or str)."""
    text = err.smtp_error
    return text.decode() if isinstance(text, bytes) else text

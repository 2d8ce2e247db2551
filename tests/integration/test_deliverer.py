"""The deliverer against one exact eFax reply shape (httpx.MockTransport), a real store and Maildir.

What the simulator cannot be made to do: answer a PDF request with a TIFF. And the
restart points of the state machine, set up directly in the store.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pypdf import PdfReader

from gateway.core.retry import RetryPolicy
from gateway.efax.client import EfaxClient
from gateway.mail.maildir import MaildirSink
from gateway.settings import load_settings
from gateway.store import Store, open_store
from gateway.store.base import JobKind
from gateway.workers.deliver import Deliverer
from gateway.workers.receive import poll_backoff

FAX_ID = "ec048b91-3589-489b-8e95-a067e50d92a8"
USER = "11111111-22222222"
ALICE = "alice@example.com"


def tiff(pages: int) -> bytes:
    frames = [Image.new("1", (1728, 2200), 1) for _ in range(pages)]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:], compression="group4")
    return out.getvalue()


@dataclass
class FakeEfax:
    """Answers tokens, the image (as a TIFF) and the PATCH; records what it was asked."""

    image: bytes
    seen: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        self.seen.append(route)
        if route == "POST /tokens":
            return httpx.Response(
                200, json={"access_token": "t", "token_type": "bearer", "expires_in": 86400}
            )
        if route == f"GET /faxes/{FAX_ID}/image":
            assert request.url.params["desired_format"] == "PDF"
            body = {
                "fax_id": FAX_ID,
                "file_name": f"{FAX_ID}.tiff",
                "image": base64.b64encode(self.image).decode(),
            }
            return httpx.Response(200, json=body)
        if route == f"PATCH /faxes/{FAX_ID}/metadata":
            assert json.loads(request.content) == {"image_downloaded": True}
            return httpx.Response(200, json={"fax_id": FAX_ID, "image_downloaded": True})
        return httpx.Response(404, json={"errors": [{"error_code": "NOT_FOUND"}]})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield opened
    await opened.close()


async def deliver_once(store: Store, fake: FakeEfax, maildir: Path) -> None:
    settings = load_settings(
        None,
        {"mailboxes": [{"user_id": USER, "fax_number": "13235550100", "deliver_to": [ALICE]}]},
    )
    async with EfaxClient(
        base_url="https://efax.test", app_id="a", api_key="k", transport=httpx.MockTransport(fake)
    ) as efax:
        worker = Deliverer(
            store, efax, MaildirSink(maildir), settings, policy=RetryPolicy(), name="deliver-0"
        )
        await worker.run(until_idle=True)


def mails(maildir: Path) -> list[EmailMessage]:
    found = []
    for path in sorted((maildir / "new").glob("*")) if (maildir / "new").exists() else []:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


async def test_a_tiff_answer_is_converted_and_mailed_as_a_pdf(store: Store, tmp_path: Path) -> None:
    fake = FakeEfax(tiff(pages=3))
    await store.record_received(user_id=USER, fax_id=FAX_ID, metadata={"pages": 3}, now=time.time())
    await deliver_once(store, fake, tmp_path / "mail")
    [mail] = mails(tmp_path / "mail")
    [attachment] = list(mail.iter_attachments())
    pdf = attachment.get_content()
    assert pdf.startswith(b"%PDF") and len(PdfReader(io.BytesIO(pdf)).pages) == 3
    record = await store.received(FAX_ID)
    assert record is not None and record.state == "done" and record.delivered_to == (ALICE,)
    assert await store.received_image(FAX_ID) == pdf


async def test_restarted_after_mailed_only_the_patch_is_left(store: Store, tmp_path: Path) -> None:
    fake = FakeEfax(tiff(pages=1))
    await store.record_received(user_id=USER, fax_id=FAX_ID, metadata={}, now=time.time())
    await store.store_received_image(FAX_ID, b"%PDF-1.4 stored", now=time.time())
    await store.update_received(FAX_ID, now=time.time(), state="mailed", delivered_to=[ALICE])
    await deliver_once(store, fake, tmp_path / "mail")
    assert mails(tmp_path / "mail") == []
    assert [r for r in fake.seen if r != "POST /tokens"] == [f"PATCH /faxes/{FAX_ID}/metadata"]
    job = await store.find_job(JobKind.DELIVER, FAX_ID)
    assert job is not None and job.state == "done"


async def test_restarted_after_fetch_mails_without_fetching_again(store: Store, tmp_path: Path) -> None:
    fake = FakeEfax(tiff(pages=1))
    await store.record_received(user_id=USER, fax_id=FAX_ID, metadata={}, now=time.time())
    await store.store_received_image(FAX_ID, b"%PDF-1.4 stored", now=time.time())
    await deliver_once(store, fake, tmp_path / "mail")
    [mail] = mails(tmp_path / "mail")
    assert next(mail.iter_attachments()).get_content() == b"%PDF-1.4 stored"
    assert f"GET /faxes/{FAX_ID}/image" not in fake.seen


def test_poll_backoff_waits_at_least_an_interval_doubles_and_honours_retry_after() -> None:
    import random

    rng = random.Random(7)
    first = [poll_backoff(60, 1, None, rng) for _ in range(50)]
    assert all(60 <= d <= 120 for d in first)
    assert all(120 <= poll_backoff(60, 2, None, rng) <= 240 for _ in range(50))
    assert all(poll_backoff(60, 30, None, rng) <= 900 for _ in range(50))
    assert poll_backoff(60, 1, 600, rng) >= 600

"""Reader processes: real children of this test, reading the client corpus over their pipes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.core.documents import (
    DocumentError,
    ExtractionLimits,
    NeedsConversion,
    SplitMessage,
)
from gateway.smtp.reading import MailReaders, ReaderUnavailable, ReadMail, read_mail
from tests import corpus, pdfcorpus
from tests.helpers import wait_until
from tests.unit.test_documents_robustness import _cpython_email_data

QUICK = dataclasses.replace(ExtractionLimits(), quick_only=True)


@pytest.fixture
async def readers() -> AsyncIterator[MailReaders]:
    pool = MailReaders(1, restart_after_s=0.0)
    await pool.start()
    await _until_ready(pool)
    yield pool
    await pool.stop()


async def _until_ready(pool: MailReaders) -> None:
    async def ready() -> bool:
        try:
            await pool.read(corpus.text_only(), QUICK)
        except ReaderUnavailable as err:
            assert not err.tried
            return False
        return True

    await wait_until(ready, timeout=20, interval=0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _with_content_back(mail: ReadMail, here: ReadMail) -> ReadMail:
    """A reader's answer with the contents it left behind taken from ``here``."""
    documents = tuple(
        theirs if theirs.length is None else dataclasses.replace(theirs, content=ours.content, length=None)
        for theirs, ours in zip(mail.extraction.documents, here.extraction.documents, strict=True)
    )
    return dataclasses.replace(mail, extraction=dataclasses.replace(mail.extraction, documents=documents))


async def test_every_mail_of_two_corpora_reads_alike_in_a_child(readers: MailReaders) -> None:
    """Ours (every client style and refusal) and CPython's email test data (odd MIME of all
    kinds, when installed): the same ReadMail, or the same refusal in the same words."""
    mails = [build() for build in corpus.WHOLE_MAILS]
    mails += corpus.message_partial(3)
    mails += [path.read_bytes() for path in _cpython_email_data()]
    spans = 0
    for raw in mails:
        try:
            here: ReadMail | tuple[str, str] = read_mail(raw, QUICK)
        except Exception as err:  # the kind and the sentence
            here = (type(err).__name__, str(err))
        try:
            there: ReadMail | tuple[str, str] = await readers.read(raw, QUICK)
        except Exception as err:
            there = (type(err).__name__, str(err))
        if isinstance(there, ReadMail) and isinstance(here, ReadMail):
            for document in there.extraction.documents:  # where it is came back, and how big
                if document.span is not None:
                    assert document.span[0] is raw and document.content == b"" and document.length
            spans += sum(d.span is not None for d in there.extraction.documents)
            there = _with_content_back(there, here)
        assert there == here, raw[:200]
    assert spans  # some PDFs came back as their place in the mail


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (corpus.zip_only, DocumentError),
        (corpus.empty_mail, DocumentError),
        (corpus.jpeg_photo, NeedsConversion),
        (lambda: corpus.message_partial(3)[0], SplitMessage),
    ],
)
async def test_a_refusal_comes_back_as_the_same_exception_and_sentence(
    readers: MailReaders, build: Callable[[], bytes], kind: type[Exception]
) -> None:
    raw = build()
    with pytest.raises(kind) as here:
        read_mail(raw, QUICK)
    with pytest.raises(kind) as there:
        await readers.read(raw, QUICK)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)


async def test_a_killed_child_fails_what_it_owed_and_is_replaced(readers: MailReaders) -> None:
    (pid,) = readers.pids
    os.kill(pid, signal.SIGSTOP)  # stuck mid-mail, as far as the pool can tell
    reading = asyncio.ensure_future(readers.read(corpus.thunderbird_two_pdfs(), QUICK))
    await asyncio.sleep(0.1)
    assert not reading.done()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ReaderUnavailable) as lost:
        await asyncio.wait_for(reading, 5)
    assert lost.value.tried  # the mail was with the child: the caller must not trust the loop with it
    await _until_ready(readers)
    (new,) = readers.pids
    assert new != pid
    assert (await readers.read(corpus.text_only(), QUICK)).extraction.body_is_document


async def test_a_child_taking_too_long_is_killed_and_the_mail_handed_back() -> None:
    pool = MailReaders(1, timeout_s=0.5, restart_after_s=60)
    await pool.start()
    try:
        await _until_ready(pool)
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ReaderUnavailable) as stuck:
            await pool.read(corpus.text_only(), QUICK)
        assert stuck.value.tried
        await wait_until(lambda: not _alive(pid))
        with pytest.raises(ReaderUnavailable) as none:  # not restarted before restart_after_s
            await pool.read(corpus.text_only(), QUICK)
        assert not none.value.tried
    finally:
        await pool.stop()


async def test_stop_ends_every_child() -> None:
    pool = MailReaders(2)
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2
    await pool.stop()
    assert pool.pids == []
    for pid in pids:
        assert not _alive(pid)
    with pytest.raises(ReaderUnavailable):
        await pool.read(corpus.text_only(), QUICK)


def test_children_exit_when_the_gateway_is_killed() -> None:
    """SIGKILL gives the parent no chance to stop them: their stdin ends and they go."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from gateway.smtp.reading import MailReaders

        async def main():
            pool = MailReaders(1)
            await pool.start()
            print(pool.pids[0], flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
    asyncio.run(wait_until(lambda: not _alive(child), timeout=10))


async def test_a_reader_that_cannot_start_is_given_up_after_three_tries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "/bin/false")  # exits at once
    pool = MailReaders(1, restart_after_s=0.0)
    await pool.start()
    try:

        async def given_up() -> bool:
            with pytest.raises(ReaderUnavailable) as none:
                await pool.read(corpus.text_only(), QUICK)
            assert not none.value.tried  # never handed a mail
            return "ended 3 times before it was ready" in caplog.text

        with caplog.at_level(logging.WARNING, logger="gateway.smtp.reading"):
            await wait_until(given_up, timeout=10)
            caplog.clear()
            for _ in range(5):  # and no more tries after that
                with pytest.raises(ReaderUnavailable):
                    await pool.read(corpus.text_only(), QUICK)
                await asyncio.sleep(0.02)
        assert pool.pids == [] and caplog.text == ""
    finally:
        await pool.stop()


_HOSTILE_CHILD = """\
import os, pickle, struct, sys

class Payload:  # what a taken-over child might send: run a command when unpickled
    def __reduce__(self):
        return (os.system, ("touch " + {marker!r},))

def send(reply):
    frame = pickle.dumps(reply)
    os.write(1, struct.pack(">I", len(frame)) + frame)

send(("ready",))
size = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
sys.stdin.buffer.read(size)
send({reply})
sys.stdin.buffer.read()
"""


@pytest.mark.parametrize(
    ("reply", "logged"),
    [
        ('("ok", Payload())', "may not hold posix.system"),  # refused while unpickling
        ('("ok", "not a ReadMail")', "answered nonsense"),  # well formed, wrong shape
        ('("refused",)', "answered nonsense"),
    ],
)
async def test_a_reply_holding_anything_but_a_read_mail_is_refused_unrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reply: str, logged: str
) -> None:
    marker = tmp_path / "ran"
    child = tmp_path / "hostile-reader"
    child.write_text(f"#!{sys.executable}\n" + _HOSTILE_CHILD.format(marker=str(marker), reply=reply))
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))
    pool = MailReaders(1, restart_after_s=60)
    await pool.start()
    try:

        async def answered() -> bool:  # by the payload, once the child is ready
            try:
                await pool.read(corpus.text_only(), QUICK)
            except ReaderUnavailable as err:
                return err.tried
            raise AssertionError("the payload was taken for a mail")

        with caplog.at_level(logging.ERROR, logger="gateway.smtp.reading"):
            await wait_until(answered, timeout=20, interval=0.05)
        assert logged in caplog.text
        assert not marker.exists()
        await wait_until(lambda: pool.pids == [])  # that child is done with
    finally:
        await pool.stop()


async def test_a_broken_multipart_read_in_a_child_gives_the_documents_bytes_not_a_wrong_slice(
    readers: MailReaders,
) -> None:
    """A multipart split with the boundary its body uses is parsed anew: its parts do not lie
    where the raw mail's offsets say, so they never come back as a place in the mail."""
    pdf = pdfcorpus.ghostscript_pdf(1)
    raw = (
        b"From: alice@example.com\r\nTo: 13235551212@fax.local\r\nSubject: Order\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="WRONG"\r\n\r\n'
        b"--REAL\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--REAL\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        + b"--REAL--\r\n"
    )
    for mail in (read_mail(raw, QUICK), await readers.read(raw, QUICK)):
        [document] = mail.extraction.documents
        if document.span is None:
            assert document.content == pdf
        else:
            assert document.span[0] is raw
            assert base64.b64decode(raw[document.span[1] : document.span[2]]) == pdf

"""Reader processes: real children of this test, reading the client corpus over their pipes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.core.documents import (
    DocumentError,
    ExtractionLimits,
    SplitMessage,
)
from gateway.smtp.reading import (
    SHARED_BYTES,
    MailReaders,
    OverBudget,
    ReaderBudget,
    ReaderCrashed,
    ReaderUnavailable,
    ReadMail,
    Unread,
    read_mail,
)
from tests import corpus, pdfcorpus
from tests.helpers import wait_until
from tests.unit.test_documents_robustness import _cpython_email_data

FULL = ExtractionLimits()


@pytest.fixture
async def readers() -> AsyncIterator[MailReaders]:
    pool = MailReaders(1, max_processes=1)
    await pool.start()
    await _until_ready(pool)
    yield pool
    await pool.stop()


async def _until_ready(pool: MailReaders, count: int = 1) -> list[int]:
    pids: list[int] = await wait_until(
        lambda: pool.idle_pids if len(pool.idle_pids) >= count else None, timeout=20, interval=0.02
    )
    return pids


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
            here: ReadMail | tuple[str, str] = read_mail(raw, FULL)
        except Exception as err:  # the kind and the sentence
            here = (type(err).__name__, str(err))
        try:
            there: ReadMail | tuple[str, str] = await readers.read(raw, FULL)
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


async def test_mails_above_and_below_the_shared_buffer_read_alike(readers: MailReaders) -> None:
    """A mail up to SHARED_BYTES goes through the buffer the child shares, a bigger one
    through the pipe; one after the other, each is read whole and as itself (a smaller
    mail after a bigger one sees nothing of it)."""
    from email.message import EmailMessage

    def mail(pdf: bytes, subject: str) -> bytes:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "1@fax.local", subject
        message.set_content("see attached")
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{subject}.pdf")
        return message.as_bytes()

    small = corpus.make_pdf(1, "small")
    big = small + b"%" + os.urandom(SHARED_BYTES).hex().encode()  # comment bytes after %%EOF
    order = [mail(small, "one"), mail(big, "two"), mail(small, "three"), mail(big, "four")]
    assert [len(raw) <= SHARED_BYTES for raw in order] == [True, False, True, False]
    (pid,) = await _until_ready(readers)
    maps = await asyncio.to_thread(Path(f"/proc/{pid}/maps").read_text)
    assert "memfd:faxgw-mail" in maps  # the child maps it
    for raw in order:
        here, there = read_mail(raw, FULL), await readers.read(raw, FULL)
        assert _with_content_back(there, here) == here
        assert there.subject in ("one", "two", "three", "four")


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (corpus.zip_only, DocumentError),
        (corpus.empty_mail, DocumentError),
        (lambda: corpus.message_partial(3)[0], SplitMessage),
    ],
)
async def test_a_refusal_comes_back_as_the_same_exception_and_sentence(
    readers: MailReaders, build: Callable[[], bytes], kind: type[Exception]
) -> None:
    raw = build()
    with pytest.raises(kind) as here:
        read_mail(raw, FULL)
    with pytest.raises(kind) as there:
        await readers.read(raw, FULL)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)


async def _busy(
    pool: MailReaders, raw: bytes, limits: ExtractionLimits = FULL
) -> tuple[int, asyncio.Task[ReadMail]]:
    """A mail handed to the next idle child, that child stopped (SIGSTOP) before it answers:
    as far as the pool can tell, a child stuck on a hostile mail."""
    pid = (await _until_ready(pool))[0]
    os.kill(pid, signal.SIGSTOP)
    reading = asyncio.ensure_future(pool.read(raw, limits))
    await wait_until(lambda: pid not in pool.idle_pids)
    return pid, reading


async def test_a_child_killed_mid_mail_is_replaced_and_a_fresh_one_reads_the_mail() -> None:
    pool = MailReaders(1, max_processes=1)
    await pool.start()
    try:
        pid, reading = await _busy(pool, corpus.thunderbird_two_pdfs())
        os.kill(pid, signal.SIGKILL)  # not the mail's doing, as far as anyone knows
        mail = await asyncio.wait_for(reading, 20)
        assert len(mail.extraction.documents) == 2
        (new,) = await _until_ready(pool)
        assert new != pid and not _alive(pid)
    finally:
        await pool.stop()


_DYING_CHILD = """\
import os, pickle, signal, struct, sys

frame = pickle.dumps(("ready",))
os.write(1, struct.pack(">I", len(frame)) + frame)
with open({count!r}, "a") as count:
    count.write("mail\\n")
size = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
sys.stdin.buffer.read(size)
os.kill(os.getpid(), signal.SIGSEGV)  # as a parser crashing on the mail would
"""


async def test_a_mail_two_children_die_on_is_refused_not_read_a_third_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    count = tmp_path / "count"
    monkeypatch.setattr(
        sys, "executable", _script(tmp_path / "dying-reader", _DYING_CHILD.format(count=str(count)))
    )
    pool = MailReaders(1, max_processes=1)
    await pool.start()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="gateway.smtp.reading"),
            pytest.raises(ReaderCrashed) as refused,
        ):
            await asyncio.wait_for(pool.read(corpus.text_only(), FULL), 20)
        assert refused.value.reply.startswith("554 5.6.0 ")
        assert "reading it stopped twice" in refused.value.reply
        assert "a fresh one reads it again" in caplog.text and "ended on the same mail twice" in caplog.text
    finally:
        await pool.stop()
    assert _text(count).count("mail") <= 3  # two tried it; a third was at most started


async def test_a_mail_over_its_time_is_refused_and_its_child_killed() -> None:
    pool = MailReaders(1, max_processes=1, budget=ReaderBudget(wall_s=1.0))
    await pool.start()
    try:
        pid, reading = await _busy(pool, corpus.text_only())
        with pytest.raises(OverBudget) as refused:
            await asyncio.wait_for(reading, 10)
        assert refused.value.reply.startswith("554 5.6.0 This mail takes too long to read (more than 1 s")
        await wait_until(lambda: not _alive(pid))
        (new,) = await _until_ready(pool)  # replaced at once
        assert new != pid
    finally:
        await pool.stop()


async def test_a_mail_over_its_cpu_time_is_refused() -> None:
    """The kernel's SIGXCPU (RLIMIT_CPU, raised for each mail) ends the child: the mail is
    refused, not read again. Here the signal is sent by hand, mid-mail."""
    pool = MailReaders(1, max_processes=1, budget=ReaderBudget(cpu_s=7))
    await pool.start()
    try:
        big = _mail_with(_big_pdf(30_000_000), "application", "pdf", "big.pdf")  # a second or so
        pid, reading = await _busy(pool, big)
        os.kill(pid, signal.SIGCONT)

        def cpu_limit() -> int | None:
            limits = _text(Path(f"/proc/{pid}/limits"))
            line = next(line for line in limits.splitlines() if line.startswith("Max cpu time"))
            return None if line.split()[3] == "unlimited" else int(line.split()[3])

        soft = await wait_until(cpu_limit, timeout=10, interval=0.002)  # set as it took the mail
        assert 7 <= soft <= 7 + 5  # what it used so far, plus the mail's budget
        os.kill(pid, signal.SIGXCPU)
        with pytest.raises(OverBudget) as refused:
            await asyncio.wait_for(reading, 10)
        assert "7 s of work" in refused.value.reply and refused.value.reply.startswith("554 5.6.0 ")
    finally:
        await pool.stop()


async def test_a_mail_over_its_memory_is_refused_552_and_the_child_leaves() -> None:
    big = _mail_with(_big_pdf(45_000_000), "application", "pdf", "big.pdf")
    pool = MailReaders(1, max_processes=1, budget=ReaderBudget(memory_bytes=160 * 1024 * 1024))
    await pool.start()
    try:
        (pid,) = await _until_ready(pool)
        with pytest.raises(OverBudget) as refused:
            await pool.read(big, FULL)
        assert refused.value.reply.startswith("552 5.3.4 This mail needs more memory to read")
        await wait_until(lambda: not _alive(pid))  # its memory goes with it
        assert (await pool.read(corpus.text_only(), FULL)).extraction.body_is_document
    finally:
        await pool.stop()
    roomy = MailReaders(1, max_processes=1)
    await roomy.start()
    try:
        assert (await roomy.read(big, FULL)).extraction.documents[0].pages >= 1
    finally:
        await roomy.stop()


async def test_readers_growing_past_their_total_stop_the_largest_alone_it_is_refused_552() -> None:
    """The pool-wide memory budget (LibreOffice counted): a mail that alone takes the readers
    past it is refused for good; the child goes, the pool goes on."""
    big = _mail_with(_big_pdf(30_000_000), "application", "pdf", "big.pdf")
    pool = MailReaders(1, max_processes=2, budget=ReaderBudget(total_bytes=40 * 1024 * 1024))
    await pool.start()
    try:
        (pid,) = await _until_ready(pool)
        with pytest.raises(OverBudget) as refused:
            await pool.read(big, FULL)
        assert refused.value.reply.startswith(
            "552 5.3.4 This mail needs more memory to read than the gateway allows (40 MB)"
        )
        await wait_until(lambda: not _alive(pid))
        assert (await pool.read(corpus.text_only(), FULL)).extraction.body_is_document
    finally:
        await pool.stop()


async def test_a_stuck_mail_does_not_hold_up_the_next_one() -> None:
    """No head-of-line blocking: the next mail goes to another child (started for it)."""
    pool = MailReaders(1, max_processes=2, budget=ReaderBudget(wall_s=30))
    await pool.start()
    try:
        pid, stuck = await _busy(pool, corpus.text_only())
        started = asyncio.get_running_loop().time()
        mail = await asyncio.wait_for(pool.read(corpus.thunderbird_two_pdfs(), FULL), 20)
        assert len(mail.extraction.documents) == 2
        assert asyncio.get_running_loop().time() - started < 10
        assert not stuck.done()
        stuck.cancel()  # the client went away: its child is killed
        with pytest.raises(asyncio.CancelledError):
            await stuck
        await wait_until(lambda: not _alive(pid))
    finally:
        await pool.stop()


async def test_a_mail_waits_in_line_when_every_child_is_busy_then_gets_451() -> None:
    pool = MailReaders(1, max_processes=1, budget=ReaderBudget(wall_s=1.5))
    await pool.start()
    try:
        _, stuck = await _busy(pool, corpus.text_only())
        with pytest.raises(ReaderUnavailable) as busy:
            await pool.read(corpus.text_only(), FULL)  # in line behind it, for its budget
        assert busy.value.reply.startswith("451 4.3.0 ")
        with pytest.raises(OverBudget):
            await stuck
    finally:
        await pool.stop()


async def test_children_run_confined_with_nothing_of_the_gateways_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAXGW_EFAX__API_KEY", "secret-key-never-in-a-child")
    pool = MailReaders(1, budget=ReaderBudget(memory_bytes=700 * 1024 * 1024))
    await pool.start()
    try:
        (pid,) = await _until_ready(pool)
        environ = _text(Path(f"/proc/{pid}/environ")).encode().split(b"\0")
        assert not [v for v in environ if v.startswith(b"FAXGW_") or b"secret-key" in v]
        names = {v.split(b"=", 1)[0] for v in environ if v}
        assert names <= {b"PATH", b"LANG", b"HOME", b"TMPDIR", b"MALLOC_ARENA_MAX", b"LC_CTYPE"}
        status = _text(Path(f"/proc/{pid}/status"))
        assert "NoNewPrivs:\t1" in status
        limits = _text(Path(f"/proc/{pid}/limits"))
        address = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert address.split()[3] == str(700 * 1024 * 1024)
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"]
        if os.geteuid() == 0:  # as root: another user, unless that user cannot run this Python
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            assert uid != 0 or not _runnable_by_nobody(sys.executable)
    finally:
        await pool.stop()


_IDLE_CHILD = """\
import os, pickle, struct, sys

frame = pickle.dumps(("ready",))
os.write(1, struct.pack(">I", len(frame)) + frame)
sys.stdin.buffer.read()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can start readers as another user")
async def test_as_root_readers_run_as_the_reader_user_when_it_can_run_python(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stand-in reader under a Python every user may run (the system's): it runs as
    smtp.reader_user, or nobody when that user does not exist (said once)."""
    system_python = Path("/usr/bin/python3")
    assert _runnable_by_nobody(str(system_python)), "the system Python is needed here"
    place = Path(tempfile.mkdtemp(prefix="faxgw-test-"))  # pytest's own tmp is root's only
    request.addfinalizer(lambda: shutil.rmtree(place, ignore_errors=True))
    child = _script(place / "reader", _IDLE_CHILD)
    _set_interpreter(Path(child), system_python)
    monkeypatch.setattr(sys, "executable", child)
    pool = MailReaders(1, max_processes=1, user="no-such-reader-user")
    with caplog.at_level(logging.WARNING, logger="gateway.smtp.reading"):
        await pool.start()
        try:
            (pid,) = await _until_ready(pool)
            status = _text(Path(f"/proc/{pid}/status"))
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            assert uid == pwd.getpwnam("nobody").pw_uid
        finally:
            await pool.stop()
    assert "smtp.reader_user 'no-such-reader-user' does not exist" in caplog.text


def _set_interpreter(script: Path, python: Path) -> None:
    body = script.read_text().split("\n", 1)[1]
    script.write_text(f"#!{python}\n{body}")


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


def _exists(path: Path) -> bool:
    return path.exists()


def _script(path: Path, body: str) -> str:
    """An executable Python script at ``path`` (a stand-in reader), reachable by any user."""
    path.write_text(f"#!{sys.executable}\n" + body)
    path.chmod(0o755)
    path.parent.chmod(0o777)
    return str(path)


def _runnable_by_nobody(path: str) -> bool:
    """Whether every directory above ``path`` lets others through (mode o+x)."""
    return all(os.stat(p).st_mode & 0o001 for p in Path(path).resolve().parents)


def test_a_confined_process_cannot_open_the_gateways_files(tmp_path: Path) -> None:
    """Landlock: the configuration and the database, beside the gateway, are out of reach;
    the reader's own directory and the Python installation are not."""
    secret = tmp_path / "gateway.toml"
    secret.write_text('[efax]\napi_key = "secret"\n')
    home = tmp_path / "reader-home"
    home.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from gateway.smtp import sandbox
        missing = sandbox.confine(memory_bytes=1 << 30, ceiling_bytes=1 << 31,
            readable=[*sandbox.SYSTEM_READABLE, *sandbox.python_readable()],
            writable=[{str(home)!r}])
        assert missing == [], missing
        try:
            open({str(secret)!r}).read()
        except PermissionError:
            print("refused")
        open({str(home / "scratch")!r}, "w").write("mine")
        import json, email  # the standard library still imports
        print("imported")
        """
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", "imported"]
    assert (home / "scratch").read_text() == "mine"


@pytest.mark.skipif(shutil.which("soffice") is None and "CI" not in os.environ, reason="needs LibreOffice")
async def test_libreoffice_converts_inside_the_confinement_one_at_a_time(tmp_path: Path) -> None:
    from gateway.convert.office import find_office_converter

    converter = find_office_converter()
    assert converter is not None, "LibreOffice is needed here"
    limits = dataclasses.replace(FULL, office_converter=converter)
    pool = MailReaders(2, max_processes=2, budget=ReaderBudget(office_conversions=1))
    await pool.start()
    try:
        await _until_ready(pool, 2)
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.append(_count_processes("soffice.bin", under=set(pool.pids)))
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        mails = [_mail_with(_rtf(f"Letter {n}"), "application", "rtf", "letter.rtf") for n in (1, 2)]
        results = await asyncio.gather(*(pool.read(raw, limits) for raw in mails))
        watcher.cancel()
        for mail in results:
            assert mail.extraction.documents[0].content.startswith(b"%PDF")
        assert max(seen) == 1  # the second waited for its turn
    finally:
        await pool.stop()


def _mail_with(data: bytes, maintype: str, subtype: str, filename: str) -> bytes:
    message = corpus._new("Attached")
    message.set_content("See the attachment.")
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return corpus._bytes(message)


def _rtf(text: str) -> bytes:
    return ("{\\rtf1\\ansi{\\fonttbl\\f0\\fswiss Helvetica;}\\f0\\pard " + text + " \\par}").encode()


def _big_pdf(size: int) -> bytes:
    """A one-page PDF of about ``size`` bytes (a long, uncompressed content stream)."""
    import io

    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(612, 792))
    pdf.pages[0].Contents = pdf.make_stream(b"q Q\n" * (size // 4))
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    return out.getvalue()


def _count_processes(name: str, *, under: set[int]) -> int:
    """Live processes called ``name`` descended from one of the pids ``under``."""
    parents: dict[int, int] = {}
    named: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                if f"({name})" in stat and fields[0] != "Z":
                    named.append(int(entry.name))

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid in under:
                return True
        return False

    return sum(1 for pid in named if descends(pid))


async def test_stop_ends_every_child() -> None:
    pool = MailReaders(2)
    await pool.start()
    pids = await _until_ready(pool, 2)
    await pool.stop()
    assert pool.pids == []
    for pid in pids:
        assert not _alive(pid)
    with pytest.raises(ReaderUnavailable):
        await pool.read(corpus.text_only(), FULL)


def test_children_exit_when_the_gateway_is_killed() -> None:
    """SIGKILL gives the parent no chance to stop them: their stdin ends and they go."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from gateway.smtp.reading import MailReaders

        async def main():
            pool = MailReaders(1)
            await pool.start()
            while not pool.pids:
                await asyncio.sleep(0.01)
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


async def test_readers_that_cannot_start_are_tried_again_after_a_pause_and_mails_get_451(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "/bin/false")  # exits at once
    pool = MailReaders(1, max_processes=1, budget=ReaderBudget(wall_s=1.0))
    with caplog.at_level(logging.WARNING, logger="gateway.smtp.reading"):
        await pool.start()
        try:
            with pytest.raises(ReaderUnavailable) as none:
                await pool.read(corpus.text_only(), FULL)
            assert none.value.reply.startswith("451 4.3.0 ")
            await wait_until(lambda: "3 times in a row before they were ready" in caplog.text)
            assert caplog.text.count("in a row before they were ready") == 1  # said once
            assert not pool.ready
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
        ('("ok", Payload(), False)', "may not hold posix.system"),  # refused while unpickling
        ('("ok", "not a ReadMail", False)', "answered nonsense"),  # well formed, wrong shape
        ('("refused",)', "answered nonsense"),
    ],
)
async def test_a_reply_holding_anything_but_a_read_mail_is_refused_unrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reply: str, logged: str
) -> None:
    marker = tmp_path / "ran"
    hostile = _HOSTILE_CHILD.format(marker=str(marker), reply=reply)
    monkeypatch.setattr(sys, "executable", _script(tmp_path / "hostile-reader", hostile))
    pool = MailReaders(1, max_processes=1)
    await pool.start()
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.smtp.reading"), pytest.raises(Unread):
            await pool.read(corpus.text_only(), FULL)
        assert logged in caplog.text
        assert not _exists(marker)
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
    for mail in (read_mail(raw, FULL), await readers.read(raw, FULL)):
        [document] = mail.extraction.documents
        if document.span is None:
            assert document.content == pdf
        else:
            assert document.span[0] is raw
            assert base64.b64decode(raw[document.span[1] : document.span[2]]) == pdf

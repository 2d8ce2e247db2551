"""Reading a mail for the SMTP handler: its documents and the few header fields it needs,
in a child process beside the event loop or in this one.

Consumes: the raw bytes of one mail. Produces: a ``ReadMail``, or the DocumentError that
words the refusal. Touches: child processes (``python -I -c`` running ``child_main``), nothing
else; they never see the store, the network or a secret.

Why children: the gateway's SMTP sessions, its group commit and its dispatchers share one
Python process, and so one core. Parsing a mail and counting its PDF's pages is the
largest part of that core's work per mail (about 40% for a 100 KB PDF); a child does it
on another core while the event loop goes on with the protocol. Measured with
``bench/accept_rate.py`` (see bench/README.md).

What crosses the pipe: to the child ``(raw, limits)``; back ``("ok", ReadMail)``,
``("refused", kind, sentence)`` for a mail that cannot be faxed, or ``("failed", why)``.
Each is a pickle behind its 4-byte big-endian length; replies come in the order asked.
Only what the gateway's own code built is pickled, both ways, and a reply may hold
only the classes of a ``ReadMail`` (``_REPLY_CLASSES``). A document found as clean
base64 in the mail comes back as its position and size only (``FaxDocument.span`` and
``length``; the caller's raw mail is put back into the span here), so a mail crosses once.

Never a mail lost to a child: a child that is not running yet, dies, or takes longer than
``timeout_s`` makes ``read`` raise ``ReaderUnavailable``; the handler then reads the mail
itself. Children are started with the gateway, restarted at most every
``restart_after_s`` (and no more once three in a row died before being ready: they
cannot start here, one warning says so), told to stop by closing their stdin (and killed if they do not), and
exit on their own when the gateway dies, since their stdin ends.

Settings: ``smtp.reader_processes``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import io
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from gateway.core.document_errors import DocumentRefused, NothingToFax, TooManyDocuments
from gateway.core.documents import (
    DocumentError,
    Extraction,
    ExtractionLimits,
    FaxDocument,
    NeedsConversion,
    SplitMessage,
    TooManyPages,
    extract_documents,
    parse_message,
)
from gateway.logs import event

log = logging.getLogger(__name__)

_LENGTH: Final = struct.Struct(">I")
# The child imports this very package, wherever it came from: put first on its path when
# not there already (a source checkout), never ahead of the standard library otherwise.
# Isolated mode (-I): neither the working directory nor PYTHON* variables change what it
# imports.
_PACKAGE_PARENT: Final = str(Path(__file__).resolve().parents[2])
_BOOTSTRAP: Final = (
    "import sys\n"
    "if sys.argv[1] not in sys.path: sys.path.insert(0, sys.argv[1])\n"
    "from gateway.smtp.reading import child_main\n"
    "child_main()\n"
)
_PIPE_BYTES: Final = 1 << 20  # a pipe this big holds several mails (Linux; else as it is)
_GIVE_UP_AFTER: Final = 3  # children in a row that die before they are ready: they cannot start
# The exceptions a child may answer with, by name; each is raised here with its sentence.
_REFUSALS: Final[dict[str, type[Exception]]] = {
    cls.__name__: cls
    for cls in (
        DocumentError,
        NothingToFax,
        DocumentRefused,
        TooManyPages,
        TooManyDocuments,
        SplitMessage,
        NeedsConversion,
    )
}


@dataclass(frozen=True)
class ReadMail:
    """What the handler needs of a mail: the header fields it checks or keeps, and the
    documents to fax. Header values are as ``str()`` of policy.default's headers."""

    froms: tuple[str, ...]  # every From field
    authentication_results: tuple[str, ...]
    reply_to: str  # the first Reply-To field, "" when none
    message_id: str
    subject: str
    to_cc: tuple[str, ...]  # every To and Cc field, for the recipients' display names
    extraction: Extraction

    @property
    def from_field(self) -> str:
        return self.froms[0] if self.froms else ""


def read_mail(raw: bytes, limits: ExtractionLimits) -> ReadMail:
    """``raw`` parsed and its documents extracted; raises DocumentError (and NeedsConversion
    when ``limits.quick_only``) as ``extract_documents`` does."""
    message = parse_message(raw)
    extraction = extract_documents(message, limits)

    def every(name: str) -> tuple[str, ...]:
        return tuple(str(value) for value in message.get_all(name, []))

    return ReadMail(
        froms=every("From"),
        authentication_results=every("Authentication-Results"),
        reply_to=str(message.get("Reply-To", "")),
        message_id=str(message.get("Message-ID", "")),
        subject=str(message.get("Subject", "")),
        to_cc=every("To") + every("Cc"),
        extraction=extraction,
    )


# What a reply may be built of: the classes below and plain values (str, bytes, int,
# tuples...), which pickle makes without naming a class. Anything else is refused, so a
# child that a hostile mail had taken over could not make this process run code.
_REPLY_CLASSES: Final = frozenset(
    {
        ("gateway.smtp.reading", "ReadMail"),
        ("gateway.core.documents", "Extraction"),
        ("gateway.core.documents", "FaxDocument"),
        ("gateway.core.documents", "LeftOut"),
        ("gateway.core.documents", "SubjectOptions"),
    }
)


class _ReplyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _REPLY_CLASSES:
            raise pickle.UnpicklingError(f"a reader's reply may not hold {module}.{name}")
        return super().find_class(module, name)


def _load_reply(frame: bytes) -> tuple[Any, ...]:
    reply = _ReplyUnpickler(io.BytesIO(frame)).load()
    if not isinstance(reply, tuple) or not reply or not isinstance(reply[0], str):
        raise pickle.UnpicklingError("a reader's reply is not a tuple naming its kind")
    return reply


class ReaderUnavailable(Exception):
    """No child read this mail: read it here. ``tried``: a child had it, and died or took
    too long (the mail may be why, so do not read it on the event loop)."""

    def __init__(self, why: str, *, tried: bool = True) -> None:
        super().__init__(why)
        self.tried = tried


def _left_behind(read: ReadMail) -> ReadMail:
    """In the child: what the caller has is not sent back. A document found as clean
    base64 keeps only its position and size (``FaxDocument.length``)."""
    return _with_documents(
        read,
        lambda d: dataclasses.replace(d, span=(b"", d.span[1], d.span[2]), content=b"", length=d.size),
    )


def _spans_into(read: ReadMail, raw: bytes) -> ReadMail:
    """Here: the documents' spans point into the caller's own mail again."""
    return _with_documents(read, lambda d: dataclasses.replace(d, span=(raw, d.span[1], d.span[2])))


def _with_documents(read: ReadMail, change: Callable[[Any], FaxDocument]) -> ReadMail:
    """``read`` with ``change`` applied to each document that has a span."""
    documents = tuple(d if d.span is None else change(d) for d in read.extraction.documents)
    return dataclasses.replace(read, extraction=dataclasses.replace(read.extraction, documents=documents))


class _Child:
    """One child process and the replies it owes, oldest first."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.owed: collections.deque[asyncio.Future[tuple[Any, ...]]] = collections.deque()
        self.ready = asyncio.get_running_loop().create_future()  # its first frame arrived
        self.listener: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self.listener is not None and not self.listener.done()

    @property
    def usable(self) -> bool:
        return self.listening and self.ready.done() and not self.ready.cancelled()

    async def listen(self) -> None:
        """Hand each reply to the oldest waiting future; on EOF, fail the rest."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                reply = _load_reply(await stdout.readexactly(size))
                if not self.ready.done():
                    self.ready.set_result(None)
                    continue
                if self.owed:
                    future = self.owed.popleft()
                    if not future.done():
                        future.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # it ended
        except Exception:  # a reply that makes no sense: no later one can be trusted
            log.exception("a reader process answered nonsense; restarting it", extra=event("reader failed"))
        finally:
            self.end()

    def end(self) -> None:
        """Kill the process if it still runs; fail what it owed."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.fail_owed()

    def fail_owed(self) -> None:
        if not self.ready.done():
            self.ready.cancel()
        while self.owed:
            future = self.owed.popleft()
            if not future.done():
                future.set_exception(ReaderUnavailable("the reader process ended"))


class MailReaders:
    """``processes`` children that read mails; ``read`` picks the least busy one."""

    def __init__(self, processes: int, *, timeout_s: float = 30.0, restart_after_s: float = 5.0) -> None:
        self.processes = processes
        self.timeout_s = timeout_s
        self.restart_after_s = restart_after_s
        self._children: list[_Child | None] = [None] * processes
        self._started_at = [0.0] * processes
        self._stillborn = [0] * processes  # children in a row that ended before being ready
        self._starting: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        """Start the children; they take mail once they have said they are ready."""
        for slot in range(self.processes):
            await self._spawn(slot)

    async def read(self, raw: bytes, limits: ExtractionLimits) -> ReadMail:
        """The mail read by a child. Raises what ``read_mail`` raises for the mail, or
        ReaderUnavailable: then nothing is known of the mail and the caller reads it."""
        child = self._pick()
        if child is None:
            raise ReaderUnavailable("no reader process is running", tried=False)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        request = pickle.dumps((raw, limits), protocol=pickle.HIGHEST_PROTOCOL)
        stdin = child.process.stdin
        assert stdin is not None
        child.owed.append(future)
        try:
            stdin.write(_LENGTH.pack(len(request)))
            stdin.write(request)
            async with asyncio.timeout(self.timeout_s):
                await stdin.drain()
                reply = await future
        except (ConnectionError, TimeoutError) as err:
            future.cancel()  # its reply, if one comes, is skipped
            if isinstance(err, TimeoutError) and child.usable:  # stuck on something
                log.warning("a reader process took too long; restarting it", extra=event("reader stuck"))
                child.end()
            raise ReaderUnavailable(f"the reader process failed: {type(err).__name__}") from None
        match reply:
            case ("ok", ReadMail() as result):
                return _spans_into(result, raw)
            case ("refused", str(kind), str(sentence)):
                raise _REFUSALS.get(kind, DocumentError)(sentence)
            case ("failed", str(why)):
                log.warning("a reader process could not read a mail: %s", why, extra=event("reader failed"))
                raise ReaderUnavailable(why)
        log.error("a reader process answered nonsense; restarting it", extra=event("reader failed"))
        child.end()
        raise ReaderUnavailable("the reader process answered nonsense")

    async def stop(self, grace_s: float = 2.0) -> None:
        """Close each child's stdin, wait for it to exit, kill it if it does not; one that
        has not said it is ready yet holds nothing and is killed at once."""
        self._stopping = True
        for task in list(self._starting):
            task.cancel()
        for slot, child in enumerate(self._children):
            if child is None:
                continue
            self._children[slot] = None
            stdin = child.process.stdin
            if stdin is not None:
                stdin.close()
            if not child.ready.done():
                child.end()
            try:
                await asyncio.wait_for(child.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            if child.listener is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await child.listener
            child.fail_owed()

    @property
    def pids(self) -> list[int]:
        """The children starting or taking mail (not those seen to end, nor told to)."""
        return [c.process.pid for c in self._children if c is not None and c.listening]

    # -- inside ------------------------------------------------------------------------------
    def _pick(self) -> _Child | None:
        best: _Child | None = None
        for slot, child in enumerate(self._children):
            if child is None or not child.listening:
                self._respawn_later(slot)
            elif child.usable and (best is None or len(child.owed) < len(best.owed)):
                best = child
        return best

    def _respawn_later(self, slot: int) -> None:
        if self._stopping or any(t.get_name() == f"reader-{slot}" for t in self._starting):
            return
        if self._stillborn[slot] >= _GIVE_UP_AFTER:
            return
        if time.monotonic() - self._started_at[slot] < self.restart_after_s:
            return
        task = asyncio.create_task(self._spawn(slot), name=f"reader-{slot}")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _spawn(self, slot: int) -> None:
        self._started_at[slot] = time.monotonic()
        old = self._children[slot]
        if old is not None:
            old.end()
            never_ready = not old.ready.done() or old.ready.cancelled()
            self._stillborn[slot] = self._stillborn[slot] + 1 if never_ready else 0
            if self._stillborn[slot] >= _GIVE_UP_AFTER:
                log.warning(
                    "a reader process ended %d times before it was ready; mails are read in the "
                    "gateway's own process from now on",
                    self._stillborn[slot],
                    extra=event("reader failed"),
                )
                self._children[slot] = None
                return
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-c",
                _BOOTSTRAP,
                _PACKAGE_PARENT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=_PIPE_BYTES,
            )
        except OSError as err:
            log.warning("cannot start a reader process: %s", err, extra=event("reader failed"))
            self._children[slot] = None
            return
        child = _Child(process)
        _widen_pipe(process.stdin)
        child.listener = asyncio.create_task(child.listen(), name=f"reader-{slot}-listen")
        self._children[slot] = child


def _widen_pipe(writer: asyncio.StreamWriter | None) -> None:
    """Let the pipe to a child hold a few mails, so a write rarely waits (Linux only)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    pipe = writer.transport.get_extra_info("pipe") if writer is not None else None
    if set_size is not None and pipe is not None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the child is gone already
            fcntl.fcntl(pipe.fileno(), set_size, _PIPE_BYTES)


# -- the child ---------------------------------------------------------------------------------
def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _answer(raw: bytes, limits: ExtractionLimits) -> tuple[Any, ...]:
    try:
        read = read_mail(raw, limits)
    except tuple(_REFUSALS.values()) as err:
        return ("refused", type(err).__name__, str(err))
    except Exception as err:  # the parent reads it itself and sees it there
        return ("failed", f"{type(err).__name__}: {err}"[:500])
    return ("ok", _left_behind(read))


def child_main() -> None:
    """Read requests from stdin until it ends, answer each on stdout."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent says when: stdin ends
        signal.signal(signum, signal.SIG_IGN)
    requests = sys.stdin.buffer
    replies = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot break a frame

    def send(reply: tuple[Any, ...]) -> None:
        frame = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(_LENGTH.pack(len(frame)) + frame)
        while data:
            data = data[os.write(replies, data) :]

    try:
        send(("ready",))
        while True:
            header = _read_exactly(requests, _LENGTH.size)
            body = _read_exactly(requests, _LENGTH.unpack(header)[0]) if header else None
            if body is None:
                return  # the gateway closed our stdin, or died
            raw, limits = pickle.loads(body)
            send(_answer(raw, limits))
    except BrokenPipeError:
        return  # the gateway is gone

"""Reading a mail for the SMTP handler: its documents and the few header fields it needs,
always in a confined child process, each mail within its budgets.

Consumes: the raw bytes of one mail and the extraction limits. Produces: a ``ReadMail``; the
DocumentError that words a refusal; or ``Unread`` (``OverBudget``, ``ReaderCrashed``,
``ReaderUnavailable``) carrying the SMTP reply to give. Touches: child processes (``python -I
-c`` running ``child_main``) and, through them, LibreOffice; never the store or the network.

Why children: every mail is untrusted, and the parsers it meets (MIME, PDF, images, TNEF,
HTML, office files) can be made to take minutes or gigabytes. In a child, that costs the
child: the event loop, the group commit and the other mails go on, the memory goes back when
the child ends, and a child taken over by a hostile file holds nothing worth stealing. No
mail is parsed in the gateway's own process, whatever its size.

Budgets, per mail (``ReaderBudget``, from ``smtp.reader_*``): CPU seconds (the child's
RLIMIT_CPU is raised for each mail: SIGXCPU ends it), wall seconds (the parent kills the
child; time waiting for a LibreOffice turn is not counted), memory (the child's address
space: a ``MemoryError``, or a failed allocation that ends it). A mail over a budget is
refused with a sentence (``554 5.6.0`` time, ``552 5.3.4`` memory) and read nowhere else.
A child that dies on a mail of itself (a crash): the mail is read once more by a fresh
child, then refused. A child whose memory grew while reading leaves after its answer.

Pool: ``processes`` children kept ready. A mail goes to an idle child, else to a child
started for it (up to ``max_processes``), else waits in line for the first one free: a mail
never waits behind another inside a child, so a hung mail delays no other beyond its own
budget. Children above ``processes`` leave after ``IDLE_S`` without work. A child that ends
is replaced at once and logged; three in a row that die before they are ready are retried
after a pause that grows to ``_RETRY_MAX_S`` (one warning), and meanwhile mails wait up to
their wall budget, then get ``451 4.3.0``. When the client disconnects, the handler's task
is cancelled: the child reading for it is killed.

Confinement (``gateway.smtp.sandbox``): a child starts with an empty environment (no
``FAXGW_*``, no secret; ``HOME`` and ``TMPDIR`` its own empty directory), as
``smtp.reader_user`` when the gateway runs as root, with ``no_new_privs``, rlimits and,
where the kernel has Landlock, no way to open the configuration, the database or the mail
store. LibreOffice runs inside the same confinement, at most ``office_conversions`` at once
across children: a child asks for a turn and waits in line, its mail not yet converted.

What crosses the pipe: to the child ``("limits", limits)`` when they differ from the last
ones it was sent, ``("mapped", size)`` for a mail put in the child's shared buffer (a memfd
of ``SHARED_BYTES`` both map; the child copies it out before reading it, and the gateway
writes there only while the child has no mail) or ``("read", size)`` followed by the
mail's ``size`` bytes as they are,
and ``("go",)`` (a LibreOffice turn); back ``("ready",)``, ``("turn",)``, then one
answer: ``("ok", ReadMail, leave)``,
``("refused", kind, sentence, leave)``, ``("over", "memory", leave)`` or ``("failed", why,
leave)``. Each is a pickle behind its 4-byte big-endian length. Only what the gateway's own
code built is pickled, both ways, and an answer may hold only the classes of a ``ReadMail``
(``_REPLY_CLASSES``). A document found as clean base64 in the mail comes back as its
position and size only (``FaxDocument.span`` and ``length``; the caller's raw mail is put
back into the span here), so a mail crosses once.

Settings: ``smtp.reader_processes``, ``smtp.reader_processes_max``, ``smtp.reader_cpu_s``,
``smtp.reader_timeout_s``, ``smtp.reader_memory_mb``, ``smtp.office_conversions``,
``smtp.reader_user``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import io
import json
import logging
import mmap
import os
import pickle
import pwd
import shutil
import signal
import struct
import sys
import tempfile
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
    SplitMessage,
    TooManyPages,
    extract_documents,
    parse_message,
)
from gateway.core.office import OfficeConverter
from gateway.logs import event
from gateway.smtp import sandbox

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
    "child_main(sys.argv[2])\n"
)
_PIPE_BYTES: Final = 1 << 20  # a pipe this big holds several mails (Linux; else as it is)
# Each child shares a buffer of this size with the gateway (a memfd both map): a mail up to
# this size is put there, not pushed through the pipe, which costs the kernel a copy in
# and a copy out (both on this machine's event loop and the child's time). Bigger mails
# take the pipe. Its pages are only used once touched.
SHARED_BYTES: Final = 4 << 20
_GIVE_UP_AFTER: Final = 3  # children in a row that die before they are ready: pause
_RETRY_MIN_S: Final = 5.0
_RETRY_MAX_S: Final = 60.0
_READY_WITHIN_S: Final = 30.0  # a child that has not said it is ready by then is killed
_WATCH_S: Final = 0.05  # how often the readers' memory together is looked at
_SPARE_AFTER_S: Final = 0.5  # a mail waiting this long for a child gets one started
IDLE_S: Final = 60.0  # a child above ``processes`` leaves after this long without a mail
_GROWTH_BYTES: Final = 64 * 1024 * 1024  # a child that grew this much while reading leaves
# Where LibreOffice may take more address space than a reader (gateway.convert.office).
_OFFICE_CEILING_BYTES: Final = 2_500_000_000
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
    )
}


@dataclass(frozen=True)
class ReaderBudget:
    """What reading one mail may cost, and how many LibreOffice conversions run at once."""

    cpu_s: float = 30.0
    wall_s: float = 40.0
    memory_bytes: int = 1024 * 1024 * 1024
    office_conversions: int = 1
    # What all readers together (LibreOffice counted) may grow above their idle size; the
    # largest of them is stopped when they pass it, its mail answered 452 (try later).
    total_bytes: int = 640 * 1024 * 1024


class Unread(Exception):
    """No answer for this mail from a reader; ``reply`` is the SMTP reply to give."""

    reply: str = "451 4.3.0 The gateway cannot read your mail right now; please try again later."

    def __init__(self, why: str, reply: str | None = None) -> None:
        super().__init__(why)
        if reply is not None:
            self.reply = reply


class ReaderUnavailable(Unread):
    """No reader process took the mail in time (none could start, or all stayed busy)."""


class OverBudget(Unread):
    """The mail cost more than its budget to read: refused, read nowhere else."""


class ReaderCrashed(Unread):
    """A reader died on the mail twice, or failed on it: refused."""


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
    """``raw`` parsed and its documents extracted; raises DocumentError as
    ``extract_documents`` does."""
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
    """One child process, started for the pool; it reads one mail at a time."""

    def __init__(
        self, process: asyncio.subprocess.Process, home: str, shared: mmap.mmap | None = None
    ) -> None:
        self.process = process
        self.home = home  # its own temporary directory, removed when it ends
        self.shared = shared  # the buffer it reads mails from (None: every mail by pipe)
        self.ready = False
        self.idle_since = time.monotonic()
        self.ending = False  # the pool ended it (budget, recycling, stop): no warning
        self.reading = False  # it has a mail: the mail's reader says what became of it
        self.limits: ExtractionLimits | None = None  # the limits it was last sent
        self.idle_bytes = 0  # its resident size once ready
        # Stopped because the readers together grew too big: "alone" (it was the only one
        # reading) or "crowded" (others were too); "" while it is not.
        self.crowded_out = ""

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.ending

    async def send_mail(self, raw: bytes) -> None:
        """The mail: into the shared buffer when it fits (the child is idle: it reads
        nothing there until told), else through the pipe."""
        if self.shared is not None and len(raw) <= len(self.shared):
            self.shared[: len(raw)] = raw
            await self.send(("mapped", len(raw)))
        else:
            await self.send(("read", len(raw)), raw)

    def close_shared(self) -> None:
        if self.shared is not None:
            with contextlib.suppress(BufferError, ValueError):
                self.shared.close()
            self.shared = None

    async def send(self, message: tuple[Any, ...], raw: bytes = b"") -> None:
        """One frame, then ``raw`` as it is (not pickled: a big mail is not copied, and
        never more than ``_PIPE_BYTES`` of it waits in this process's buffers)."""
        stdin = self.process.stdin
        assert stdin is not None
        frame = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        stdin.write(_LENGTH.pack(len(frame)) + frame)
        if len(raw) <= _PIPE_BYTES:
            stdin.write(raw)
        else:
            view = memoryview(raw)
            for start in range(0, len(view), _PIPE_BYTES):
                await stdin.drain()
                stdin.write(view[start : start + _PIPE_BYTES])
        await stdin.drain()

    async def receive(self) -> tuple[Any, ...]:
        stdout = self.process.stdout
        assert stdout is not None
        (size,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
        return _load_reply(await stdout.readexactly(size))

    def end(self) -> None:
        """Kill it (its whole process group: LibreOffice too) if it still runs."""
        self.ending = True
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class MailReaders:
    """Confined children that read mails, one mail per child at a time."""

    def __init__(
        self,
        processes: int,
        *,
        max_processes: int | None = None,
        budget: ReaderBudget | None = None,
        user: str = "",
    ) -> None:
        self.processes = max(1, processes)
        self.max_processes = max(self.processes, max_processes or 4 * self.processes)
        self.budget = budget or ReaderBudget()
        self.user = user  # switched to when the gateway runs as root; "" or unknown: nobody
        self._children: set[_Child] = set()
        self._idle: collections.deque[_Child] = collections.deque()
        self._line: collections.deque[asyncio.Future[_Child]] = collections.deque()
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stillborn = 0  # children in a row that ended before being ready
        self._paused_until = 0.0
        self._turns = asyncio.Semaphore(max(1, self.budget.office_conversions))
        self._switch_user = os.geteuid() == 0 if hasattr(os, "geteuid") else False
        self._stopping = False
        self._first_ready = asyncio.Event()

    async def start(self) -> None:
        """Start the children; they take mail once they have said they are ready."""
        for _ in range(self.processes):
            self._start_one()
        task = asyncio.create_task(self._watch_memory(), name="reader-memory")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_memory(self) -> None:
        """Every ``_WATCH_S``: when the readers together (each with its LibreOffice) have
        grown more than ``budget.total_bytes`` above the idle size of the ``processes``
        kept ready, stop the largest one
        that is reading; its mail gets 452, to be sent again when the gateway is less busy."""
        while not self._stopping:
            await asyncio.sleep(_WATCH_S)
            reading = [c for c in self._children if c.reading and c.alive]
            if not reading:
                continue
            sizes = {c: _tree_resident_bytes(c.process.pid) for c in self._children if c.alive and c.ready}
            # Above what the children kept ready weigh idle: a child started for a busy
            # moment counts whole, since it too is memory the mails cost.
            idle = sorted(c.idle_bytes for c in sizes)[: self.processes]
            growth = sum(sizes.values()) - sum(idle)
            if growth <= self.budget.total_bytes:
                continue
            largest = max(reading, key=lambda c: sizes.get(c, 0) - c.idle_bytes)
            # Alone, retrying later cannot help it: refused for good. Else it waits its turn.
            largest.crowded_out = "alone" if len(reading) == 1 else "crowded"
            largest.end()
            log.warning(
                "reader processes grew %d MB above idle (more than %d MB); the largest was stopped",
                growth >> 20,
                self.budget.total_bytes >> 20,
                extra=event("reader over budget", budget="total memory"),
            )

    @property
    def pids(self) -> list[int]:
        """The children starting or reading (not those ended or told to)."""
        return [c.process.pid for c in self._children if c.alive]

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until a child is ready (at most ``timeout_s``); whether one is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_ready.wait(), timeout_s)
        return self.ready

    @property
    def idle_pids(self) -> list[int]:
        """The children ready and waiting for a mail, the next one to be handed a mail first."""
        return [c.process.pid for c in self._idle if c.alive]

    @property
    def ready(self) -> bool:
        """At least one child is ready to read, or the pool may start one."""
        return any(c.ready and c.alive for c in self._children) and not self._stopping

    async def read(self, raw: bytes, limits: ExtractionLimits) -> ReadMail:
        """The mail read by a child. Raises what ``read_mail`` raises for the mail, or an
        ``Unread`` whose ``reply`` words why there is no answer."""
        for attempt in (1, 2):
            child = await self._take()
            try:
                answer = await self._ask(child, raw, limits)
            except _Died as died:
                if attempt == 1:
                    log.warning(
                        "a reader process ended while reading a mail (%s); a fresh one reads it again",
                        died,
                        extra=event("reader failed"),
                    )
                    continue
                log.warning(
                    "a reader process ended on the same mail twice (%s)", died, extra=event("reader failed")
                )
                raise ReaderCrashed(
                    str(died),
                    "554 5.6.0 The gateway could not read this mail: reading it stopped twice. "
                    "Send the documents as PDF files, or one at a time.",
                ) from None
            self._give_back(child, leave=bool(answer[-1]) if len(answer) > 1 else True)
            return self._result(answer, raw)
        raise AssertionError("unreachable")

    async def stop(self, grace_s: float = 2.0) -> None:
        """Close each child's stdin, wait for it to exit, kill it if it does not."""
        self._stopping = True
        for future in self._line:
            if not future.done():
                future.set_exception(ReaderUnavailable("the gateway is stopping"))
        self._line.clear()
        for task in list(self._tasks):
            task.cancel()
        for child in list(self._children):
            child.ending = True
            stdin = child.process.stdin
            if stdin is not None:
                stdin.close()
            if not child.ready:
                child.end()
            try:
                await asyncio.wait_for(child.process.wait(), grace_s)
            except TimeoutError:
                child.end()
                await child.process.wait()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for child in list(self._children):
            self._forget(child)

    # -- one mail -----------------------------------------------------------------------------
    async def _take(self) -> _Child:
        """An idle ready child, else the first one freed; a mail that has waited
        ``_SPARE_AFTER_S`` (the children are slow: a hostile mail, perhaps) has a child
        started for it, up to ``max_processes``. Not at once: in an ordinary burst a child
        is free within milliseconds, and more children than cores would only slow it."""
        if self._stopping:
            raise ReaderUnavailable("the gateway is stopping")
        while self._idle:
            child = self._idle.popleft()
            if child.alive:
                return child
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Child] = loop.create_future()
        self._line.append(future)
        if not any(c.alive for c in self._children) and not self._starting:
            self._start_one()  # none at all (all ended): one at once
        spare = loop.call_later(_SPARE_AFTER_S, self._spare_for, future)
        try:
            async with asyncio.timeout(self.budget.wall_s):
                return await future
        except (TimeoutError, asyncio.CancelledError) as err:
            if future.done() and not future.cancelled():  # handed a child as time ran out
                self._give_back(future.result(), leave=False)
            if isinstance(err, asyncio.CancelledError):
                raise
            raise ReaderUnavailable(
                "no reader process was free in time",
                "451 4.3.0 The gateway is busy reading other mails; please try again later.",
            ) from None
        finally:
            spare.cancel()
            with contextlib.suppress(ValueError):
                self._line.remove(future)

    def _spare_for(self, future: asyncio.Future[_Child]) -> None:
        """``future``'s mail still waits: start a child for it, unless one is on its way."""
        if future.done() or self._stopping:
            return
        coming = self._starting + sum(1 for c in self._children if c.alive and not c.ready)
        waiting = sum(1 for f in self._line if not f.done())
        if coming < waiting and len(self._children) + self._starting < self.max_processes:
            self._start_one()

    async def _ask(self, child: _Child, raw: bytes, limits: ExtractionLimits) -> tuple[Any, ...]:
        """Hand ``raw`` to ``child`` and wait for its answer within the budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget.wall_s
        turn = False
        done = False
        child.reading = True
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    if child.limits is not limits:  # the same for every mail: sent once
                        await child.send(("limits", limits))
                        child.limits = limits
                    await child.send_mail(raw)
                while True:
                    async with asyncio.timeout_at(deadline):
                        message = await child.receive()
                    if message == ("turn",) and not turn:
                        asked = loop.time()
                        try:
                            async with asyncio.timeout(self.budget.wall_s):
                                await self._turns.acquire()
                        except TimeoutError:
                            raise ReaderUnavailable(
                                "no LibreOffice turn in time",
                                "451 4.3.2 The gateway is busy converting other documents; please "
                                "try again later.",
                            ) from None
                        turn = True
                        deadline += loop.time() - asked  # waiting in line is not reading
                        await child.send(("go",))
                        continue
                    done = True
                    return message
            except TimeoutError:
                child.end()
                log.warning(
                    "a reader process took longer than %g s on a mail; it was stopped",
                    self.budget.wall_s,
                    extra=event("reader over budget", budget="time"),
                )
                raise OverBudget("wall time", _too_long(self.budget)) from None
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                code = await _exit_code(child.process)
                if child.crowded_out == "alone":
                    raise OverBudget(
                        "total memory, alone",
                        f"552 5.3.4 This mail needs more memory to read than the gateway allows "
                        f"({self.budget.total_bytes >> 20} MB). Send the documents as PDF "
                        "files, smaller images, or one at a time.",
                    ) from None
                if child.crowded_out:
                    raise OverBudget(
                        "total memory",
                        "452 4.3.1 The gateway is reading other large mails and has no memory free "
                        "for this one; please try again later.",
                    ) from None
                if code == -signal.SIGXCPU:
                    log.warning(
                        "a reader process used more than %g s of CPU on a mail; it ended",
                        self.budget.cpu_s,
                        extra=event("reader over budget", budget="cpu"),
                    )
                    raise OverBudget("cpu time", _too_long(self.budget)) from None
                raise _Died(f"exit code {code}") from err
            except pickle.UnpicklingError as err:
                log.error(
                    "a reader process answered nonsense (%s); it was stopped",
                    err,
                    extra=event("reader failed"),
                )
                raise _Died("nonsense") from None
        finally:
            child.reading = False
            if turn:
                self._turns.release()
            if not done:  # over budget, died, or the client went away: it may be mid-mail
                child.end()

    def _result(self, answer: tuple[Any, ...], raw: bytes) -> ReadMail:
        match answer:
            case ("ok", ReadMail() as result, _):
                return _spans_into(result, raw)
            case ("refused", str(kind), str(sentence), _):
                raise _REFUSALS.get(kind, DocumentError)(sentence)
            case ("over", "memory", _):
                log.warning(
                    "a mail needed more than %d MB to read; refused",
                    self.budget.memory_bytes >> 20,
                    extra=event("reader over budget", budget="memory"),
                )
                raise OverBudget(
                    "memory",
                    f"552 5.3.4 This mail needs more memory to read than the gateway allows "
                    f"({self.budget.memory_bytes >> 20} MB). Send the documents as PDF "
                    "files, smaller images, or one at a time.",
                )
            case ("failed", str(why), _):
                log.error("a reader process could not read a mail: %s", why, extra=event("reader failed"))
                raise ReaderCrashed(
                    why,
                    "554 5.6.0 The gateway could not read this mail. Send the documents as PDF "
                    "files, or one at a time.",
                )
        log.error("a reader process answered nonsense; it was stopped", extra=event("reader failed"))
        raise ReaderCrashed(
            "nonsense", "451 4.3.0 The gateway could not read your mail; please try again later."
        )

    def _give_back(self, child: _Child, *, leave: bool) -> None:
        """``child`` is free again: to the first mail in line, else idle; or it leaves."""
        if leave or not child.alive or self._stopping:
            if child.alive:
                child.ending = True
                stdin = child.process.stdin
                if stdin is not None:
                    stdin.close()  # it exits; _watch replaces it
            return
        while self._line:
            future = self._line.popleft()
            if not future.done():
                future.set_result(child)
                return
        child.idle_since = time.monotonic()
        self._idle.append(child)
        if len(self._children) > self.processes:
            asyncio.get_running_loop().call_later(IDLE_S, self._retire, child)

    def _retire(self, child: _Child) -> None:
        quiet = time.monotonic() - child.idle_since >= IDLE_S - 0.01
        if child in self._idle and quiet and len(self._children) > self.processes:
            self._idle.remove(child)
            self._give_back(child, leave=True)

    # -- children -------------------------------------------------------------------------------
    def _start_one(self) -> None:
        if self._stopping:
            return
        self._starting += 1
        task = asyncio.create_task(self._run_child(), name="reader")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_child(self) -> None:
        """Start one child, hand it to the pool once ready, and replace it when it ends."""
        counted = True
        child: _Child | None = None
        try:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            child = await self._spawn()
            self._starting -= 1
            counted = False
            if child is None:
                self._stillborn += 1
                self._after_stillborn()
                return
            self._children.add(child)
            try:
                async with asyncio.timeout(_READY_WITHIN_S):
                    hello = await child.receive()
                if hello != ("ready",):
                    raise ValueError(f"said {hello!r}")
            except Exception as err:
                log.warning(
                    "a reader process did not start: %s",
                    err or type(err).__name__,
                    extra=event("reader failed"),
                )
                child.end()
            else:
                child.ready = True
                child.idle_bytes = _tree_resident_bytes(child.process.pid)
                self._first_ready.set()
                self._stillborn = 0
                self._give_back(child, leave=False)
            code = await child.process.wait()
            if not child.ready:
                self._stillborn += 1
                self._after_stillborn()
            elif not (child.ending or child.reading):
                log.warning(
                    "a reader process ended (exit code %s); another one is started",
                    code,
                    extra=event("reader ended", code=code),
                )
        finally:
            if counted:
                self._starting -= 1
            if child is not None:
                self._forget(child)
        if not self._stopping and len(self._children) + self._starting < self.processes:
            self._start_one()

    def _after_stillborn(self) -> None:
        if self._stillborn % _GIVE_UP_AFTER:
            return
        wait = min(_RETRY_MAX_S, _RETRY_MIN_S * 2 ** (self._stillborn // _GIVE_UP_AFTER - 1))
        self._paused_until = time.monotonic() + wait
        if self._stillborn == _GIVE_UP_AFTER:
            log.warning(
                "reader processes ended %d times in a row before they were ready; mails wait "
                "(then get 451) while they are tried again every %g s or more",
                self._stillborn,
                wait,
                extra=event("reader failed"),
            )

    def _forget(self, child: _Child) -> None:
        self._children.discard(child)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        child.close_shared()
        shutil.rmtree(child.home, ignore_errors=True)

    async def _spawn(self) -> _Child | None:
        home = tempfile.mkdtemp(prefix="faxgw-reader-")
        user = self._user() if self._switch_user else None
        if user is not None:
            os.chown(home, user.pw_uid, user.pw_gid)
        options = {
            "memory_bytes": self.budget.memory_bytes,
            "ceiling_bytes": max(self.budget.memory_bytes, _OFFICE_CEILING_BYTES),
            "cpu_s": self.budget.cpu_s,
            "home": home,
            "readable": [*sandbox.SYSTEM_READABLE, *sandbox.python_readable()],
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": home,
            "TMPDIR": home,
            "MALLOC_ARENA_MAX": "2",
        }
        shared, shared_fd = _shared_buffer()
        if shared_fd is not None:
            options["shared_fd"] = shared_fd
        command = [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_PARENT, json.dumps(options)]
        fds: tuple[int, ...] = (shared_fd,) if shared_fd is not None else ()
        ids: dict[str, Any] = {}
        if user is not None:
            ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                    cwd=home,
                    limit=_PIPE_BYTES,
                    start_new_session=True,  # its own group: LibreOffice is killed with it
                    pass_fds=fds,
                    **ids,
                )
            except PermissionError as err:
                if not ids:
                    raise
                log.warning(
                    "a reader process cannot run as %s (%s); reader processes run as the "
                    "gateway's own user, confined as far as the kernel allows",
                    user.pw_name if user else "?",
                    err,
                    extra=event("reader user"),
                )
                self._switch_user = False
                os.chown(home, os.getuid(), os.getgid())
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                    cwd=home,
                    limit=_PIPE_BYTES,
                    start_new_session=True,
                    pass_fds=fds,
                )
        except OSError as err:
            log.warning("cannot start a reader process: %s", err, extra=event("reader failed"))
            shutil.rmtree(home, ignore_errors=True)
            if shared is not None:
                shared.close()
            return None
        finally:
            if shared_fd is not None:
                os.close(shared_fd)  # the child has its own; the mapping stays
        _widen_pipe(process.stdin)
        return _Child(process, home, shared)

    def _user(self) -> pwd.struct_passwd | None:
        for name in (self.user, "nobody"):
            if not name:
                continue
            try:
                return pwd.getpwnam(name)
            except KeyError:
                if name == self.user:
                    log.warning(
                        "smtp.reader_user %r does not exist; reader processes run as nobody",
                        name,
                        extra=event("reader user"),
                    )
                    self.user = ""
        return None


class _Died(Exception):
    """The child ended (or babbled) before answering; the mail may or may not be why."""


def _too_long(budget: ReaderBudget) -> str:
    return (
        f"554 5.6.0 This mail takes too long to read (more than {budget.wall_s:g} s, or "
        f"{budget.cpu_s:g} s of work); the gateway does not fax it. Send the documents as PDF "
        "files, or one at a time."
    )


def _tree_resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (LibreOffice), from /proc; 0 unknown."""
    total, todo, seen = 0, [pid], set()
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * page
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(child) for child in children.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


async def _exit_code(process: asyncio.subprocess.Process) -> int | None:
    """The child's exit code once it has ended (killed if it lingers with a broken pipe)."""
    try:
        return await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()


def _widen_pipe(writer: asyncio.StreamWriter | None) -> None:
    """Let the pipe to a child hold a few mails, so a write rarely waits (Linux only)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    pipe = writer.transport.get_extra_info("pipe") if writer is not None else None
    if set_size is not None and pipe is not None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the child is gone already
            fcntl.fcntl(pipe.fileno(), set_size, _PIPE_BYTES)


def _shared_buffer() -> tuple[mmap.mmap | None, int | None]:
    """A fresh buffer of ``SHARED_BYTES`` for one child: mapped here, its descriptor to be
    passed to the child (None, None where memfd_create is missing: the pipe only)."""
    if not hasattr(os, "memfd_create"):
        return None, None
    fd = -1
    try:
        fd = os.memfd_create("faxgw-mail")  # close-on-exec: only pass_fds hands it on
        os.ftruncate(fd, SHARED_BYTES)
        return mmap.mmap(fd, SHARED_BYTES), fd
    except OSError:
        if fd >= 0:
            os.close(fd)
        return None, None


# -- the child ---------------------------------------------------------------------------------
def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


@dataclass(frozen=True)
class _InTurn:
    """An office converter that first waits for a LibreOffice turn from the parent."""

    converter: OfficeConverter
    wait_turn: Callable[[], None]

    def __call__(self, data: bytes, kind: str, filename: str, timeout_s: float) -> bytes:
        self.wait_turn()
        return self.converter(data, kind, filename, timeout_s)


class _Turn:
    """In the child: one mail's LibreOffice turn, asked of the parent the first time only."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], receive: Callable[[], Any]) -> None:
        self._send, self._receive, self._taken = send, receive, False

    def wait(self) -> None:
        if not self._taken:
            self._send(("turn",))
            if self._receive() != ("go",):
                raise SystemExit(0)  # the gateway closed our stdin
            self._taken = True


def _answer(raw: bytes, limits: ExtractionLimits) -> tuple[Any, ...]:
    try:
        read = read_mail(raw, limits)
    except MemoryError:
        return ("over", "memory")
    except tuple(_REFUSALS.values()) as err:
        return ("refused", type(err).__name__, str(err))
    except Exception as err:  # a bug, or a library's own failure on a hostile file
        return ("failed", f"{type(err).__name__}: {err}"[:500])
    return ("ok", _left_behind(read))


def _warm_up() -> None:
    """Import now what reading may need later, before confinement narrows what is readable."""
    import pikepdf  # noqa: F401  (page checks and repairs)
    from PIL import Image

    Image.init()  # every image plugin


def child_main(options_json: str = "{}") -> None:
    """Confine this process, then read requests from stdin until it ends, answer each on
    stdout; leave after an answer when reading made this process grow."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent says when: stdin ends
        signal.signal(signum, signal.SIG_IGN)
    options = json.loads(options_json)
    requests = sys.stdin.buffer
    replies = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot break a frame
    with contextlib.suppress(ImportError):
        _warm_up()
    if options:
        home = options["home"]
        missing = sandbox.confine(
            memory_bytes=int(options["memory_bytes"]),
            ceiling_bytes=int(options["ceiling_bytes"]),
            readable=options["readable"],
            writable=[home, *sandbox.SYSTEM_WRITABLE],
        )
        if missing:
            print(f"reader: not applied here: {', '.join(missing)}", file=sys.stderr)
    cpu_s = float(options.get("cpu_s", 0))
    shared: mmap.mmap | None = None
    if "shared_fd" in options:
        shared = mmap.mmap(int(options["shared_fd"]), 0)
        os.close(int(options["shared_fd"]))

    def send(reply: tuple[Any, ...]) -> None:
        frame = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(_LENGTH.pack(len(frame)) + frame)
        while data:
            data = data[os.write(replies, data) :]

    def receive() -> tuple[Any, ...] | None:
        header = _read_exactly(requests, _LENGTH.size)
        body = _read_exactly(requests, _LENGTH.unpack(header)[0]) if header else None
        return None if body is None else pickle.loads(body)  # from the gateway's own code

    mail_limits = ExtractionLimits()
    try:
        send(("ready",))
        baseline = sandbox.resident_bytes()
        while True:
            try:
                request = receive()
                while request is not None and request[0] == "limits":
                    mail_limits = request[1]
                    request = receive()
                raw = None
                if request and request[0] == "read":
                    raw = _read_exactly(requests, request[1])
                elif request and request[0] == "mapped" and shared is not None and request[1] <= len(shared):
                    raw = shared[: request[1]]  # copied out: the gateway's next mail goes there
            except MemoryError:  # the mail alone is more than the budget
                send(("over", "memory", True))
                return
            if request is None or raw is None:
                return  # the gateway closed our stdin, or died
            limits = mail_limits
            if limits.office_converter is not None:
                turn = _Turn(send, receive)
                limits = dataclasses.replace(
                    limits, office_converter=_InTurn(limits.office_converter, turn.wait)
                )
            if cpu_s:
                sandbox.cpu_budget(cpu_s)
            answer = _answer(raw, limits)
            if cpu_s:
                sandbox.cpu_unbounded()
            del raw, limits
            leave = answer[0] == "over" or sandbox.resident_bytes() - baseline > _GROWTH_BYTES
            send((*answer, leave))
            if leave:
                return
    except BrokenPipeError:
        return  # the gateway is gone

"""What every outbound benchmark shares: PDFs, mails, child processes, an SMTP blaster.

Child processes (each in its own temp dir, each bound to 127.0.0.1 port 0):

- ``serve``: the gateway, started through ``bench/_serve.py`` (the same ``serve()`` the
  CLI runs, plus a SIGUSR1 hook that logs ``store.commits``), or with ``cli=True``
  exactly as ``python -m gateway.cli serve --config <toml>`` (no commit count);
- ``simulator``: ``python -m gateway.cli simulator --listen 127.0.0.1:0``, so the eFax
  stand-in never shares a process (CPU, memory) with the gateway;
- ``bare``: ``bench/_bare_smtp.py``, aiosmtpd answering 250 to everything.

``Children`` owns them: leaving its ``with`` block (normally or on error) sends
SIGTERM to each one it started, by pid, then SIGKILL after a grace period.

A gateway's store is a temp SQLite file unless ``database_url`` says otherwise;
``Databases`` hands out those URLs per backend: for ``postgresql``, a fresh database on
one throwaway server (``tests/pgcluster.py``), started on first use and stopped (its
directory deleted) when the ``with`` block ends, also on error.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
BACKENDS = ("sqlite", "postgresql")
RECIPIENT = "13235551212@fax.local"
# The load comes from SENDERS addresses spread over MAILBOXES mailboxes (sender n belongs
# to mailbox n % MAILBOXES), so that 2,000 mails stay within the default sending limits
# (policy.faxes_per_hour_per_sender 60, ..._per_mailbox 300): the limits stay on and
# their cost is measured, as in production.
MAILBOXES = 10
SENDERS = 50


def sender(index: int) -> str:
    """The envelope and header sender of mail ``index``."""
    n = index % SENDERS
    return f"s{n:02d}@m{n % MAILBOXES}.example.com"


START_TIMEOUT_S = 30.0
STOP_GRACE_S = 25.0  # the gateway's own shutdown grace is 20 s


# -- documents and mails ----------------------------------------------------------------
def make_pdf(target_bytes: int) -> bytes:
    """A valid one-page PDF of about ``target_bytes``: a grey image of random pixels.

    The pixels are ``os.urandom`` (incompressible, uncompressed in the file), so the
    size on the wire is the size of the document; pypdf reads it without decoding them.
    """
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, NumberObject, StreamObject

    side = max(8, int(max(0, target_bytes - 1400) ** 0.5))
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    image = StreamObject()
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(side),
            NameObject("/Height"): NumberObject(side),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    image.set_data(os.urandom(side * side))
    resources = DictionaryObject({NameObject("/Im0"): writer._add_object(image)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/XObject"): resources})
    content = StreamObject()
    content.set_data(b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


_INDEX = b"@@INDEX@@"
_SENDER = b"@@SENDER@@@example.com"


@dataclass(frozen=True)
class MailFactory:
    """DATA payloads ready for the wire (CRLF, dot-stuffed, ``.`` line included).

    One template, with the mail's index in Subject and Message-ID, so 2,000 distinct
    mails cost one 100 KB template in memory, not 2,000 copies.
    """

    template: bytes

    @classmethod
    def for_pdf(cls, pdf: bytes) -> MailFactory:
        msg = EmailMessage()
        msg["From"] = _SENDER.decode()
        msg["To"] = RECIPIENT
        msg["Subject"] = "bench mail " + _INDEX.decode()
        msg["Message-ID"] = f"<bench-{_INDEX.decode()}@example.com>"
        msg.set_content("Please fax the attached document.\n")
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="document.pdf")
        wire = msg.as_bytes(policy=SMTP_POLICY)
        wire = re.sub(rb"(?m)^\.", b"..", wire)  # dot-stuffing (RFC 5321 4.5.2)
        if not wire.endswith(b"\r\n"):
            wire += b"\r\n"
        return cls(wire + b".\r\n")

    def data(self, index: int) -> bytes:
        return self.template.replace(_INDEX, b"%06d" % index).replace(_SENDER, sender(index).encode())

    @property
    def size(self) -> int:
        return len(self.template) - 3


# -- SMTP load ----------------------------------------------------------------------------
@dataclass
class BlastResult:
    mails: int
    sessions: int
    start_wall: float  # time.time() when the sessions were released
    elapsed_s: float  # release -> last DATA reply
    latencies_s: list[float]
    refused: list[str]

    @property
    def rate(self) -> float:
        return self.mails / self.elapsed_s

    def latency_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self, label: str) -> str:
        return (
            f"{label:<8} {self.mails} mails in {self.elapsed_s:6.2f} s = {self.rate:7.1f} mails/s"
            f"  (DATA reply p50 {self.latency_ms(0.5):.0f} ms, p99 {self.latency_ms(0.99):.0f} ms)"
        )


def blast(port: int, mails: int, sessions: int, factory: MailFactory, timeout_s: float = 120) -> BlastResult:
    """Send ``mails`` mails over ``sessions`` parallel SMTP sessions (one thread each).

    Each session connects and says EHLO before the common start, then sends its share as
    consecutive transactions (MAIL, RCPT, DATA) on its one connection.
    """
    shares = [list(range(n, mails, sessions)) for n in range(sessions)]
    ready = threading.Barrier(sessions + 1)
    done_at = [0.0] * sessions
    latencies: list[list[float]] = [[] for _ in range(sessions)]
    refused: list[str] = []
    errors: list[BaseException] = []

    def session(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=timeout_s) as client:
                client.ehlo("bench.example.com")
                ready.wait()
                for index in shares[n]:
                    payload = factory.data(index)
                    t0 = time.perf_counter()
                    code, text = client.mail(sender(index))
                    if code == 250:
                        code, text = client.rcpt(RECIPIENT)
                    if code in (250, 251):
                        client.putcmd("data")
                        code, text = client.getreply()
                        if code == 354:
                            client.send(payload)
                            code, text = client.getreply()
                    latencies[n].append(time.perf_counter() - t0)
                    if code != 250:
                        refused.append(f"{code} {text.decode(errors='replace')}")
                        client.rset()
                done_at[n] = time.perf_counter()
        except BaseException as err:  # reported by the caller; never hang the barrier
            errors.append(err)
            ready.abort()

    threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(sessions)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a session failed: reported below
        ready.wait(timeout=30)
    start, start_wall = time.perf_counter(), time.time()
    for t in threads:
        t.join(timeout_s * 4)
    if errors:
        raise RuntimeError(f"an SMTP session failed: {errors[0]!r}") from errors[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("an SMTP session did not finish in time")
    return BlastResult(
        mails=mails,
        sessions=sessions,
        start_wall=start_wall,
        elapsed_s=max(done_at) - start,
        latencies_s=[x for per in latencies for x in per],
        refused=refused,
    )


def send_one(port: int, factory: MailFactory, timeout_s: float = 120) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout_s) as client:
        client.ehlo("bench.example.com")
        code, text = client.mail(sender(0))
        if code == 250:
            code, text = client.rcpt(RECIPIENT)
        if code == 250:
            client.putcmd("data")
            code, text = client.getreply()
            if code == 354:
                client.send(factory.data(0))
                code, text = client.getreply()
        return code, text.decode(errors="replace")


# -- child processes ----------------------------------------------------------------------
class LogFile:
    """A child's output file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._text = ""

    def wait_for(self, pattern: str, proc: subprocess.Popen[bytes], timeout_s: float) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
            cut = chunk.rfind(b"\n") + 1  # only whole lines
            self._text += chunk[:cut].decode("utf-8", "replace")
            self._offset += cut
            found = regex.search(self._text)
            if found:
                self._text = self._text[found.end() :]
                return found
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{self.path.name}: the process exited ({proc.returncode}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.path.name}: no line matching {pattern!r}:\n{self.tail()}")
            time.sleep(0.02)

    def tail(self, lines: int = 15) -> str:
        text = self.path.read_text("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: LogFile
    address: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Children:
    """Starts the child processes and always stops them (by pid) on the way out."""

    workdir: Path
    started: list[Child] = field(default_factory=list)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for child in reversed(self.started):
            if exc_type is not None:  # a failed run: show what each child said last
                print(f"--- last lines of {child.name}:\n{child.log.tail()}", file=sys.stderr)
            self.stop(child)

    def _spawn(self, name: str, argv: list[str], cwd: Path) -> Child:
        cwd.mkdir(parents=True, exist_ok=True)
        path = cwd / f"{name}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_clean_env(),
            )
        child = Child(name, proc, LogFile(path))
        self.started.append(child)
        return child

    def stop(self, child: Child) -> int | None:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(5)
        with contextlib.suppress(ValueError):
            self.started.remove(child)
        return child.proc.returncode

    def simulator(self, name: str = "simulator") -> Child:
        child = self._spawn(
            name,
            [sys.executable, "-m", "gateway.cli", "simulator", "--listen", "127.0.0.1:0"],
            self.workdir / name,
        )
        child.address = child.log.wait_for(r"listening on (http://\S+)", child.proc, START_TIMEOUT_S)[1]
        return child

    def bare(self, name: str = "bare", max_message_bytes: int = 50_000_000) -> Child:
        child = self._spawn(
            name, [sys.executable, str(BENCH / "_bare_smtp.py"), str(max_message_bytes)], self.workdir / name
        )
        child.address = child.log.wait_for(r"SMTP listening on (\S+:\d+)", child.proc, START_TIMEOUT_S)[1]
        return child

    def gateway(
        self,
        name: str,
        simulator_url: str,
        *,
        cli: bool = False,
        database_url: str | None = None,
        **sections: dict[str, Any],
    ) -> Child:
        """``serve`` with its own temp dir; its store is ``database_url`` (``sqlite:///...``
        or ``postgresql://...``), a SQLite file in that dir when None."""
        cwd = self.workdir / name
        cwd.mkdir(parents=True, exist_ok=True)
        config = cwd / "gateway.toml"
        config.write_text(gateway_toml(cwd, simulator_url, sections, database_url), encoding="utf-8")
        if cli:
            argv = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        else:
            argv = [sys.executable, str(BENCH / "_serve.py"), str(config)]
        child = self._spawn(name, argv, cwd)
        child.address = child.log.wait_for(r"SMTP listening on (\S+:\d+)", child.proc, START_TIMEOUT_S)[1]
        return child


def port_of(child: Child) -> int:
    return int(child.address.rsplit(":", 1)[1])


def gateway_toml(
    workdir: Path,
    simulator_url: str,
    sections: dict[str, dict[str, Any]],
    database_url: str | None = None,
) -> str:
    base: dict[str, dict[str, Any]] = {
        "smtp": {"listen": "127.0.0.1:0"},
        "http": {"listen": "127.0.0.1:0"},
        "database": {"url": database_url or f"sqlite:///{workdir / 'gateway.db'}"},
        "relay": {"maildir": str(workdir / "mail")},
        "efax": {"base_url": simulator_url, "app_id": "bench-app", "api_key": "bench-key"},
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    lines = []
    for key, values in base.items():
        lines.append(f"[{key}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    for n in range(MAILBOXES):
        lines += [
            "[[mailboxes]]",
            f'user_id = "bench-user-{n:04d}"',
            f'fax_number = "132355501{n:02d}"',
            f'senders = ["*@m{n}.example.com"]',
            f'deliver_to = ["reports@m{n}.example.com"]',
        ]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def commits(child: Child, timeout_s: float = 10) -> int:
    """The gateway's ``store.commits`` now (``_serve.py`` logs it on SIGUSR1)."""
    child.proc.send_signal(signal.SIGUSR1)
    return int(child.log.wait_for(r"bench: store\.commits=(\d+)", child.proc, timeout_s)[1])


# -- stores -------------------------------------------------------------------------------
class Databases:
    """Store URLs by backend: None (the gateway's temp SQLite file) or a new database on
    one throwaway PostgreSQL server, started at the first ``url("postgresql", ...)``.

    Leaving the ``with`` block stops the server and deletes its directory, also on error.
    """

    def __init__(self) -> None:
        self.cluster: Any = None  # tests.pgcluster.PgCluster, once started

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def url(self, backend: str, name: str) -> str | None:
        if backend == "sqlite":
            return None
        if backend != "postgresql":
            raise ValueError(f"unknown backend {backend!r}")
        if self.cluster is None:
            if str(BENCH.parent) not in sys.path:  # tests/ is not installed, only gateway/
                sys.path.insert(0, str(BENCH.parent))
            from tests.pgcluster import PgCluster

            cluster = PgCluster()
            self.cluster = cluster  # set first: close() must run even if start() fails
            cluster.start()
        url: str = self.cluster.create_database(name)
        return url


# -- the simulator's control endpoints ------------------------------------------------------
def sim_requests(simulator_url: str, **params: str) -> list[dict[str, Any]]:
    """The eFax-side requests the simulator recorded (``method=``, ``path=`` filter them)."""
    reply = httpx.get(f"{simulator_url}/_sim/requests", params=params, timeout=30)
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()
    return items


def sim_posts(simulator_url: str) -> list[dict[str, Any]]:
    """Every ``POST /faxes`` the simulator recorded."""
    return sim_requests(simulator_url, method="POST", path="/faxes")


def sim_faxes(simulator_url: str) -> list[dict[str, Any]]:
    """Every outbound fax the simulator holds (``client_reference_id``, ``created_at``, ...)."""
    reply = httpx.get(f"{simulator_url}/_sim/faxes", params={"direction": "OUTBOUND"}, timeout=30)
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()
    return items


def sim_fault(simulator_url: str, **fault: Any) -> dict[str, Any]:
    """Add a fault (``POST /_sim/faults``, see docs/simulator.md); ``count=None`` is forever."""
    reply = httpx.post(f"{simulator_url}/_sim/faults", json=fault, timeout=30)
    reply.raise_for_status()
    added: dict[str, Any] = reply.json()
    return added


def sim_post_count(simulator_url: str) -> int:
    reply = httpx.get(f"{simulator_url}/_sim/stats", timeout=30)
    reply.raise_for_status()
    return int(reply.json().get("POST /faxes", 0))


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


# -- /proc ---------------------------------------------------------------------------------
def proc_status_kb(pid: int, key: str) -> int:
    """``VmRSS`` / ``VmHWM`` of a process, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the gateway and its reader processes), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as f:
                    todo.extend(int(child) for child in f.read().split())
    return found


def tree_status_kb(pid: int, key: str) -> int:
    """``VmRSS`` / ``VmHWM`` summed over ``pid`` and its descendants, in KiB."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, KeyError):
            total += proc_status_kb(member, key)
    return total


@contextlib.contextmanager
def rss_sampler(pid: int, every_s: float = 0.01) -> Iterator[list[int]]:
    """Samples VmRSS (KiB) of ``pid`` and its descendants, summed, every ``every_s`` in a
    thread; the list fills while inside."""
    samples: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                samples.append(tree_status_kb(pid, "VmRSS"))
            stop.wait(every_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"

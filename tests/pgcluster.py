"""A throwaway PostgreSQL server on a loopback port, for tests and bench scripts.

``with PgCluster() as pg: pg.url()`` runs ``initdb`` into a temporary directory (as the
``postgres`` user when we are root: PostgreSQL refuses to run as root), with password
(SCRAM) authentication over 127.0.0.1 only, on a free port, fsync on. For outage tests it
can be stopped, restarted, or killed with SIGKILL (the postmaster and all its children,
as in a crash) and started again on the same port and data. ``close()`` always leaves
no server process and no directory behind, and runs at interpreter exit if forgotten.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

USER = "faxgw"  # the superuser initdb creates
OS_USER = "postgres"  # who runs the server when we are root
HOST = "127.0.0.1"
SERVER_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "200",
    "shared_buffers": "64MB",
}


class PgClusterError(RuntimeError):
    """initdb or pg_ctl failed; the message carries their output and the server log."""


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb, else ``pg_config --bindir``, else PATH."""

    def usable(path: Path) -> bool:
        return (path / "initdb").is_file() and (path / "pg_ctl").is_file()

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if usable(p)]
    if debian:
        return max(debian, key=version)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and usable(Path(out.stdout.strip())):
                return Path(out.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb is not None:
        for path in (Path(initdb).parent, Path(initdb).resolve().parent):
            if usable(path):
                return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL server in its own temporary directory; see the module docstring."""

    def __init__(self, bindir: Path | None = None, *, base_dir: str | None = None) -> None:
        self.bindir = bindir
        self.base_dir = base_dir  # for the temporary directory; the system default if None
        self.password = secrets.token_hex(16)
        self.port = 0
        self.root: Path | None = None  # the temporary directory: data/, server.log, the socket
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- paths ----------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "the cluster was not started"
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None, "the cluster was not started"
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        assert self.port, "the cluster was not started"
        return f"postgresql://{USER}:{self.password}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    def log_text(self) -> str:
        """The server's log so far ("" if there is none yet)."""
        if self.root is None:
            return ""
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> PgCluster:
        """initdb into a new temporary directory and start the server on a free port."""
        if self.root is not None:
            raise PgClusterError("start() was already called; use start_again() after a stop")
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise PgClusterError("PostgreSQL is not installed (apt-get install postgresql)")
        owner = _server_owner()
        self.root = Path(tempfile.mkdtemp(prefix="pgcluster-", dir=self.base_dir))
        self._finalizer = weakref.finalize(self, _cleanup, self.root)
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)

        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        try:
            self._run(
                "initdb",
                "-D", str(self.datadir),
                "--auth=scram-sha-256",
                f"--username={USER}",
                f"--pwfile={pwfile}",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",  # initdb's own flush only; the server runs with fsync on
            )  # fmt: skip
        finally:
            pwfile.unlink()
        # Password over loopback TCP, nothing else (no unix-socket or trust lines).
        (self.datadir / "pg_hba.conf").write_text(
            "# written by tests/pgcluster.py\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )

        for attempt in range(3):  # another process may take the free port before we bind it
            self.port = free_port()
            try:
                self.start_again()
                return self
            except PgClusterError:
                if attempt == 2 or "could not bind" not in self.log_text():
                    raise
        raise AssertionError("unreachable")

    def start_again(self, timeout: float = 60) -> None:
        """Start the server on the same port and data, after stop() or kill()."""
        if self.is_running():
            raise PgClusterError("the server is already running")
        self._remove_stale_lockfiles()
        options = [f"-p {self.port}", f"-c listen_addresses={HOST}"]
        options.append(f"-c unix_socket_directories={shlex.quote(str(self.root))}")
        options += [f"-c {name}={value}" for name, value in SERVER_SETTINGS.items()]
        self._run(
            "pg_ctl", "start", "-w", "-t", str(int(timeout)),
            "-D", str(self.datadir), "-l", str(self.logfile), "-o", " ".join(options),
        )  # fmt: skip

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """pg_ctl stop with the given mode (smart, fast, immediate); nothing if not running."""
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-t", str(int(timeout)), "-m", mode, "-D", str(self.datadir))

    def restart(self) -> None:
        self.stop("fast")
        self.start_again()

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL the postmaster and every backend at once, as a crash would; wait until gone."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGSTOP)  # it forks no new backend while we look
        pids = {postmaster, *_processes_in(self.datadir)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids) or _processes_in(self.datadir):
            if time.monotonic() > deadline:
                raise PgClusterError(f"PostgreSQL processes still alive {timeout} s after SIGKILL")
            time.sleep(0.01)

    def close(self) -> None:
        """Stop the server (SIGKILL if it will not stop) and delete the directory; idempotent."""
        if self.root is None:
            return
        try:
            if self.is_running():
                self.stop("fast", timeout=30)
        except PgClusterError:
            pass  # _cleanup kills what is left
        finally:
            if self._finalizer is not None:
                self._finalizer()
            self.root = None
            self.port = 0

    def __enter__(self) -> PgCluster:
        if self.root is None:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The live postmaster's pid, from postmaster.pid; None if it is not running."""
        if self.root is None:
            return None
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def pids(self) -> set[int]:
        """Every live process of this server (their working directory is the data directory)."""
        found = _processes_in(self.datadir) if self.root is not None else set()
        postmaster = self.postmaster_pid()
        return found | {postmaster} if postmaster is not None else found

    def _remove_stale_lockfiles(self) -> None:
        # After kill() the dead postmaster lingers as a zombie when nothing reaps orphans
        # (PID 1 in some containers); PostgreSQL would take its lock files for a live server.
        assert self.root is not None
        for lockfile in [self.datadir / "postmaster.pid", *self.root.glob(".s.PGSQL.*.lock")]:
            try:
                pid = int(lockfile.read_text().split("\n", 1)[0])
            except (FileNotFoundError, ValueError):
                continue
            if not _alive(pid):
                lockfile.unlink(missing_ok=True)

    # -- databases ------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; its URL."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE name, ending its sessions first; nothing if there is none."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self) -> psycopg.Connection[Any]:
        import psycopg  # here, so that importing this module (conftest) does not need it

        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10)

    # -- running the tools ----------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> None:
        assert self.bindir is not None and self.root is not None
        owner = _server_owner()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", HOME=str(self.root))
        try:
            out = subprocess.run(
                [str(self.bindir / tool), *args],
                cwd=self.root,
                env=env,
                user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None,
                extra_groups=[] if owner else None,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{tool} {args[0]} did not finish:\n{self.log_text()}") from exc
        if out.returncode != 0:
            raise PgClusterError(
                f"{tool} failed ({out.returncode}): {out.stdout}{out.stderr}\n"
                f"--- server log ---\n{self.log_text()[-4000:]}"
            )


def _server_owner() -> pwd.struct_passwd | None:
    """The user to run initdb and the server as: postgres when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise PgClusterError(
            f"PostgreSQL will not run as root and there is no {OS_USER!r} user to run it as"
        ) from None


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signalable(pid)
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes_in(datadir: Path) -> set[int]:
    """Live processes whose working directory is datadir: the postmaster and its children."""
    target = str(datadir.resolve()) if datadir.exists() else str(datadir)
    found: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == target and _alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def _cleanup(root: Path) -> None:
    """SIGKILL whatever still runs in root/data, then delete root. Also runs at exit."""
    datadir = root / "data"
    pids = _processes_in(datadir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    shutil.rmtree(root, ignore_errors=True)

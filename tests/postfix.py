"""A throwaway Postfix of its own for the recipe test (docs/postfix.md).

``PostfixInstance(workdir, routes={...}).start()`` writes a private ``main.cf`` and
``master.cf`` into ``workdir/etc``, keeps its queue in ``workdir/queue`` and its log in
``workdir/maillog`` (no syslog), listens for SMTP on 127.0.0.1 at a free port (``port``,
chosen when the instance is made), runs ``postmap`` for its tables and ``postfix -c
workdir/etc start``; ``stop()`` stops it (``abort`` if need be) and waits for its master
process to end. ``routes`` is the transport map: domain -> next hop,
e.g. ``{"fax.local": "smtp:[127.0.0.1]:2525"}``. No DNS is used; only mail from
127.0.0.0/8 is taken (``mynetworks``), so nothing is an open relay.

Needs Debian's ``postfix`` package and root (the master drops to the ``postfix`` user).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"
MISSING = "Postfix is not installed (apt-get install postfix)"

# Every service this instance needs, as in Debian's master.cf but without chroot, local
# delivery or pickup; the smtpd line is added with its port.
SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def installed() -> bool:
    return os.access(POSTFIX, os.X_OK) and os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostfixInstance:
    def __init__(self, workdir: Path, *, routes: Mapping[str, str], hostname: str = "mta.example.test"):
        self.workdir = workdir
        self.etc = workdir / "etc"
        self.queue = workdir / "queue"
        self.maillog = workdir / "maillog"
        self.routes = dict(routes)
        self.hostname = hostname
        self.port = free_port()  # known before start: the gateway's relay.port points here

    def main_cf(self) -> str:
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.workdir / "data"}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.workdir}
myhostname = {self.hostname}
mydomain = example.test
myorigin = $myhostname
mydestination =
local_transport = error:5.1.1 no local delivery here
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = hash:{self.etc / "transport"}
smtpd_sender_login_maps = hash:{self.etc / "sender_logins"}
smtpd_sender_restrictions = reject_authenticated_sender_login_mismatch
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
"""

    def start(self, timeout: float = 30) -> PostfixInstance:
        self.etc.mkdir(parents=True, exist_ok=True)
        self.queue.mkdir(mode=0o755, exist_ok=True)
        (self.etc / "main.cf").write_text(self.main_cf())
        smtpd = f"127.0.0.1:{self.port} inet n       -       n       -       -       smtpd\n"
        (self.etc / "master.cf").write_text(smtpd + SERVICES)
        table = "".join(f"{domain} {hop}\n" for domain, hop in self.routes.items())
        (self.etc / "transport").write_text(table)
        (self.etc / "sender_logins").write_text("fax-gateway@example.com fax-gateway\n")
        for name in ("transport", "sender_logins"):  # as the recipe says: postmap, then start
            subprocess.run(
                [POSTMAP, "-c", str(self.etc), f"hash:{self.etc / name}"],
                check=True,
                capture_output=True,
                timeout=30,
            )
        self._postfix("start")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(512).startswith(b"220"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not answer on port {self.port}:\n{self.log()}")
            time.sleep(0.1)

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [POSTFIX, "-c", str(self.etc), command], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0 and command == "start":
            raise RuntimeError(f"postfix {command} failed: {result.stderr}\n{self.log()}")
        return result

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 20) -> None:
        pid = self.master_pid()
        self._postfix("stop")
        deadline = time.monotonic() + timeout
        while pid is not None and _alive(pid):
            if time.monotonic() > deadline:
                self._postfix("abort")
                deadline = time.monotonic() + timeout
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Two ``serve`` on one PostgreSQL, one killed with SIGKILL mid-load: does its work go on?

    uv run python bench/takeover.py [--lease-s 30] [--rate 6] [--load-s 50] [--kill-at-s 15]
                                    [--clients 4] [--pdf-kb 100] [--slow-s 0.5]

Set-up, each a child process on 127.0.0.1 port 0: a throwaway PostgreSQL server
(tests/pgcluster.py) with one database; the simulator, its ``POST /faxes`` slowed by
``--slow-s`` (a ``slow`` fault, every request), so each instance always has faxes in
flight; two gateways (bench/_serve.py) ``gw-a`` and ``gw-b`` sharing that database, with
the production lease settings (``workers.lease_s`` 30, ``heartbeat_s`` 5) unless
``--lease-s`` (then ``heartbeat_s`` is at most a third of it).

Load: ``--rate`` mails/s for ``--load-s`` s (same 100 KB PDF mails as accept_rate.py),
sent by ``--clients`` smtplib threads on a fixed schedule; mail n goes to gw-a when n is
even, to gw-b when odd. A client whose instance cannot be reached before the mail's
data went out (connection refused or closed) sends it to the other one, as an MTA
falls back to its second MX; a mail whose data went out but got no reply is counted as
interrupted and not sent again (its outcome is the gateway's, unknown to the client).

At ``--kill-at-s`` (as soon as gw-b holds a dispatch job, within 10 s), gw-b gets SIGKILL
and stays down. Right after, the jobs it held are read from the database (``state =
'active'`` and ``lease_owner`` ``host:<pid>:worker``). Once the load is over, the script
waits until every mail answered 250 has its fax at the simulator and every job gw-b held
has ended. Measured (one wall clock: gateways, simulator and script share the machine):

  accepted   mails answered 250 (their job id from "queued as <id>"), per instance
  takeover   kill -> gw-a's first eFax call for a job gw-b held (arrival at the
             simulator): the ``GET /faxes/sent`` search for the job id when gw-b had
             marked it submitting, or the ``POST /faxes``; and kill -> gw-a's first
             ``POST /faxes`` for one of them, if it had to send one (not when gw-b's
             own request had reached eFax and gw-a found the fax there)
  finished   kill -> the last job gw-b held ending (its ``jobs.updated_at``)
  handed on  kill -> the last accepted mail's fax created at the simulator (``created_at``)
  duplicates job ids with more than one fax at the simulator (``client_reference_id``),
             or more than one ``POST /faxes`` answered 201

Bar: every job gw-b held finished by gw-a within 60 s of the kill. Exit 0 when it is met
and every accepted mail has exactly one fax; 1 on a failed bar, a missing or doubled fax,
gw-b holding no job at the kill, or a child failing. Every process started (gateways and
their readers, simulator, PostgreSQL) is stopped on the way out, also when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import signal
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from _harness import (
    RECIPIENT,
    Children,
    Databases,
    MailFactory,
    make_pdf,
    port_of,
    process_tree,
    sender,
    sim_fault,
    sim_faxes,
    sim_requests,
    verdict,
    wait_until,
)

BAR_S = 60.0
HOLD_WAIT_S = 10.0  # after --kill-at-s, how long to wait for gw-b to hold a dispatch job
TERMINAL = ("done", "failed", "dead")
QUEUED_AS = re.compile(r"queued as (\S+)")


# -- the load ------------------------------------------------------------------------------------
@dataclass
class Sent:
    index: int
    port: int
    code: int | None  # None: the data went out and no reply came (the instance died)
    text: str
    job: str | None  # from "250 ... queued as <id>"


class Load:
    """``total`` mails on a fixed schedule (``rate`` a second) from ``clients`` threads,
    mail n preferring ``ports[n % 2]``; see the module docstring for the fall-back."""

    def __init__(self, ports: list[int], factory: MailFactory, rate: float, total: int, clients: int) -> None:
        self.ports, self.factory, self.rate, self.total = ports, factory, rate, total
        self.results: list[Sent] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        self.t0 = 0.0  # time.monotonic() of mail 0
        self.t0_wall = 0.0

    def start(self) -> None:
        self.t0, self.t0_wall = time.monotonic(), time.time()
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        self.join(60)

    def _client(self) -> None:
        conns: dict[int, smtplib.SMTP] = {}
        try:
            while not self._stop.is_set():
                with self._lock:
                    index = next(self._next)
                if index >= self.total:
                    return
                delay = self.t0 + index / self.rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                sent = self._send(conns, index)
                with self._lock:
                    self.results.append(sent)
        except BaseException as err:
            self.errors.append(err)
        finally:
            for client in conns.values():
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    client.close()

    def _send(self, conns: dict[int, smtplib.SMTP], index: int) -> Sent:
        preferred = self.ports[index % len(self.ports)]
        failures = []
        for port in [preferred, *(p for p in self.ports if p != preferred)]:
            data_sent = False
            try:
                client = conns.get(port)
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    conns[port] = client
                    client.ehlo("bench.example.com")
                code, text = client.mail(sender(index))
                if code == 250:
                    code, text = client.rcpt(RECIPIENT)
                if code in (250, 251):
                    client.putcmd("data")
                    code, text = client.getreply()
                    if code == 354:
                        data_sent = True  # from here on a broken connection leaves it unknown
                        client.send(self.factory.data(index))
                        code, text = client.getreply()
                reply = text.decode(errors="replace")
                if code != 250:
                    client.rset()
                found = QUEUED_AS.search(reply) if code == 250 else None
                return Sent(index, port, code, reply, found[1] if found else None)
            except (OSError, smtplib.SMTPException) as err:
                dropped = conns.pop(port, None)
                if dropped is not None:
                    with contextlib.suppress(OSError, smtplib.SMTPException):
                        dropped.close()
                if data_sent:
                    return Sent(index, port, None, f"no reply: {err!r}", None)
                failures.append(f"{port}: {err!r}")
        return Sent(index, preferred, None, "no instance reachable: " + "; ".join(failures), None)


# -- the database ----------------------------------------------------------------------------------
def held_jobs(url: str, pid: int) -> list[tuple[int, str, str]]:
    """(id, kind, ref) of the jobs the process ``pid`` of this host holds now."""
    owner = f"{socket.gethostname()}:{pid}:%"
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT id, kind, ref FROM jobs WHERE state = 'active' AND lease_owner LIKE %s ORDER BY id",
            (owner,),
        ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def job_states(url: str, ids: list[int]) -> dict[int, tuple[str, float, str | None]]:
    """id -> (state, updated_at, lease_owner)."""
    if not ids:
        return {}
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT id, state, updated_at, lease_owner FROM jobs WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {int(r[0]): (str(r[1]), float(r[2]), r[3]) for r in rows}


# -- processes -------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def reap_leftovers(pids: list[int], timeout_s: float = 10) -> list[int]:
    """Wait for these processes (a killed gateway's readers) to end; SIGKILL, by pid, any that
    do not within ``timeout_s``. Returns those that had to be killed."""
    wait_until(lambda: not any(_alive(p) for p in pids), timeout_s, 0.05)
    killed = [p for p in pids if _alive(p)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed


# -- the run -----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lease-s", type=float, default=None, help="workers.lease_s (default: the gateway's, 30)"
    )
    parser.add_argument("--rate", type=float, default=6.0, help="mails a second, both instances together")
    parser.add_argument("--load-s", type=float, default=50.0, help="how long mails are sent")
    parser.add_argument(
        "--kill-at-s", type=float, default=15.0, help="when gw-b is killed, after the first mail"
    )
    parser.add_argument("--clients", type=int, default=4, help="SMTP client threads")
    parser.add_argument("--pdf-kb", type=int, default=100)
    parser.add_argument(
        "--slow-s", type=float, default=0.5, help="delay the simulator adds to each POST /faxes"
    )
    args = parser.parse_args()
    if not 0 < args.kill_at_s < args.load_s:
        parser.error("--kill-at-s must fall within the load")

    workers: dict[str, Any] = {}
    if args.lease_s is not None:
        workers = {"lease_s": args.lease_s, "heartbeat_s": min(5.0, args.lease_s / 3)}
    lease_s, heartbeat_s = workers.get("lease_s", 30.0), workers.get("heartbeat_s", 5.0)
    total = int(args.rate * args.load_s)
    drain_timeout_s = max(120.0, 3 * lease_s)
    factory = MailFactory.for_pdf(make_pdf(args.pdf_kb * 1000))
    print(
        f"takeover: 2 serve on one PostgreSQL (lease_s {lease_s:g}, heartbeat_s {heartbeat_s:g}), "
        f"POST /faxes slowed by {args.slow_s:g} s; {total} mails of {factory.size / 1000:.0f} KB, "
        f"{args.rate:g}/s for {args.load_s:g} s over {args.clients} SMTP clients; gw-b killed (SIGKILL) "
        f"at +{args.kill_at_s:g} s; {os.cpu_count()} cores"
    )

    with (
        tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp,
        Databases() as databases,
        Children(Path(tmp)) as children,
    ):
        url = databases.url("postgresql", "takeover")
        assert url is not None
        sim = children.simulator()
        sim_fault(sim.address, kind="slow", method="POST", path="/faxes", delay_s=args.slow_s, count=None)
        sections = {"workers": workers} if workers else {}
        gw_a = children.gateway("gw-a", sim.address, database_url=url, **sections)
        gw_b = children.gateway("gw-b", sim.address, database_url=url, **sections)
        names = {port_of(gw_a): "gw-a", port_of(gw_b): "gw-b"}
        victim_pid = gw_b.pid

        load = Load([port_of(gw_a), port_of(gw_b)], factory, args.rate, total, args.clients)
        load.start()
        try:
            time.sleep(max(0.0, load.t0 + args.kill_at_s - time.monotonic()))
            wait_until(
                lambda: any(k == "dispatch" for _, k, _ in held_jobs(url, victim_pid)), HOLD_WAIT_S, 0.05
            )
            tree = process_tree(victim_pid)
            os.kill(victim_pid, signal.SIGKILL)
            kill_wall = time.time()
            gw_b.proc.wait(10)
            time.sleep(0.2)  # a COMMIT already sent when it died is through now
            held = held_jobs(url, victim_pid)
            killed_late = reap_leftovers([p for p in tree if p != victim_pid])
            print(
                f"killed gw-b (pid {victim_pid}) at +{kill_wall - load.t0_wall:.1f} s; it held {len(held)} "
                f"job(s): {dict(Counter(k for _, k, _ in held))}"
                + (f"; its readers {killed_late} had to be killed too" if killed_late else "")
            )
            if not load.join(args.load_s + 120):
                raise RuntimeError("the SMTP load did not finish in time")
        finally:
            load.stop()
        if load.errors:
            raise RuntimeError(f"an SMTP client failed: {load.errors[0]!r}") from load.errors[0]
        load_end = time.time()

        accepted = {s.job: s for s in load.results if s.code == 250 and s.job}
        held_ids = [job_id for job_id, _, _ in held]

        def drained() -> bool:
            have = {f["client_reference_id"] for f in sim_faxes(sim.address)}
            states = job_states(url, held_ids)
            return accepted.keys() <= have and all(s in TERMINAL for s, _, _ in states.values())

        done = wait_until(drained, drain_timeout_s, 0.5)
        faxes = sim_faxes(sim.address)
        requests = sim_requests(sim.address)
        states = job_states(url, held_ids)
        survivor_ok = gw_a.proc.poll() is None

    # -- figures --------------------------------------------------------------------------------
    problems: list[str] = []
    results = sorted(load.results, key=lambda s: s.index)
    by_instance = Counter(names[s.port] for s in results if s.code == 250)
    refused = [s for s in results if s.code is not None and s.code != 250]
    unanswered = [s for s in results if s.code is None]
    print(
        f"mails: {len(results)} sent, {len(accepted)} answered 250 (gw-a {by_instance['gw-a']}, "
        f"gw-b {by_instance['gw-b']}), {len(refused)} refused, {len(unanswered)} without a reply"
        + (f" (e.g. {unanswered[0].text})" if unanswered else "")
    )
    if refused:
        print(f"  refused, e.g.: {refused[0].code} {refused[0].text}")

    faxes_of = Counter(f["client_reference_id"] for f in faxes)
    created = {f["client_reference_id"]: f["created_at"] for f in faxes}
    missing = [job for job in accepted if job not in faxes_of]
    doubled = sorted(job for job, n in faxes_of.items() if n > 1)
    posts_of: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        if request["method"] == "POST" and request["path"] == "/faxes":
            posts_of.setdefault(request.get("transaction_id") or "", []).append(request)
    answered_twice = sorted(
        job for job, ps in posts_of.items() if sum(p.get("status") == 201 for p in ps) > 1
    )
    resent = sorted(job for job, ps in posts_of.items() if len(ps) > 1 and job not in answered_twice)
    unowed = [job for job in faxes_of if job not in accepted]
    print(
        f"faxes: {len(faxes)} at eFax for the {len(accepted)} accepted mails; missing {len(missing)}; "
        f"job ids with 2+ faxes {len(doubled)}; job ids with 2+ POST /faxes answered 201 "
        f"{len(answered_twice)}"
    )
    if resent:
        print(
            f"  {len(resent)} job ids POSTed again after an attempt without a 201 (the killed instance's "
            f"request in flight): {', '.join(resent[:5])}"
        )
    if unowed:
        print(f"  {len(unowed)} faxes for mails that got no 250 (committed by gw-b, reply lost in the kill)")
    if missing:
        problems.append(f"{len(missing)} accepted mails have no fax, e.g. {missing[0]}")
    if doubled or answered_twice:
        problems.append(f"duplicates: {(doubled or answered_twice)[:5]}")
    if not done:
        problems.append(f"not drained {drain_timeout_s:.0f} s after the load")
    if not survivor_ok:
        problems.append("gw-a exited during the run")

    if not held:
        problems.append("INVALID: gw-b held no job at the kill, nothing was taken over")
    first_act: list[float] = []  # per held job: gw-a's first eFax call about it, else its end
    survivor_posts: list[float] = []
    for job_id, kind, ref in held:
        state, updated_at, _ = states.get(job_id, ("missing", float("nan"), None))
        calls = [  # gw-a's: GET /faxes/sent?search_text=<ref> (reconciling), POST /faxes
            r
            for r in requests
            if r["at"] >= kill_wall and (ref in (r.get("query") or "") or r.get("transaction_id") == ref)
        ]
        first_act.append(min([r["at"] for r in calls] or [updated_at]))
        survivor_posts += [r["at"] for r in calls if r["method"] == "POST" and r["path"] == "/faxes"]
        before = [p.get("status") for p in posts_of.get(ref, []) if p["at"] < kill_wall]
        fax = f"fax created {created[ref] - kill_wall:+.1f} s" if ref in created else "no fax"
        print(
            f"  held {kind} {ref}: now {state}, last change +{updated_at - kill_wall:.1f} s after the kill, "
            f"{fax}; POST /faxes by gw-b before the kill: {before or 'none'}; gw-a's calls: "
            + (
                ", ".join(
                    f"+{r['at'] - kill_wall:.1f} s {r['method']} {r['path']} ({r['status']})" for r in calls
                )
                or "none"
            )
        )
    if first_act:
        print(
            f"takeover: gw-a's first call for a job gw-b held: "
            f"+{min(first_act) - kill_wall:.1f} s after the kill"
        )
    if survivor_posts:
        print(
            f"takeover: gw-a's first POST /faxes for a job gw-b held: "
            f"+{min(survivor_posts) - kill_wall:.1f} s after the kill"
        )
    elif held:
        print(
            "takeover: no POST /faxes by gw-a for gw-b's jobs: gw-b's own requests had reached eFax, "
            "and gw-a found them (GET /faxes/sent by client_reference_id) and recorded them, not resent"
        )
    finish = [states[i][1] - kill_wall for i in held_ids if i in states and states[i][0] in TERMINAL]
    all_finished = bool(held) and len(finish) == len(held)
    last_finish = max(finish) if finish else float("nan")
    met = all_finished and last_finish <= BAR_S
    print(
        f"gw-b's jobs finished by gw-a: {len(finish)} of {len(held)}, the last +{last_finish:.1f} s after "
        f"the kill (bar: all within {BAR_S:.0f} s: {verdict(met)})"
    )
    if not met:
        problems.append(
            f"bar: {len(finish)} of {len(held)} of gw-b's jobs finished, last +{last_finish:.1f} s"
        )
    handed = [created[job] for job in accepted if job in created]
    if handed:
        print(
            f"handed on: the last of the {len(accepted)} accepted mails reached eFax "
            f"+{max(handed) - kill_wall:.1f} s after the kill "
            f"(the load ended +{load_end - kill_wall:.1f} s after it)"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")
    sys.exit(code)

"""Mail in to POST /faxes out: how long the whole outbound path takes for a burst.

    uv run python bench/end_to_end.py [--mails 2000] [--sessions 10] [--pdf-kb 100] [--workers N]
                                      [--database sqlite|postgresql|both]

The same load as accept_rate.py (``--mails`` mails with a ``--pdf-kb`` KB PDF over
``--sessions`` SMTP sessions) into ``serve`` (bench/_serve.py, default
``dispatch.workers`` unless ``--workers``), which submits to a simulator started as
``python -m gateway.cli simulator`` in its own process. Measured:

  accept    release of the sessions -> last DATA reply (mails/s)
  end to end  release of the sessions -> the last POST /faxes the simulator recorded
            (its request log's ``at``, wall clock), as faxes/s
  baseline  bench/_bare_smtp.py (aiosmtpd answering 250) with the same load, once before
            and once after the gateway; the ratio uses their mean.

The store is a temp SQLite file (``--database sqlite``, the default), a new database on a
throwaway PostgreSQL server (``postgresql``; tests/pgcluster.py, started by the script
and stopped at the end), or ``both``: the gateway part runs twice in the one run, SQLite
then PostgreSQL (each with a fresh simulator and database), between the two bare runs,
and the PG/SQLite ratios of the accept and end-to-end rates are printed.

Also: every POST /faxes must have been answered 201, exactly one per mail (by its
transaction id, the job id); the store's physical commits per mail for the whole run.
Exit 0 unless a mail was refused, a fax is missing or doubled, or a child failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    BACKENDS,
    BlastResult,
    Children,
    Databases,
    MailFactory,
    blast,
    commits,
    make_pdf,
    mean,
    port_of,
    sim_post_count,
    sim_posts,
    wait_until,
)

DRAIN_TIMEOUT_S = 180.0
LABELS = {"sqlite": "sqlite", "postgresql": "pg"}  # fits the 8 columns of BlastResult.line


@dataclass
class GatewayRun:
    backend: str
    accepted: BlastResult
    posts: list[dict[str, Any]]
    drained: bool
    commits: int

    @property
    def end_s(self) -> float:
        """Release of the sessions -> the last POST /faxes the simulator recorded."""
        if not self.posts:
            return float("nan")
        return max(p["at"] for p in self.posts) - self.accepted.start_wall

    @property
    def fax_rate(self) -> float:
        return len(self.posts) / self.end_s


def run_gateway(
    children: Children, backend: str, args: argparse.Namespace, factory: MailFactory, url: str | None
) -> GatewayRun:
    sim = children.simulator(f"{backend}-simulator")
    sections = {} if args.workers is None else {"dispatch": {"workers": args.workers}}
    gw = children.gateway(backend, sim.address, database_url=url, **sections)
    try:
        before = commits(gw)
        accepted = blast(port_of(gw), args.mails, args.sessions, factory)
        print(accepted.line(LABELS[backend]))
        drained = wait_until(lambda: sim_post_count(sim.address) >= args.mails, DRAIN_TIMEOUT_S, 0.25)
        posts = sim_posts(sim.address)
        total_commits = commits(gw) - before
    finally:
        children.stop(gw)
        children.stop(sim)
    return GatewayRun(backend, accepted, posts, drained, total_commits)


def problems_of(run: GatewayRun, mails: int) -> list[str]:
    found = []
    if run.accepted.refused:
        found.append(f"{run.backend}: {len(run.accepted.refused)} refused mails: {run.accepted.refused[0]}")
    if not run.drained:
        found.append(
            f"{run.backend}: only {len(run.posts)} of {mails} POST /faxes within {DRAIN_TIMEOUT_S:.0f} s"
        )
    bad = [p for p in run.posts if p.get("status") != 201]
    if bad:
        found.append(f"{run.backend}: {len(bad)} POST /faxes not answered 201, e.g. {bad[0]}")
    per_job = Counter(p.get("transaction_id") for p in run.posts)
    doubled = {job: n for job, n in per_job.items() if n > 1}
    if doubled:
        found.append(
            f"{run.backend}: {len(doubled)} job ids POSTed more than once, e.g. {next(iter(doubled))}"
        )
    if len(run.posts) > mails:
        found.append(f"{run.backend}: {len(run.posts)} POST /faxes for {mails} mails (duplicates)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pdf-kb", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="dispatch.workers (default: the gateway's)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="sqlite",
        help="the gateway's store; both: SQLite then PostgreSQL in one run",
    )
    args = parser.parse_args()
    backends = list(BACKENDS) if args.database == "both" else [args.database]

    factory = MailFactory.for_pdf(make_pdf(args.pdf_kb * 1000))
    workers = "default" if args.workers is None else str(args.workers)
    print(
        f"end_to_end: {args.mails} mails of {factory.size / 1000:.0f} KB (PDF {args.pdf_kb} KB), "
        f"{args.sessions} SMTP sessions, dispatch.workers={workers}, {os.cpu_count()} cores, "
        f"store {' then '.join(backends)}"
    )
    problems: list[str] = []
    runs: list[GatewayRun] = []
    with (
        tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp,
        Databases() as databases,
        Children(Path(tmp)) as children,
    ):
        # The PostgreSQL server (if any) is up before the first blast, for every run alike.
        urls = {backend: databases.url(backend, f"bench_{backend}") for backend in backends}
        bare_runs = []
        bare = children.bare("bare-before")
        bare_runs.append(blast(port_of(bare), args.mails, args.sessions, factory))
        children.stop(bare)
        print(bare_runs[-1].line("bare"))

        for backend in backends:
            runs.append(run_gateway(children, backend, args, factory, urls[backend]))

        bare = children.bare("bare-after")
        bare_runs.append(blast(port_of(bare), args.mails, args.sessions, factory))
        children.stop(bare)
        print(bare_runs[-1].line("bare"))

    for bare_run in bare_runs:
        if bare_run.refused:
            problems.append(f"bare: refused mails: {bare_run.refused[0]}")
    bare_rate = mean([b.rate for b in bare_runs])
    for run in runs:
        problems += problems_of(run, args.mails)
        print(
            f"end to end {run.backend}: {len(run.posts)} POST /faxes, last {run.end_s:.2f} s after the "
            f"first mail = {run.fax_rate:.1f} faxes/s; dispatch lagged the last 250 by "
            f"{run.end_s - run.accepted.elapsed_s:.2f} s"
        )
        print(
            f"  ratios to bare aiosmtpd ({bare_rate:.1f} mails/s, mean of {bare_runs[0].rate:.1f} and "
            f"{bare_runs[1].rate:.1f}): accept {run.accepted.rate / bare_rate:.3f}, "
            f"end to end {run.fax_rate / bare_rate:.3f}"
        )
        print(
            f"  store commits/mail over the whole run: {run.commits / args.mails:.3f} ({run.commits} commits)"
        )
    if len(runs) == 2:
        sqlite, pg = runs
        print(
            f"ratio postgresql/sqlite: accept {pg.accepted.rate / sqlite.accepted.rate:.3f} "
            f"({pg.accepted.rate:.1f} / {sqlite.accepted.rate:.1f} mails/s), end to end "
            f"{pg.fax_rate / sqlite.fax_rate:.3f} ({pg.fax_rate:.1f} / {sqlite.fax_rate:.1f} faxes/s)"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")
    sys.exit(code)

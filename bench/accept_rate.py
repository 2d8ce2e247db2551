"""How fast ``fax-gateway serve`` says 250, against aiosmtpd that only says 250, or on
PostgreSQL against on SQLite.

    uv run python bench/accept_rate.py [--mails 2000] [--sessions 10] [--pdf-kb 100] [--cli]
                                       [--readers N] [--database sqlite|postgresql|both]

Load: ``--mails`` mails, each with one PDF attachment of ``--pdf-kb`` KB (random pixels,
so ~1.37x that on the wire), over ``--sessions`` parallel SMTP sessions (one smtplib
thread each, one connection each, consecutive transactions on it).

Targets, each a fresh child process on 127.0.0.1 port 0:
  bare     bench/_bare_smtp.py: aiosmtpd, a handler that answers 250 and keeps nothing;
  sqlite   serve (bench/_serve.py, or ``--cli``: python -m gateway.cli serve) with a temp
           SQLite database, dispatching to a simulator in its own process (default
           dispatch.workers), so the gateway pays for dispatch while it accepts, as it
           would in production; ``--readers N`` sets smtp.reader_processes (default: the
           gateway's own default, 1 reader on 2+ cores; 0 parses in the gateway's process);
  pg       the same serve on PostgreSQL: a new database (one per round) on a throwaway
           server (tests/pgcluster.py: fsync on, on this machine) that the script starts
           before the first round and stops at the end.

``--database`` picks the pair compared: ``sqlite`` (default) bare against sqlite,
``postgresql`` bare against pg, ``both`` sqlite against pg (no bare).

Two rounds, in opposite order (A, B / B, A), because the machine is shared and noisy: a
ratio is only meaningful between numbers of the same run. The rate is mails / (release
of the sessions -> last DATA reply). Commits per mail are the store's physical commits
in that window (they include the dispatcher's writes) divided by the mails. Bar: B/A >=
0.8 (gateway/bare, or PG/SQLite). Exit 0 when the bar is met, 1 when it is not, a mail
was refused or a child failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _harness import (
    BlastResult,
    Children,
    Databases,
    MailFactory,
    blast,
    commits,
    make_pdf,
    port_of,
    sim_post_count,
    verdict,
)

BAR = 0.8
# --database -> (baseline, candidate): the bar is candidate/baseline >= BAR.
PAIRS = {"sqlite": ("bare", "sqlite"), "postgresql": ("bare", "pg"), "both": ("sqlite", "pg")}
BACKEND_OF = {"sqlite": "sqlite", "pg": "postgresql"}


def run_bare(children: Children, name: str, args: argparse.Namespace, factory: MailFactory) -> BlastResult:
    bare = children.bare(name)
    try:
        return blast(port_of(bare), args.mails, args.sessions, factory)
    finally:
        children.stop(bare)


def run_gateway(
    children: Children, name: str, args: argparse.Namespace, factory: MailFactory, database_url: str | None
) -> tuple[BlastResult, str]:
    sim = children.simulator(f"{name}-simulator")
    sections = {} if args.readers is None else {"smtp": {"reader_processes": args.readers}}
    gw = children.gateway(name, sim.address, cli=args.cli, database_url=database_url, **sections)
    try:
        before = None if args.cli else commits(gw)
        result = blast(port_of(gw), args.mails, args.sessions, factory)
        after = None if args.cli else commits(gw)
        posted = sim_post_count(sim.address)
    finally:
        children.stop(gw)
        children.stop(sim)
    extra = f"POST /faxes done meanwhile: {posted}"
    if before is not None and after is not None:
        extra = f"store commits/mail {(after - before) / args.mails:.3f} ({after - before} commits); " + extra
    return result, extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pdf-kb", type=int, default=100)
    parser.add_argument(
        "--cli", action="store_true", help="run python -m gateway.cli serve (no commit count)"
    )
    parser.add_argument("--readers", type=int, help="smtp.reader_processes (default: the gateway's)")
    parser.add_argument(
        "--database",
        choices=sorted(PAIRS),
        default="sqlite",
        help="sqlite: bare vs serve on SQLite (default); postgresql: bare vs serve on PostgreSQL; "
        "both: serve on SQLite vs on PostgreSQL",
    )
    args = parser.parse_args()

    baseline, candidate = PAIRS[args.database]
    factory = MailFactory.for_pdf(make_pdf(args.pdf_kb * 1000))
    print(
        f"accept_rate: {args.mails} mails of {factory.size / 1000:.0f} KB (PDF {args.pdf_kb} KB), "
        f"{args.sessions} SMTP sessions, {os.cpu_count()} cores; {candidate} against {baseline}"
    )
    ratios: list[float] = []
    totals = {baseline: [0.0, 0], candidate: [0.0, 0]}
    failed = False
    with (
        tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp,
        Databases() as databases,
        Children(Path(tmp)) as children,
    ):
        rounds = ((baseline, candidate), (candidate, baseline))
        # The PostgreSQL server (if any) is up before the first blast, for every target alike.
        urls = {
            (number, kind): databases.url(BACKEND_OF[kind], f"bench_{number}")
            for number in range(1, len(rounds) + 1)
            for kind in (baseline, candidate)
            if kind != "bare"
        }
        for number, order in enumerate(rounds, start=1):
            rates: dict[str, float] = {}
            for kind in order:
                name = f"{kind}-{number}"
                if kind == "bare":
                    result, extra = run_bare(children, name, args, factory), ""
                else:
                    result, extra = run_gateway(children, name, args, factory, urls[number, kind])
                rates[kind] = result.rate
                totals[kind][0] += result.elapsed_s
                totals[kind][1] += result.mails
                print(f"round {number} {result.line(kind)}")
                if extra:
                    print(f"                 {extra}")
                if result.refused:
                    failed = True
                    print(f"                 REFUSED {len(result.refused)}: {result.refused[0]}")
            ratios.append(rates[candidate] / rates[baseline])
    (b_time, b_mails), (c_time, c_mails) = totals[baseline], totals[candidate]
    overall = (c_mails / c_time) / (b_mails / b_time)
    met = overall >= BAR
    judged = "INVALID, mails were refused" if failed else verdict(met)
    print(
        f"ratio {candidate}/{baseline}: "
        + ", ".join(f"round {n} {r:.3f}" for n, r in enumerate(ratios, start=1))
        + f", overall {overall:.3f}  (bar {candidate} accept >= {BAR}x {baseline}: {judged})"
    )
    return 1 if failed or not met else 0


if __name__ == "__main__":
    sys.exit(main())

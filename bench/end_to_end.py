"""Mail in to POST /faxes out: how long the whole outbound path takes for a burst.

    uv run python bench/end_to_end.py [--mails 2000] [--sessions 10] [--pdf-kb 100] [--workers N]

The same load as accept_rate.py (``--mails`` mails with a ``--pdf-kb`` KB PDF over
``--sessions`` SMTP sessions) into ``serve`` (bench/_serve.py, default
``dispatch.workers`` unless ``--workers``), which submits to a simulator started as
``python -m gateway.cli simulator`` in its own process. Measured:

  accept    release of the sessions -> last DATA reply (mails/s)
  end to end  release of the sessions -> the last POST /faxes the simulator recorded
            (its request log's ``at``, wall clock), as faxes/s
  baseline  bench/_bare_smtp.py (aiosmtpd answering 250) with the same load, once before
            and once after the gateway; the ratio uses their mean.

Also: every POST /faxes must have been answered 201, one per mail; the store's physical
commits per mail for the whole run. Exit 0 unless a mail was refused, a fax is missing
or a child failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    Children,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pdf-kb", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="dispatch.workers (default: the gateway's)")
    args = parser.parse_args()

    factory = MailFactory.for_pdf(make_pdf(args.pdf_kb * 1000))
    workers = "default" if args.workers is None else str(args.workers)
    print(
        f"end_to_end: {args.mails} mails of {factory.size / 1000:.0f} KB (PDF {args.pdf_kb} KB), "
        f"{args.sessions} SMTP sessions, dispatch.workers={workers}, {os.cpu_count()} cores"
    )
    problems: list[str] = []
    bare_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp, Children(Path(tmp)) as children:
        bare = children.bare("bare-before")
        first = blast(port_of(bare), args.mails, args.sessions, factory)
        children.stop(bare)
        bare_rates.append(first.rate)
        print(first.line("bare"))

        sim = children.simulator()
        sections = {} if args.workers is None else {"dispatch": {"workers": args.workers}}
        gw = children.gateway("gateway", sim.address, **sections)
        before = commits(gw)
        accepted = blast(port_of(gw), args.mails, args.sessions, factory)
        print(accepted.line("gateway"))
        drained = wait_until(lambda: sim_post_count(sim.address) >= args.mails, DRAIN_TIMEOUT_S, 0.25)
        posts = sim_posts(sim.address)
        total_commits = commits(gw) - before
        children.stop(gw)
        children.stop(sim)

        bare = children.bare("bare-after")
        last = blast(port_of(bare), args.mails, args.sessions, factory)
        children.stop(bare)
        bare_rates.append(last.rate)
        print(last.line("bare"))

    if accepted.refused or first.refused or last.refused:
        problems.append(f"refused mails: {(accepted.refused or first.refused or last.refused)[0]}")
    if not drained:
        problems.append(f"only {len(posts)} of {args.mails} POST /faxes within {DRAIN_TIMEOUT_S:.0f} s")
    bad = [p for p in posts if p.get("status") != 201]
    if bad:
        problems.append(f"{len(bad)} POST /faxes not answered 201, e.g. {bad[0]}")
    if len(posts) > args.mails:
        problems.append(f"{len(posts)} POST /faxes for {args.mails} mails (duplicates)")

    end_s = max(p["at"] for p in posts) - accepted.start_wall if posts else float("nan")
    fax_rate = len(posts) / end_s
    bare_rate = mean(bare_rates)
    print(
        f"end to end: {len(posts)} POST /faxes, last {end_s:.2f} s after the first mail = "
        f"{fax_rate:.1f} faxes/s; dispatch lagged the last 250 by {end_s - accepted.elapsed_s:.2f} s"
    )
    print(
        f"ratios to bare aiosmtpd ({bare_rate:.1f} mails/s, mean of {bare_rates[0]:.1f} and "
        f"{bare_rates[1]:.1f}): accept {accepted.rate / bare_rate:.3f}, end to end {fax_rate / bare_rate:.3f}"
    )
    per_mail = total_commits / args.mails
    print(f"store commits/mail over the whole run: {per_mail:.3f} ({total_commits} commits)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(benchmark took {time.monotonic() - started:.0f} s)")
    sys.exit(code)

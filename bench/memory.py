"""How much memory ``serve`` needs for one big fax, relative to the document.

    uv run python bench/memory.py [--pdf-mb 40]

One mail with one PDF of ``--pdf-mb`` MB (random pixels: incompressible, ~1.37x that
as base64 on the wire) goes through ``serve`` (bench/_serve.py, smtp.max_message_bytes
80 MB by default, default dispatch.workers) to a simulator in its own process, so the
simulator's copy of the fax is not counted.

Measured on the gateway process and its reader processes (smtp.reader_processes), each
figure summed over them (/proc/PID/status):
  idle   VmRSS once start-up is over (median of a few samples, nothing sent yet);
  peak   the larger of VmRSS sampled every 10 ms from before DATA until the simulator
         answered the POST /faxes (plus 0.5 s), and the gateway's VmHWM read at the end
         plus its readers' VmRSS then (a reader's own VmHWM is its start-up's, and mails
         this big are never handed to a reader);
  ratio  (peak - idle) / PDF size. Bar: <= 3.
Exit 0 unless the mail was refused or the fax never reached the simulator.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import (
    Children,
    MailFactory,
    make_pdf,
    port_of,
    proc_status_kb,
    process_tree,
    rss_sampler,
    send_one,
    sim_posts,
    tree_status_kb,
    verdict,
    wait_until,
)

BAR = 3.0
MB = 1_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdf-mb", type=float, default=40)
    parser.add_argument("--max-message-bytes", type=int, default=80_000_000)
    args = parser.parse_args()

    pdf = make_pdf(int(args.pdf_mb * MB))
    factory = MailFactory.for_pdf(pdf)
    print(f"memory: one mail of {factory.size / MB:.1f} MB carrying a {len(pdf) / MB:.1f} MB PDF")
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp, Children(Path(tmp)) as children:
        sim = children.simulator()
        gw = children.gateway("gateway", sim.address, smtp={"max_message_bytes": args.max_message_bytes})
        time.sleep(1.0)  # let start-up finish (workers' first claims, HTTP)
        idle_samples = []
        for _ in range(5):
            idle_samples.append(tree_status_kb(gw.pid, "VmRSS"))
            time.sleep(0.1)
        idle_kb = int(statistics.median(idle_samples))

        reply: list[tuple[int, str]] = []
        with rss_sampler(gw.pid) as samples:
            started = time.perf_counter()
            sender = threading.Thread(target=lambda: reply.append(send_one(port_of(gw), factory)))
            sender.start()
            sender.join(180)
            accepted_s = time.perf_counter() - started

            def answered() -> bool:
                return any(p.get("status") is not None for p in sim_posts(sim.address))

            faxed = bool(reply) and reply[0][0] == 250 and wait_until(answered, 120, 0.05)
            faxed_s = time.perf_counter() - started
            time.sleep(0.5)
        processes = len(process_tree(gw.pid))
        readers_kb = tree_status_kb(gw.pid, "VmRSS") - proc_status_kb(gw.pid, "VmRSS")
        hwm_kb = proc_status_kb(gw.pid, "VmHWM") + readers_kb
        posts = sim_posts(sim.address)

    if not reply or reply[0][0] != 250:
        print(f"PROBLEM: the mail was not accepted: {reply[0] if reply else 'no reply'}")
        return 1
    if not faxed or not posts or posts[0].get("status") != 201:
        print(f"PROBLEM: no answered POST /faxes: {posts}")
        return 1
    sampled_kb = max(samples) if samples else 0
    peak_kb = max(sampled_kb, hwm_kb)
    growth = (peak_kb - idle_kb) * 1024
    ratio = growth / len(pdf)
    print(f"250 after {accepted_s:.2f} s, POST /faxes answered {posts[0]['status']} after {faxed_s:.2f} s")
    print(
        f"gateway RSS ({processes} processes): idle {idle_kb / 1024:.1f} MiB, peak {peak_kb / 1024:.1f} MiB "
        f"(sampled max {sampled_kb / 1024:.1f}, VmHWM {hwm_kb / 1024:.1f}; {len(samples)} samples)"
    )
    print(
        f"peak - idle = {growth / MB:.1f} MB for a {len(pdf) / MB:.1f} MB PDF: "
        f"ratio {ratio:.2f}  (bar <= {BAR:g}: {verdict(ratio <= BAR)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

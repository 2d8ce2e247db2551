"""Hostile mails several at once, while a one-page PDF mail and /healthz are sent every 2 s.

What it runs: ``serve`` (its reader processes counted with it) on the simulator; then, at
once, ``--copies`` of each hostile mail (a quadratic HTML body, a 59-megapixel RGBA PNG of
a few hundred KB, a PDF whose object stream inflates to ~70 MB, a DOCX of a million
paragraphs), each on its own SMTP session; meanwhile a canary (a one-page PDF mail) and a
GET /healthz every ``--every`` seconds until every hostile mail is answered.

What it prints: each hostile mail's reply and how long it took; the canary's worst reply
time; /healthz's worst time; the peak RSS growth of the gateway and its children over idle.
Targets (issue 12): canary 250 within 10 s every time, /healthz within 2 s, every hostile
mail answered within 120 s, peak RSS growth under 1 GiB. After the burst, each hostile mail
is sent once more alone (as a relaying MTA retries a 4xx), to show what it gets then.

    uv run python bench/hostile.py [--copies 2] [--every 2]
"""

from __future__ import annotations

import argparse
import io
import re
import smtplib
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from _harness import (
    RECIPIENT,
    Children,
    MailFactory,
    make_pdf,
    port_of,
    rss_sampler,
    sender,
    tree_status_kb,
    verdict,
)

GIB = 1024**3
CANARY_BAR_S, HEALTH_BAR_S, HOSTILE_BAR_S, RSS_BAR = 10.0, 2.0, 120.0, 1 * GIB


def quadratic_html() -> tuple[str, bytes, str, str]:
    return ("quadratic HTML", b"<html><body>" + b"<a " * 30000 + b"</body></html>", "text", "html")


def rgba_png() -> tuple[str, bytes, str, str]:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (7680, 7680), (255, 255, 255, 0)).save(out, "PNG", optimize=True)
    return ("59 MP RGBA PNG", out.getvalue(), "image", "png")


def inflate_bomb_pdf() -> tuple[str, bytes, str, str]:
    """A PDF whose object stream (with a 70 MB string in it) inflates from a few dozen KB."""
    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(612, 792))
    pdf.pages[0].obj.Filler = pikepdf.String(b" " * 70_000_000)
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate, compress_streams=True)
    return ("PDF inflate bomb", out.getvalue(), "application", "pdf")


def office_bomb() -> tuple[str, bytes, str, str]:
    """A DOCX whose document.xml is a million paragraphs (about 40 MB unzipped)."""
    paragraph = b"<w:p><w:r><w:t>fax</w:t></w:r></w:p>"
    body = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        + paragraph * 1_000_000
        + b"</w:body></w:document>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as docx:
        docx.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main'
            '+xml"/></Types>',
        )
        docx.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats'
            '.org/package/2006/relationships"><Relationship Id="r1" Type="http://schemas.openxmlformats'
            '.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            "</Relationships>",
        )
        docx.writestr("word/document.xml", body)
    subtype = "vnd.openxmlformats-officedocument.wordprocessingml.document"
    return ("DOCX bomb", out.getvalue(), "application", subtype)


def wire(message: EmailMessage) -> bytes:
    data = re.sub(rb"(?m)^\.", b"..", message.as_bytes(policy=SMTP_POLICY))
    return data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def hostile_mail(index: int, name: str, data: bytes, maintype: str, subtype: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender(index)
    message["To"] = RECIPIENT
    message["Subject"] = f"hostile {index}: {name}"
    message["Message-ID"] = f"<hostile-{index}@example.com>"
    if maintype == "text":
        message.set_content(data.decode(), subtype=subtype)
    else:
        message.set_content("See the attachment.\n")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=f"file.{subtype[-4:]}")
    return wire(message)


def send_raw(port: int, index: int, data: bytes, timeout_s: float = 300) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout_s) as client:
        client.ehlo("bench.example.com")
        code, text = client.mail(sender(index))
        if code == 250:
            code, text = client.rcpt(RECIPIENT)
        if code == 250:
            client.putcmd("data")
            code, text = client.getreply()
            if code == 354:
                client.send(data)
                code, text = client.getreply()
        return code, text.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of each hostile mail (default 2)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between canaries (default 2)")
    args = parser.parse_args()

    kinds = [quadratic_html(), rgba_png(), inflate_bomb_pdf(), office_bomb()]
    for name, data, _, _ in kinds:
        print(f"hostile: {name}, {len(data) / 1024:.0f} KB")
    mails = [
        (f"{name} #{copy + 1}", hostile_mail(100 + n * args.copies + copy, name, data, main, sub))
        for n, (name, data, main, sub) in enumerate(kinds)
        for copy in range(args.copies)
    ]
    canary = MailFactory.for_pdf(make_pdf(20_000))

    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as tmp, Children(Path(tmp)) as children:
        sim = children.simulator()
        gw = children.gateway("gateway", sim.address, policy={"faxes_per_hour_per_sender": 0})
        http = gw.log.wait_for(r"HTTP listening on (\S+)", gw.proc, 30)[1]
        port = port_of(gw)
        time.sleep(1.0)
        idle_kb = int(statistics.median(tree_status_kb(gw.pid, "VmRSS") for _ in range(5)))

        replies: dict[str, tuple[int, str, float]] = {}
        canaries: list[tuple[int, float]] = []
        health: list[float] = []
        done = threading.Event()

        def hostile(label: str, data: bytes, index: int) -> None:
            started = time.perf_counter()
            try:
                code, text = send_raw(port, index, data)
            except (OSError, smtplib.SMTPException) as err:
                code, text = 0, f"{type(err).__name__}: {err}"
            replies[label] = (code, text, time.perf_counter() - started)

        def watch() -> None:
            n = 0
            while not done.is_set():
                started = time.perf_counter()
                try:
                    code, _ = send_raw(port, n, canary.data(n), timeout_s=60)
                except (OSError, smtplib.SMTPException):
                    code = 0
                canaries.append((code, time.perf_counter() - started))
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(f"{http}/healthz", timeout=30) as answer:
                        answer.read()
                except OSError:
                    pass
                health.append(time.perf_counter() - started)
                n += 1
                done.wait(max(0.0, args.every - (time.perf_counter() - started)))

        with rss_sampler(gw.pid, every_s=0.05) as samples:
            watcher = threading.Thread(target=watch)
            watcher.start()
            time.sleep(0.5)
            senders = [
                threading.Thread(target=hostile, args=(label, data, 100 + i))
                for i, (label, data) in enumerate(mails)
            ]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join(400)
            # Then each kind alone, as a relaying MTA's later retry would send it.
            for name, data, main, sub in kinds:
                hostile(f"{name} alone", hostile_mail(99, name, data, main, sub), 99)
            time.sleep(args.every)  # one more canary after the last answer
            done.set()
            watcher.join(120)
        peak_kb = max(samples) if samples else idle_kb

    for label in [label for label, _ in mails] + [f"{k[0]} alone" for k in kinds]:
        code, text, seconds = replies.get(label, (0, "no reply", float("nan")))
        print(f"  {label:24s} {seconds:6.1f} s  {code} {text[:110]}")
    worst_hostile = max((r[2] for r in replies.values()), default=float("inf"))
    worst_canary = max((s for _, s in canaries), default=float("inf"))
    refused_canaries = sum(1 for code, _ in canaries if code != 250)
    worst_health = max(health, default=float("inf"))
    growth = (peak_kb - idle_kb) * 1024
    ok_hostile = len(replies) == len(mails) + len(kinds) and worst_hostile <= HOSTILE_BAR_S
    print(
        f"hostile mails answered: {len(replies)}/{len(mails) + len(kinds)}, worst {worst_hostile:.1f} s "
        f"(bar {HOSTILE_BAR_S:g} s: {verdict(ok_hostile)})"
    )
    ok_canary = refused_canaries == 0 and worst_canary <= CANARY_BAR_S
    print(
        f"canary: {len(canaries)} sent, {refused_canaries} not 250, worst {worst_canary:.2f} s "
        f"(bar {CANARY_BAR_S:g} s, all 250: {verdict(ok_canary)})"
    )
    print(
        f"/healthz: {len(health)} asked, worst {worst_health:.2f} s (bar {HEALTH_BAR_S:g} s: "
        f"{verdict(worst_health <= HEALTH_BAR_S)})"
    )
    print(
        f"RSS, gateway and children: idle {idle_kb / 1024:.0f} MiB, peak {peak_kb / 1024:.0f} MiB, "
        f"growth {growth / 1024**2:.0f} MiB (bar {RSS_BAR / 1024**2:.0f} MiB: {verdict(growth <= RSS_BAR)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

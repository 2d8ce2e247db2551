"""``fax-gateway evidence ID > file.pdf``: a mail's transmission confirmation, again.

ID is the job id (``queued as ...``) or one of its fax ids. Writes the PDF the
"delivered" report carried (``gateway.operations.evidence``): one page per fax of the
mail (or the one fax named), in the mailbox's time zone beside UTC. While the mail's
bytes are kept (``database.keep_days``) the page has the thumbnail of the first page;
after that, the record's facts and the hashes only. Refuses to write PDF bytes to a
terminal. Exit status: 0 written, 1 no such mail or no fax of it handed to eFax.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from gateway.operations.evidence import evidence
from gateway.operations.story import resolve
from gateway.settings import Settings
from gateway.store import open_store
from gateway.workers.dispatch import fax_options


async def evidence_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.output is None and sys.stdout.isatty():
        print(
            "fax-gateway evidence: the PDF goes to stdout: redirect it (> file.pdf) or use -o FILE",
            file=sys.stderr,
        )
        return 2
    store = await open_store(settings.database.url, password=settings.database.password.get_secret_value())
    try:
        message_id, _ = await resolve(store, args.id)
        message = await store.message(message_id)
        mailbox = None
        if message is not None:
            mailbox = next((m for m in settings.mailboxes if m.user_id == message.mailbox_user_id), None)
        found = None
        if message is not None:
            found = await evidence(
                store,
                args.id,
                zone=mailbox.zone(settings.zone) if mailbox is not None else settings.zone,
                now=time.time(),
                from_number=mailbox.fax_number if mailbox is not None else message.mailbox_user_id,
                cover_page=fax_options(message, mailbox).include_cover_page,
            )
    finally:
        await store.close()
    if found is None:
        what = "no mail or fax" if message is None else "no fax of this mail was handed to eFax for"
        print(f"fax-gateway evidence: {what} {args.id}", file=sys.stderr)
        return 1
    pdf = found.pdf()
    if args.output is not None:
        await asyncio.to_thread(Path(args.output).write_bytes, pdf)
    else:
        sys.stdout.buffer.write(pdf)
        sys.stdout.buffer.flush()
    return 0

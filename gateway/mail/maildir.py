"""Mail out to a local Maildir (demo mode, and when no relay is configured).

Each message is written to ``tmp/``, fsynced, then renamed into ``new/`` and the
directory fsynced: once ``deliver`` returns, the mail survives a crash. The Maildir's
directories are created 0700 and its messages 0600: they hold received faxes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from gateway.core.ids import new_job_id


class MaildirSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing one is left as it is
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    async def aclose(self) -> None:
        """Nothing is kept open between mails."""

    async def deliver(self, message: bytes, *, sender: str, recipients: list[str]) -> None:
        """Store one message; ``sender``/``recipients`` go in Return-Path/X-Envelope-To."""
        await asyncio.to_thread(self._write, message, sender, recipients)

    def _write(self, message: bytes, sender: str, recipients: list[str]) -> Path:
        self._ensure()
        name = f"{int(time.time())}.{new_job_id()}.{socket.gethostname()}"
        envelope = (f"Return-Path: <{sender}>\r\nX-Envelope-To: {', '.join(recipients)}\r\n").encode()
        tmp = self.root / "tmp" / name
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(envelope + message)
            fh.flush()
            os.fsync(fh.fileno())
        final = self.root / "new" / name
        os.rename(tmp, final)
        fd = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

"""``fax-gateway send``: fax files or text through the running gateway's SMTP listener.

It goes through the same checks and the same queue as any mail: the reply is the
gateway's own ("queued as <id>", or the refusal sentence).
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import smtplib
import sys
from email.message import EmailMessage
from email.utils import make_msgid

from gateway.settings import Settings, split_host_port


def build_message(args: argparse.Namespace, settings: Settings, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(f"{n}@{settings.fax_domain}" for n in args.to)
    message["Subject"] = args.subject
    message["Message-ID"] = make_msgid(domain="fax-gateway.cli")
    message.set_content(args.text or "")
    for path in args.files:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return message


def _send(host: str, port: int, message: EmailMessage, sender: str, rcpts: list[str]) -> str:
    with smtplib.SMTP(host, port, timeout=60) as client:
        client.ehlo()
        client.mail(sender)
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
        code, text = client.data(message.as_bytes())
        if code >= 400:
            raise smtplib.SMTPDataError(code, text)
        return text.decode("utf-8", "replace")


async def send(args: argparse.Namespace, settings: Settings) -> int:
    missing = [p for p in args.files if not p.is_file()]
    if missing:
        print(f"fax-gateway send: no such file: {missing[0]}", file=sys.stderr)
        return 2
    sender = args.sender or next((m.senders[0] for m in settings.mailboxes if m.senders), "")
    if not sender or "*" in sender:
        print("fax-gateway send: say who sends it with --from ADDRESS", file=sys.stderr)
        return 2
    host, port = split_host_port(args.smtp or settings.smtp.listen)
    message = build_message(args, settings, sender)
    rcpts = [f"{n}@{settings.fax_domain}" for n in args.to]
    try:
        reply = await asyncio.to_thread(_send, host, port, message, sender, rcpts)
    except smtplib.SMTPRecipientsRefused as err:
        for rcpt, (code, text) in err.recipients.items():
            words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            print(f"refused {rcpt}: {code} {words}", file=sys.stderr)
        return 1
    except smtplib.SMTPResponseException as err:
        words = (
            err.smtp_error.decode("utf-8", "replace") if isinstance(err.smtp_error, bytes) else err.smtp_error
        )
        print(f"refused: {err.smtp_code} {words}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"fax-gateway send: cannot reach the gateway at {host}:{port}: {err}", file=sys.stderr)
        return 1
    print(reply)
    return 0

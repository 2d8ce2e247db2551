"""The audit log's lines: one JSON object each, whole numbers, no content."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gateway.audit import Audit
from gateway.store.base import MessageOptions, Recipient, StoredDocument, StoredMessage

MESSAGE = StoredMessage(
    id="01JOB",
    received_at=0.0,
    mailbox_user_id="u-1",
    envelope_from="alice@example.com",
    header_from="alice@example.com",
    report_to="alice@example.com",
    auth="user alice from 203.0.113.7",
    message_id="<m@x>",
    subject="Secret diagnosis",
    recipients=(Recipient("13235551212", "+1 323-555-1212"),),
    options=MessageOptions(cover_message="private text"),
    submit_state="submitted",
    documents=(StoredDocument(1, 0, "scan.pdf", "PDF", "pdf", 3, 100),),
)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_event_is_one_json_line_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = Audit(logger=logging.getLogger("test.audit.file"), audit_file=str(path), clock=lambda: 0.0)
    audit.accepted(
        job="01JOB",
        who="trusted 10.0.0.5",
        peer="10.0.0.5",
        sender="mfp@scan.example.com",
        header_from="mfp@scan.example.com",
        mailbox="u-1",
        numbers=["13235551212"],
        pages=3,
        documents=1,
    )
    audit.refused(
        stage="rcpt",
        reply="550 5.7.1 ...",
        who="unknown 198.51.100.1",
        peer="198.51.100.1",
        sender="x@example.net",
        numbers=["19005551234@fax.local"],
    )
    audit.submitted(MESSAGE, [("fax-1", "13235551212")])
    audit.delivered(MESSAGE, fax_id="fax-1", number="13235551212", pages=3)
    audit.failed(MESSAGE, reason="busy (E41)", fax_id="fax-2", number="13235551212")
    audit.failed(None, reason="the stored mail is missing", job="01GONE")
    audit.close()
    got = lines(path)
    assert [line["audit"] for line in got] == [
        "accepted",
        "refused",
        "submitted",
        "delivered",
        "failed",
        "failed",
    ]
    assert got[0]["at"] == "1970-01-01T00:00:00.000+00:00"
    assert got[2] == {
        "audit": "submitted",
        "at": "1970-01-01T00:00:00.000+00:00",
        "job": "01JOB",
        "who": "user alice from 203.0.113.7",
        "peer": "203.0.113.7",
        "sender": "alice@example.com",
        "header_from": "alice@example.com",
        "mailbox": "u-1",
        "to": ["13235551212"],
        "pages": 3,
        "fax": "fax-1",
    }
    assert got[3]["fax"] == "fax-1" and got[3]["to"] == ["13235551212"] and got[3]["pages"] == 3
    assert got[4]["reason"] == "busy (E41)" and got[4]["fax"] == "fax-2"
    assert got[5] == {
        "audit": "failed",
        "at": got[5]["at"],
        "job": "01GONE",
        "reason": "the stored mail is missing",
    }
    text = path.read_text()
    assert "Secret" not in text and "private" not in text


def test_trusted_peer_is_read_from_the_stored_who(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    audit = Audit(logger=logging.getLogger("test.audit.peer"), audit_file=str(path))
    trusted = StoredMessage(**{**MESSAGE.__dict__, "auth": "trusted 10.0.0.5"})
    audit.submitted(trusted, [("fax-1", "13235551212")])
    audit.close()
    assert lines(path)[0]["peer"] == "10.0.0.5"


def test_client_values_that_break_lines_are_escaped_and_decode_to_themselves(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = Audit(logger=logging.getLogger("test.audit.escape"), audit_file=str(path), clock=lambda: 0.0)
    user = 'eve\r\n{"audit":"accepted"}\u2028\u2029\x85\u202e\x7f'
    audit.refused(
        stage="auth", reply="535 5.7.8 wrong", who="unknown 203.0.113.9", peer="203.0.113.9", user=user
    )
    audit.close()
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and len(text.splitlines()) == 1
    assert text.isascii() or all(c.isprintable() for c in text.rstrip("\n"))
    assert "\\u2028" in text and "\\u202e" in text and "\\u0085" in text
    [record] = lines(path)
    assert record["user"] == user


def test_the_audit_file_and_its_directory_are_made_private(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "logs" / "audit.jsonl"
    old = os.umask(0o022)
    try:
        Audit(logger=logging.getLogger("test.audit.private"), audit_file=str(path)).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

"""The SQLite backend's own guarantees: WAL with full sync, its migrations over old files,
documents kept once inside the raw mail, and the limit counts going through indexes."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from gateway.store import open_store
from gateway.store.base import NewDocument, NewMessage
from gateway.store.sqlite import SQLiteQueries, connect, migrate
from tests.contract.test_store import message


async def test_a_pdf_kept_as_base64_is_not_stored_twice(tmp_path: Path) -> None:
    content = b"%PDF-1.4 " + bytes(range(256)) * 40
    text = base64.encodebytes(content)
    head = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    raw = head + text + b"\r\n"
    doc = NewDocument("a.pdf", "PDF", "pdf", 1, content, raw_span=(len(head), len(head) + len(text)))
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        await store.accept_message(NewMessage(**{**message(1).__dict__, "raw": raw, "documents": [doc]}))
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "gateway.db")
    assert conn.execute("SELECT length(content) FROM documents").fetchone() == (0,)
    conn.close()


async def test_wal_and_full_sync_are_in_force(tmp_path: Path) -> None:
    s = await open_store(f"sqlite:///{tmp_path / 'g.db'}")
    await s.close()
    conn = sqlite3.connect(tmp_path / "g.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    conn.close()


async def test_migrations_carry_existing_mail_forward(tmp_path: Path) -> None:
    """A database made by an older version keeps its mail through every later migration."""

    conn = connect(tmp_path / "old.db")
    assert migrate(conn, upto=4) == 4
    recipients = '[{"number": "1", "pretty": "1"}, {"number": "2", "pretty": "2"}]'
    conn.execute(
        "INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,"
        " auth, message_id, subject, recipients, options, raw)"
        " VALUES ('OLD1', 1.0, 'u', 'A@X', 'a@x', 'a@x', 'trusted', '<m>', 's', ?, '{}', x'cafe')",
        (recipients,),
    )
    conn.execute(
        "INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content)"
        " VALUES ('OLD1', 0, 'a.pdf', 'PDF', 'pdf', 3, 1, x'00')"
    )
    conn.close()
    s = await open_store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        assert await s.raw_message("OLD1") == b"\xca\xfe"
        assert [(u.faxes, u.pages) for u in await s.sender_usage("a@x", since=0)] == [(2, 6)]
        stored = await s.message("OLD1")
        assert stored is not None and stored.documents[0].pages == 3
    finally:
        await s.close()
    check = sqlite3.connect(tmp_path / "old.db")
    assert "raw" not in [r[1] for r in check.execute("PRAGMA table_info(messages)")]
    check.close()


async def test_documents_stored_before_migration_0008_still_read_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    assert migrate(conn, upto=7) == 7
    conn.execute(
        "INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,"
        " auth, message_id, subject, recipients, options, sender_key, fax_count, fax_pages)"
        " VALUES ('M1', 1, 'u1', 'a@x', 'a@x', 'a@x', 'trusted', '<m@x>', 's', '[]', '{}', 'a@x', 1, 1)"
    )
    conn.execute(
        "INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content)"
        " VALUES ('M1', 0, 'a.pdf', 'PDF', 'pdf', 1, 8, X'255044462D312E34')"
    )
    conn.close()
    store = await open_store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        stored = await store.message("M1")
        assert stored is not None
        assert b"".join([c async for c in store.document_chunks(stored.documents[0].id)]) == b"%PDF-1.4"
    finally:
        await store.close()


def test_the_limits_are_counted_through_indexes(tmp_path: Path) -> None:
    q = SQLiteQueries()
    conn = sqlite3.connect(tmp_path / "plan.db")
    migrate(conn)
    for sql, index in ((q.SENDER_USAGE, "messages_sender_time"), (q.MAILBOX_USAGE, "messages_mailbox_time")):
        plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ("x", 0)))
        assert index in plan
    conn.close()

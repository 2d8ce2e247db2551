"""Both dialects' migrations: numbered in lockstep, and from empty or from any earlier
version they end in the same schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.store import postgres, sqlite


def test_both_dialects_have_the_same_numbered_migrations() -> None:
    names = {
        dialect.__name__: [number for number, _ in dialect.migration_scripts()]
        for dialect in (sqlite, postgres)
    }
    assert names["gateway.store.sqlite"] == names["gateway.store.postgres"]
    numbers = names["gateway.store.sqlite"]
    assert numbers == list(range(1, len(numbers) + 1))  # append-only, no gaps


def _sqlite_schema(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    indexes = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'"))
    schema = {t: sorted(tuple(r[1:4]) for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables}
    schema["<indexes>"] = [(i,) for i in indexes]
    return schema


def _pg_schema(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY table_name, column_name"
    ).fetchall()
    schema: dict[str, list[tuple[Any, ...]]] = {}
    for table, *column in rows:
        schema.setdefault(table, []).append(tuple(column))
    indexes = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    schema["<indexes>"] = [tuple(i) for i in indexes]
    return schema


LATEST = sqlite.migration_scripts()[-1][0]


@pytest.mark.parametrize("start", range(LATEST + 1))
def test_sqlite_from_any_version_ends_as_from_empty(tmp_path: Path, start: int) -> None:
    fresh = sqlite.connect(tmp_path / "fresh.db")
    assert sqlite.migrate(fresh) == LATEST
    old = sqlite.connect(tmp_path / "old.db")
    assert sqlite.migrate(old, upto=start) == start
    assert sqlite.migrate(old) == LATEST
    assert _sqlite_schema(old) == _sqlite_schema(fresh)
    assert sqlite.migrate(old) == LATEST  # again: nothing to do


@pytest.mark.parametrize("start", range(LATEST + 1))
def test_postgresql_from_any_version_ends_as_from_empty(pg_url: str, start: int) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert postgres.migrate(conn, upto=start) == start
        assert postgres.migrate(conn) == LATEST
        upgraded = _pg_schema(conn)
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        assert postgres.migrate(conn) == LATEST
        assert _pg_schema(conn) == upgraded
        assert postgres.schema_version(conn) == LATEST


def test_postgresql_migrations_carry_existing_mail_forward(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert postgres.migrate(conn, upto=4) == 4
        recipients = '[{"number": "1", "pretty": "1"}, {"number": "2", "pretty": "2"}]'
        conn.execute(
            "INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,"
            " auth, message_id, subject, recipients, options, raw)"
            " VALUES ('OLD1', 1.0, 'u', 'A@X', 'a@x', 'a@x', 'trusted', '<m>', 's', %s, '{}', %s)",
            (recipients, b"\xca\xfe"),
        )
        conn.execute(
            "INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content)"
            " VALUES ('OLD1', 0, 'a.pdf', 'PDF', 'pdf', 3, 1, %s)",
            (b"\x00",),
        )
        assert postgres.migrate(conn) == LATEST
        assert conn.execute("SELECT raw FROM message_raw WHERE message_id = 'OLD1'").fetchone() == (
            b"\xca\xfe",
        )
        usage = conn.execute("SELECT sender_key, fax_count, fax_pages FROM messages").fetchall()
        assert usage == [("a@x", 2, 6)]

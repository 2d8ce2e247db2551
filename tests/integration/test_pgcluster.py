"""The test PostgreSQL server (tests/pgcluster.py): a database per test, password auth,
and committed data surviving a restart and a crash."""

from __future__ import annotations

import psycopg
import pytest

from tests.pgcluster import PgCluster


def test_a_test_database_takes_tables_and_rows(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE fax (id serial PRIMARY KEY, number text NOT NULL)")
        conn.execute("INSERT INTO fax (number) VALUES (%s), (%s)", ("+4930123", "+4930456"))
        assert conn.execute("SELECT number FROM fax ORDER BY id").fetchall() == [("+4930123",), ("+4930456",)]
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)


def test_only_the_right_password_gets_in(pg_cluster: PgCluster, pg_url: str) -> None:
    wrong = pg_url.replace(pg_cluster.password, "0" * len(pg_cluster.password))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)
    with psycopg.connect(pg_url, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("faxgw",)


def test_a_database_is_dropped_with_its_sessions(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("dropped_with_sessions")
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
        pg_cluster.drop_database("dropped_with_sessions")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url, connect_timeout=10)
    pg_cluster.drop_database("dropped_with_sessions")  # nothing to drop is no error


def test_a_restart_keeps_committed_rows(pg_cluster: PgCluster, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        port = pg_cluster.port
        pg_cluster.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")  # the old session ended with the old server
    assert pg_cluster.port == port
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]


def test_after_a_crash_committed_rows_are_back_and_uncommitted_gone(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
    in_flight = psycopg.connect(pg_url)
    try:
        in_flight.execute("INSERT INTO t VALUES (2)")  # never committed
        pg_cluster.kill()
        assert not pg_cluster.is_running()
        assert pg_cluster.pids() == set()
    finally:
        in_flight.close()
    pg_cluster.start_again()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    assert "automatic recovery in progress" in pg_cluster.log_text()


def test_close_leaves_no_process_and_no_directory(pg_cluster: PgCluster) -> None:
    # pg_cluster only for its skip (or failure under CI) when PostgreSQL is missing
    with PgCluster() as cluster:
        root, pids = cluster.root, cluster.pids()
        assert root is not None and root.is_dir() and pids
    assert not root.exists()
    assert cluster.pids() == set() and not cluster.is_running()
    cluster.close()  # again: nothing to do
    PgCluster().close()  # never started: nothing to do

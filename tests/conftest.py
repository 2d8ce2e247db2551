from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest

from tests.pgcluster import PgCluster, find_bindir

NO_POSTGRES = "PostgreSQL is not installed (apt-get install postgresql)"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FAXGW_ variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("FAXGW_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL server for the whole session, started when a test first asks for it.

    Without PostgreSQL the test is skipped, except under CI (CI set), where it fails.
    """
    if find_bindir() is None:
        if os.environ.get("CI"):
            pytest.fail(f"{NO_POSTGRES}; under CI the PostgreSQL tests must run", pytrace=False)
        pytest.skip(NO_POSTGRES)
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database for this test alone; dropped afterwards."""
    if not pg_cluster.is_running():  # an outage test left the server down
        pg_cluster.start_again()
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{slug}_{secrets.token_hex(4)}"
    url = pg_cluster.create_database(name)
    yield url
    if not pg_cluster.is_running():
        pg_cluster.start_again()
    pg_cluster.drop_database(name)  # WITH (FORCE): ends the test's leftover sessions

"""Database URLs: the backend each names, a password given apart, never a password shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings
from gateway.store import StoreError, backend_for
from gateway.store.postgres import PostgresBackend, without_password
from gateway.store.sqlite import SQLiteBackend


def test_the_scheme_picks_the_backend() -> None:
    assert isinstance(backend_for("sqlite:///var/g.db"), SQLiteBackend)
    assert isinstance(backend_for("postgresql://u:p@db:5432/faxgw"), PostgresBackend)
    assert isinstance(backend_for("postgres://u:p@db/faxgw"), PostgresBackend)
    with pytest.raises(StoreError, match="unknown database URL scheme: 'mysql'"):
        backend_for("mysql://u@h/db")


def test_a_password_given_apart_joins_the_url_and_is_never_described() -> None:
    backend = backend_for("postgresql://faxgw@db:5432/faxgw", password="s3cret p@ss/word")
    assert isinstance(backend, PostgresBackend)
    assert backend.url == "postgresql://faxgw:s3cret%20p%40ss%2Fword@db:5432/faxgw"
    assert backend.describe() == "postgresql://faxgw:***@db:5432/faxgw"
    assert without_password("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_password_may_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("FAXGW_DATABASE__URL", "postgresql://faxgw@db/faxgw")
    monkeypatch.setenv("FAXGW_DATABASE__PASSWORD_FILE", str(secret))
    settings = load_settings(None)
    assert settings.database.password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings.database)


def test_an_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"database\.url"):
        load_settings(None, {"database": {"url": "mysql://u@h/db"}})

"""Small things that keep faxes private and honest: file modes, a read-only data directory, extensions."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.simulator.server import RunningSimulator
from tests.e2e.conftest import gateway_settings, pdf_mail, smtp_send
from tests.e2e.tracking_helpers import FAST_TRACKING
from tests.helpers import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_database_audit_log_and_maildir_are_readable_by_the_gateways_user_only(
    tmp_path: Path, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)  # the usual umask, which would make them world-readable
    try:
        settings = gateway_settings(
            tmp_path,
            simulator.base_url,
            database={"url": f"sqlite:///{tmp_path}/data/gateway.db"},
            relay={"maildir": str(tmp_path / "data" / "mail")},
            logging={"audit_file": str(tmp_path / "audit.jsonl")},
            tracking=FAST_TRACKING,
        )
        async with Gateway(settings) as gw:
            assert (await smtp_send(gw.smtp_port, pdf_mail())).code == 250
            new = tmp_path / "data" / "mail" / "new"
            [report] = await wait_until(lambda: list(new.glob("*")) if new.exists() else [], timeout=20)
            files = {
                "database": mode(tmp_path / "data" / "gateway.db"),
                "wal": mode(tmp_path / "data" / "gateway.db-wal"),
                "audit log": mode(tmp_path / "audit.jsonl"),
                "report": mode(report),
            }
            dirs = {
                name: mode(tmp_path / "data" / name) for name in ("mail", "mail/new", "mail/tmp", "mail/cur")
            }
    finally:
        os.umask(old)
    assert files == {"database": 0o600, "wal": 0o600, "audit log": 0o600, "report": 0o600}
    assert dirs == dict.fromkeys(dirs, 0o700)
    assert mode(tmp_path / "data") == 0o700  # made for the database


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` cannot be written by the gateway: a read-only mount as root, else mode 0555."""
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("running as root and cannot mount a read-only file system here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_serve_on_a_read_only_data_directory_says_so_and_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "var"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n'
        f'[database]\nurl = "sqlite:///{data}/gateway.db"\n[relay]\nmaildir = "{data}/mail"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGW_")}
    with read_only(data):
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("fax-gateway: ")]
    assert line.startswith(
        f"fax-gateway: database.url: cannot write {data}/gateway.db: the directory {data} is read-only"
    )
    assert "make it writable for the user the gateway runs as" in line
    assert "SMTP listening" not in done.stderr  # nothing was started


@pytest.mark.parametrize("local", ["3235551212x900", '"323-555-1212 ext. 900"', '"3235551212;ext=900"'])
async def test_a_fax_number_with_an_extension_is_refused_at_rcpt(gateway: Gateway, local: str) -> None:
    result = await smtp_send(gateway.smtp_port, pdf_mail(), rcpts=[f"{local}@fax.local"])
    assert (result.stage, result.code) == ("rcpt", 553)
    assert result.text.endswith(
        "has an extension (900); a fax is dialled to the number alone and would not reach it: ask for the "
        "fax machine's own number, without the extension."
    )

"""Where ``serve`` writes, checked before anything starts.

Consumes: the settings. Produces: nothing, or a ``ConfigError`` with one sentence naming
the place that cannot be written and what to do (``serve`` exits 2), instead of a
traceback from whichever part first tried to write there.

The places: the SQLite database's directory and file (``database.url``), the Maildir
when no relay is set (``relay.maildir``) and the audit log (``logging.audit_file``). A
place that does not exist yet is checked at its nearest existing parent, where it
would be created. The gateway creates them readable by its own user only (database and
audit log 0600, Maildir 0700), in the modules that write them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from gateway.settings import ConfigError, Settings


def check_data_paths(settings: Settings) -> None:
    """Raise ConfigError when a place the gateway must write to cannot be written."""
    places: list[tuple[str, Path]] = []
    url = settings.database.url
    if url.startswith("sqlite:///"):
        places.append(("database.url", Path(url.removeprefix("sqlite:///"))))
    if not settings.relay.host:
        places.append(("relay.maildir", settings.relay.maildir / "new"))
    if settings.logging.audit_file:
        places.append(("logging.audit_file", Path(settings.logging.audit_file)))
    for key, path in places:
        problem = _unwritable(path)
        if problem is not None:
            raise ConfigError(
                f"{key}: cannot write {path}: {problem}; make it writable for the user the gateway "
                f"runs as (uid {os.geteuid()}), or set {key} to a place that is"
            )


def _unwritable(path: Path) -> str | None:
    """Why ``path`` (a file, or a directory to create files in) cannot be written, or None."""
    target = path.absolute()
    if target.exists() and not target.is_dir():
        return None if os.access(target, os.W_OK) else _why(target, "the file is read-only")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return _why(existing, f"the directory {existing} is read-only")
    return None


def _why(path: Path, plain: str) -> str:
    """Tell a read-only file system from missing permissions (root ignores the latter)."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return plain
    if stats.f_flag & os.ST_RDONLY:
        return f"{plain} (its file system is mounted read-only)"
    return f"{plain} ({os.strerror(errno.EACCES).lower()})"

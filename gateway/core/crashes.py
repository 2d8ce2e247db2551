"""Poison work: a job whose handler keeps crashing is held, not retried for ever.

Pure: the crashes a job has had so far, the limit (``workers.max_crashes``) and the
crash's traceback in; out whether the job is held now, the reason recorded with it, and
whether a held job's reason is a crash's (``queue retry`` words its release so).

A crash is an exception a handler did not expect (a bug, a mail no code path was written
for), not an eFax error or a store outage: those have their own retries. A job whose
process died while it held the job (found by ``recover_orphans`` at the next start)
counts as a crash too, so a mail that kills the process does not kill every restart.
Crashes are counted in the job's payload (``crashes``) and kept across a release: after
``fax-gateway queue retry``, one more crash holds the job again.
"""

from __future__ import annotations

from typing import Final

CRASHES_KEY: Final = "crashes"  # the job payload's count of crashes so far
_HELD_PREFIX: Final = "crashed "


def crashes_so_far(payload: dict[str, object]) -> int:
    value = payload.get(CRASHES_KEY, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def hold_after_crash(crashes: int, max_crashes: int) -> bool:
    """With this crash counted (``crashes``), is the job held for an administrator?"""
    return crashes >= max_crashes


def last_line(traceback_text: str) -> str:
    """The traceback's last non-empty line (``ValueError: ...``), at most 300 characters."""
    lines = [line.strip() for line in traceback_text.splitlines() if line.strip()]
    text = lines[-1] if lines else "unknown error"
    return text if len(text) <= 300 else text[:299] + "…"


def crash_reason(crashes: int, what: str) -> str:
    """The reason recorded with a job held after ``crashes`` crashes; ``what`` is the last
    crash (the traceback's last line, or that its process died)."""
    return f"{_HELD_PREFIX}{crashes} time{'s' if crashes != 1 else ''}, last: {what}"


def held_for_crashes(last_error: str | None) -> bool:
    return bool(last_error) and str(last_error).startswith(_HELD_PREFIX)

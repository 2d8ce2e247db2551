"""After a ``POST /faxes`` of unknown outcome: is the fax at eFax? (pure)

The dispatcher lists what eFax has sent (``EfaxClient.sent_candidates``) and asks
``match`` which listed faxes are this mail's. Nothing eFax's lists do is confirmed
(efax-api.md 4), so there are two ways to recognise them:

- **by reference**: a listed fax whose client reference is the job id is ours;
- **by destination, pages and time**, when the list carries no reference: a fax to one
  of the mail's numbers, with the mail's pages (or one more, the cover page) or no page
  count yet, finished after the attempt started or not finished yet, and not already
  recorded for another mail.

A mail's faxes are found when every destination has exactly one such fax. Anything
else (none for a destination, or two that could both be ours) is not found: the
dispatcher keeps looking for ``dispatch.reconcile_window_s`` after the attempt (eFax may
list a fax late, or only once finished) and then holds the job rather than sending it
twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

CLOCK_SKEW_S = 120.0  # eFax's clock against ours


@dataclass(frozen=True)
class Listed:
    """A fax as eFax's sent list shows it."""

    fax_id: str
    destination: str | None
    pages: int | None
    completed_at: float | None  # None: not finished (or eFax did not say)
    reference: str | None  # the client reference, when the list carries it


@dataclass(frozen=True)
class Match:
    found: tuple[tuple[str, str], ...]  # (fax id, our destination), in the mail's order
    how: Literal["reference", "destination", "none", "ambiguous"]
    missing: tuple[str, ...] = ()  # destinations without a fax (or with several)

    @property
    def complete(self) -> bool:
        return self.how in ("reference", "destination")


def _digits(number: str | None) -> str:
    return re.sub(r"\D", "", number or "")[-10:]


def match(
    listed: Iterable[Listed],
    *,
    reference: str,
    destinations: Sequence[str],
    pages: int,
    attempt_at: float,
    known: set[str],
) -> Match:
    """Which listed faxes are the mail's (see the module docstring)."""
    candidates = [fax for fax in listed if fax.fax_id not in known]
    ours = [fax for fax in candidates if fax.reference == reference]
    if ours:
        found = _by_destination(ours, destinations, lambda fax: True)
        pairs = tuple((fax.fax_id, dest) for dest, fax in found if fax is not None)
        if len(pairs) == len(destinations):
            return Match(pairs, "reference")
        # eFax echoes numbers its own way: the reference alone says these are ours.
        return Match(tuple((fax.fax_id, fax.destination or "") for fax in ours), "reference")

    def plausible(fax: Listed) -> bool:
        if fax.reference:  # someone else's reference
            return False
        if fax.pages is not None and not pages <= fax.pages <= pages + 1:
            return False
        return fax.completed_at is None or fax.completed_at >= attempt_at - CLOCK_SKEW_S

    found = _by_destination(candidates, destinations, plausible)
    missing = tuple(dest for dest, fax in found if fax is None)
    if missing:
        several = any(len(_fitting(candidates, d, plausible)) > 1 for d in missing)
        return Match((), "ambiguous" if several else "none", missing)
    return Match(tuple((fax.fax_id, dest) for dest, fax in found if fax is not None), "destination")


def _fitting(
    candidates: Sequence[Listed], destination: str, plausible: Callable[[Listed], bool]
) -> list[Listed]:
    return [fax for fax in candidates if _digits(fax.destination) == _digits(destination) and plausible(fax)]


def _by_destination(
    candidates: Sequence[Listed], destinations: Sequence[str], plausible: Callable[[Listed], bool]
) -> list[tuple[str, Listed | None]]:
    """Each destination with its one plausible fax, or None (none, or more than one)."""
    out: list[tuple[str, Listed | None]] = []
    for dest in destinations:
        fitting = _fitting(candidates, dest, plausible)
        out.append((dest, fitting[0] if len(fitting) == 1 else None))
    return out

"""When to read a sent fax's status next, and what the gateway calls its states (pure).

A fax is checked at fixed *ages* (seconds since it was handed to eFax), so the schedule
survives restarts, webhook-triggered reads and rate-limit delays unchanged: the next
check is simply the first scheduled age after the current one. With the defaults
(``tracking.first_check_s`` 20, ``tracking.max_interval_s`` 300) the ages are::

    20, 40, 80, 160, 320, 620, 920, ...   (the age doubles until the gap reaches the cap)

so a fax that is final after 60 s costs 3 status reads (20, 40, 80) and one final after
300 s costs 5 (20 ... 320). Two more checks are pinned: at ``tracking.unconfirmed_after_s``
(the "still not confirmed" report goes out on time) and at ``tracking.give_up_after_s``
(the last read; a fax still not final then is ``unknown``).

``FaxStatus`` is the per-fax story kept in the store (``faxes.status``); it is not the
queue state of the track job. ``status_after_read`` maps one status read to it, and is
the only place that says "delivered": eFax said COMPLETE(D) *and* its error code is a
success one. COMPLETE with a failure code (``E41``, a non-zero number) is ``failed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# Clock readings are floats: a check due at exactly 20 s may run at 19.9999999 s.
EPSILON_S = 1e-3


@dataclass(frozen=True)
class TrackingSchedule:
    """The ages (seconds since submission) that govern tracking; the ``[tracking]``
    settings of the same names, with the same defaults."""

    first_check_s: float = 20.0  # first status read
    max_interval_s: float = 300.0  # the gap between reads doubles up to this
    unconfirmed_after_s: float = 86_400.0  # the one "still not confirmed" report
    give_up_after_s: float = 259_200.0  # the last read; not final then is "unknown"


class FaxStatus(StrEnum):
    """Where one destination of a mail stands, as the sender will be told."""

    SUBMITTED = "submitted"  # handed to eFax, no status read yet
    SENDING = "sending"  # eFax says NEW, IN PROGRESS, PENDING RETRY
    DELIVERED = "delivered"  # eFax says COMPLETE(D): the only status that is "delivered"
    FAILED = "failed"  # eFax says ERROR, with an E-code
    CANCELLED = "cancelled"  # eFax says CANCELED (E45)
    UNKNOWN = "unknown"  # still not final when tracking gave up

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({FaxStatus.DELIVERED, FaxStatus.FAILED, FaxStatus.CANCELLED, FaxStatus.UNKNOWN})
FINAL_VALUES = tuple(sorted(str(s) for s in FINAL))

# The eFax client's FaxState values (gateway.efax.models), as read from one status read.
_STATUS_BY_STATE = {
    "in_progress": FaxStatus.SENDING,
    "delivered": FaxStatus.DELIVERED,
    "failed": FaxStatus.FAILED,
    "cancelled": FaxStatus.CANCELLED,
}


def status_after_read(state: str, error_code: str | None) -> FaxStatus | None:
    """The story status after one read; None when eFax's status is unknown (keep the old one).

    ``error_code`` is eFax's result code with the success codes ("", "0", "SFAX", "OK")
    already taken out (None), as the eFax client reports it.
    """
    status = _STATUS_BY_STATE.get(str(state))
    if status is FaxStatus.DELIVERED and error_code:
        return FaxStatus.FAILED  # COMPLETE, but with a failure code: not delivered
    return status


def is_final(status: str) -> bool:
    return status in FINAL_VALUES


def scheduled_check_after(age_s: float, schedule: TrackingSchedule) -> float:
    """The first age of the doubling-then-capped sequence strictly after ``age_s``."""
    first, cap = schedule.first_check_s, schedule.max_interval_s
    age = age_s + EPSILON_S
    at = first
    while at <= age and at < cap:
        at += at  # the gap equals the age while it is under the cap
    if at <= age:
        at += (math.floor((age - at) / cap) + 1) * cap
    return at


def next_check_age(age_s: float, schedule: TrackingSchedule) -> float:
    """Age of the next status read: the schedule, or an earlier pinned check."""
    pinned = [p for p in (schedule.unconfirmed_after_s, schedule.give_up_after_s) if p > age_s + EPSILON_S]
    return min([scheduled_check_after(age_s, schedule), *pinned])


def first_check_age(schedule: TrackingSchedule) -> float:
    return next_check_age(0.0, schedule)


def unconfirmed(age_s: float, schedule: TrackingSchedule) -> bool:
    """Old enough for the one "still not confirmed" report."""
    return age_s + EPSILON_S >= schedule.unconfirmed_after_s


def gave_up(age_s: float, schedule: TrackingSchedule) -> bool:
    """Old enough to stop tracking (after this read)."""
    return age_s + EPSILON_S >= schedule.give_up_after_s


def check_ages(until_s: float, schedule: TrackingSchedule) -> list[float]:
    """Every scheduled check age up to and including the first one at or after ``until_s``."""
    ages = [first_check_age(schedule)]
    while ages[-1] + EPSILON_S < until_s and not gave_up(ages[-1], schedule):
        ages.append(next_check_age(ages[-1], schedule))
    return ages

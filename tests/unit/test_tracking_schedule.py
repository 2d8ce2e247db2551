"""The tracking schedule and the token bucket: pure functions of time and plain values."""

from __future__ import annotations

import pytest

from gateway.core.ratelimit import TokenBucket
from gateway.core.tracking import (
    FINAL,
    FaxStatus,
    TrackingSchedule,
    check_ages,
    first_check_age,
    gave_up,
    is_final,
    next_check_age,
    unconfirmed,
)
from gateway.settings import TrackingSettings

DEFAULTS = TrackingSchedule()


def test_checks_start_soon_and_double_up_to_the_cap() -> None:
    assert check_ages(1000, DEFAULTS) == [20, 40, 80, 160, 320, 620, 920, 1220]


@pytest.mark.parametrize(("done_after_s", "reads"), [(10, 1), (20, 1), (60, 3), (300, 5), (301, 5)])
def test_status_reads_per_fax_stay_under_the_bar(done_after_s: float, reads: int) -> None:
    # the read at or after completion sees it final; the bars are <= 4 (1 min) and <= 6 (5 min)
    assert len(check_ages(done_after_s, DEFAULTS)) == reads


def test_next_check_is_a_function_of_age_only() -> None:
    assert next_check_age(0, DEFAULTS) == 20
    assert next_check_age(19.9999, DEFAULTS) == 40  # a check that ran a hair early is not repeated
    assert next_check_age(45, DEFAULTS) == 80  # after an early (webhook) read, back on schedule
    assert next_check_age(700, DEFAULTS) == 920


def test_the_unconfirmed_and_give_up_times_are_checked_exactly() -> None:
    s = TrackingSchedule(unconfirmed_after_s=1000, give_up_after_s=1100)
    assert next_check_age(920, s) == 1000
    assert next_check_age(1000, s) == 1100
    assert not unconfirmed(999, s) and unconfirmed(1000, s)
    assert not gave_up(1099, s) and gave_up(1100, s)
    assert check_ages(10**9, s)[-1] == 1100


def test_small_settings_for_tests() -> None:
    s = TrackingSchedule(first_check_s=0.05, max_interval_s=0.2)
    assert first_check_age(s) == 0.05
    assert check_ages(1.0, s) == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_the_settings_hand_the_core_their_schedule() -> None:
    assert TrackingSettings().schedule == DEFAULTS  # the same defaults in both places
    assert TrackingSettings(first_check_s=5, give_up_after_s=60).schedule == TrackingSchedule(
        first_check_s=5, give_up_after_s=60
    )


def test_final_statuses() -> None:
    assert {FaxStatus.DELIVERED, FaxStatus.FAILED, FaxStatus.CANCELLED, FaxStatus.UNKNOWN} == FINAL
    assert is_final("delivered") and not is_final("sending") and not is_final("submitted")


def test_bucket_spaces_requests_at_the_rate() -> None:
    bucket = TokenBucket(5.0)
    waits = [bucket.reserve(100.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6])


def test_bucket_shared_by_workers_grants_in_order_and_never_faster() -> None:
    bucket = TokenBucket(5.0, now=0.0)
    now, grants = 0.0, []
    for step in range(50):  # three workers asking in turn, each coming back after its wait
        wait = bucket.reserve(now)
        grants.append(now + wait)
        now += 0.05 * (step % 3)
    grants.sort()
    for i in range(len(grants)):
        in_window = [g for g in grants if grants[i] <= g < grants[i] + 1.0 - 1e-9]
        assert len(in_window) <= 5


def test_bucket_refills_up_to_its_burst() -> None:
    bucket = TokenBucket(2.0, burst=3, now=0.0)
    assert [bucket.reserve(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(10.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        TokenBucket(0)

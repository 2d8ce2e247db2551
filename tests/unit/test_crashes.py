"""The pure rules of poison work (``gateway.core.crashes``)."""

from __future__ import annotations

from gateway.core.crashes import crash_reason, crashes_so_far, held_for_crashes, hold_after_crash, last_line


def test_crashes_are_counted_from_the_payload_and_held_at_the_limit() -> None:
    assert crashes_so_far({}) == 0 and crashes_so_far({"crashes": 2}) == 2
    assert crashes_so_far({"crashes": "x"}) == 0 and crashes_so_far({"crashes": -1}) == 0
    assert not hold_after_crash(2, 3) and hold_after_crash(3, 3) and hold_after_crash(1, 1)


def test_the_reason_is_the_traceback_s_last_line_and_is_recognised() -> None:
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'pages'\n\n"
    assert last_line(trace) == "KeyError: 'pages'"
    assert len(last_line("E: " + "x" * 1000)) == 300 and last_line("") == "unknown error"
    reason = crash_reason(3, last_line(trace))
    assert reason == "crashed 3 times, last: KeyError: 'pages'" and held_for_crashes(reason)
    assert crash_reason(1, "boom") == "crashed 1 time, last: boom"
    assert not held_for_crashes(None) and not held_for_crashes("eFax did not confirm receiving the fax")

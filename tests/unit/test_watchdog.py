"""The watchdog's judgement (gateway.core.watchdog): streaks, recovery, silence, wording."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.watchdog import Incident, delivered_again, failing_streak, notice, silent


def test_a_streak_is_the_newest_failures_sharing_one_error() -> None:
    busy = ("failed", "E34")
    assert failing_streak([busy, busy, busy], 3) == "E34"
    assert failing_streak([busy, busy, busy, ("delivered", None)], 3) == "E34"
    assert failing_streak([busy, busy], 3) is None  # too few
    assert failing_streak([busy, ("failed", "E36"), busy], 3) is None  # not the same error
    assert failing_streak([busy, ("delivered", None), busy], 3) is None
    assert failing_streak([("failed", None)] * 2, 2) == ""  # failures without a code
    assert failing_streak([busy] * 3, 0) is None  # off


def test_a_delivered_fax_ends_a_streak() -> None:
    assert delivered_again([("delivered", None), ("failed", "E34")])
    assert not delivered_again([("failed", "E34"), ("delivered", None)])
    assert not delivered_again([])


def test_silence_counts_only_for_a_mailbox_that_usually_receives() -> None:
    assert silent(0, 3, 3)
    assert not silent(0, 2, 3)
    assert not silent(1, 9, 3)


def test_the_notice_names_the_mailbox_and_the_error() -> None:
    mail = notice(
        Incident("failures", True, "13235550100", "E34", 3),
        to=["ops@example.com"],
        from_name="Fax gateway",
        from_address="fax@example.com",
        message_id="<x@example.com>",
        now=datetime(2026, 12, 3, tzinfo=UTC),
    )
    assert mail["Subject"] == "Fax mailbox 13235550100: 3 faxes in a row failed (E34)"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert "E34" in mail.get_content()
    at = datetime.now(UTC)
    for incident, words in [
        (Incident("silence", True, "13235550100", hours=24), "no fax received for 24 hours"),
        (Incident("silence", False, "13235550100", hours=24), "recovered"),
        (Incident("failures", False, "13235550100"), "recovered"),
    ]:
        shown = notice(incident, to=["a@b"], from_name="", from_address="f@b", message_id="<y@b>", now=at)
        assert words in str(shown["Subject"])


def test_the_digest_counts_and_groups_the_reasons() -> None:
    from gateway.core.watchdog import Digest, digest_body, digest_subject

    day = Digest(
        "13235550100",
        "2026-12-02",
        (("delivered", None), ("failed", "E34"), ("failed", "E34"), ("failed", None), ("sending", None)),
        received=4,
        held=1,
    )
    assert digest_subject(day) == "Fax mailbox 13235550100 on 2026-12-02: 5 sent, 3 failed, 4 received"
    text = digest_body(day)
    assert "Delivered:       1" in text and "Not final yet:   1" in text and "Held mails:      1" in text
    reasons = day.reasons()
    assert reasons[0][1] == 2 and reasons[0][0].startswith("E34: ")

"""Report wording: values in, an EmailMessage out."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from gateway.core.notices import (
    RESULT_CODES,
    Document,
    LeftOut,
    OtherDelivery,
    Outcome,
    Report,
    compose,
    explain,
    match_destinations,
    report_message_id,
    report_recipient,
    subject_line,
    thread_id,
    wanted,
)
from gateway.core.tracking import FaxStatus

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2024, 5, 10, 13, 7, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # 15:07 CEST
EFAX_CODES = ["E06", "E07", "E41", "E42", "E43", "E33", "E44", "E45", "E46", "E49", "E51", "E52", "E53"]


def delivered(number: str = "+1 323-555-1212", name: str | None = "Bob Smith") -> Outcome:
    return Outcome(
        number=number,
        name=name,
        status=FaxStatus.DELIVERED,
        fax_id="f1",
        pages=3,
        duration_s=95,
        attempts=1,
        submitted_at=T0 + 5,
        finished_at=T0 + 100,
    )


def failed(code: str, number: str = "+1 323-555-0000") -> Outcome:
    return Outcome(
        number=number,
        name=None,
        status=FaxStatus.FAILED,
        fax_id="f2",
        error_code=code,
        error_message="Number busy",
        pages=0,
        attempts=3,
        submitted_at=T0 + 5,
        finished_at=T0 + 400,
    )


def report(*outcomes: Outcome, kind: str = "final", **extra: object) -> Report:
    return Report(
        kind=kind,  # type: ignore[arg-type]
        job_id="01HXJOB",
        subject="Contract",
        original_message_id="<original-1@example.com>",
        accepted_at=T0,
        outcomes=outcomes,
        documents=(Document("contract.pdf", "pdf", 2),),
        left_out=(LeftOut("logo.png", "inline image referenced by the HTML body"),),
        **extra,  # type: ignore[arg-type]
    )


def mail(r: Report) -> EmailMessage:
    built = compose(
        r,
        to="alice@example.com",
        from_address="fax-gateway@fax.local",
        zone=BERLIN,
        now=T0 + 500,
        message_id=report_message_id("01HXJOB", "fax-gateway@fax.local"),
    )
    parsed = message_from_bytes(bytes(built), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def texts(m: EmailMessage) -> tuple[str, str]:
    plain, html = m.get_body(("plain",)), m.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


@pytest.mark.parametrize("code", EFAX_CODES)
def test_every_efax_code_has_plain_words_retry_and_advice(code: str) -> None:
    info = RESULT_CODES[code]
    assert info.meaning.endswith(".") and info.advice
    text, html = texts(mail(report(failed(code))))
    assert info.meaning.rstrip(".") in text and "this result is final" in text
    assert "eFax tried 3 times; this result is final." in text  # failed() says 3 attempts
    assert "What you can do" in text and "What you can do" in html


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("E41", "busy"),
        ("E42", "no fax machine picked up"),
        ("E43", "A person answered"),
        ("E33", "A person answered"),
        ("E51", "not valid"),
        ("E53", "not allowed"),
        ("E52", "high-risk"),
    ],
)
def test_failure_reasons_are_in_plain_words(code: str, words: str) -> None:
    assert words in explain(code, None).meaning


def test_unknown_code_still_gets_a_sentence() -> None:
    info = explain("E99", "Something odd")
    assert "E99" in info.meaning and "Something odd" in info.meaning and info.advice


def test_delivered_report_threads_under_the_original_with_facts_in_the_zone() -> None:
    m = mail(report(delivered()))
    assert m["Subject"] == "Fax delivered: Contract"
    assert m["In-Reply-To"] == "<original-1@example.com>"
    assert m["References"] == "<original-1@example.com>"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["To"] == "alice@example.com"
    assert m["Message-ID"] == "<fax-report.01HXJOB@fax.local>"
    text, html = texts(m)
    assert "was delivered" in text
    assert "To +1 323-555-1212 (Bob Smith): Delivered" in text
    assert "Pages: 3" in text and "Duration: 1 min 35 s" in text and "Attempts: 1" in text
    assert "Accepted by the gateway: 2024-05-10 15:07:00 CEST" in text
    assert "Job id: 01HXJOB" in text and "Europe/Berlin" in text
    assert "1. contract.pdf (pdf, 2 pages)" in text
    assert "logo.png: inline image referenced by the HTML body" in text
    assert "Bob Smith" in html and "contract.pdf" in html and "01HXJOB" in html


def test_several_destinations_in_one_report() -> None:
    r = report(delivered(), failed("E41"), failed("E51", number="+1 323-555-0051"))
    assert subject_line(r) == "Fax failed for 2 of 3 numbers: Contract"
    text, _ = texts(mail(r))
    assert "delivered to 1 of 3 numbers" in text
    assert text.count("To +1 323-555-") == 3
    assert "The fax number was busy" in text and "not valid" in text


@pytest.mark.parametrize(
    ("outcomes", "subject"),
    [
        ((FaxStatus.FAILED,), "Fax failed: Contract"),
        ((FaxStatus.CANCELLED,), "Fax cancelled: Contract"),
        ((FaxStatus.UNKNOWN,), "Fax not confirmed: Contract"),
        ((FaxStatus.DELIVERED, FaxStatus.DELIVERED), "Fax delivered: Contract"),
    ],
)
def test_subject_says_what_happened(outcomes: tuple[FaxStatus, ...], subject: str) -> None:
    r = report(*(Outcome("+1 323-555-1212", None, s) for s in outcomes))
    assert subject_line(r) == subject


def test_delivered_is_said_only_for_delivered() -> None:
    for status in (FaxStatus.FAILED, FaxStatus.CANCELLED, FaxStatus.UNKNOWN):
        text, _ = texts(mail(report(Outcome("+1 323-555-1212", None, status))))
        assert "was delivered" not in text and "Delivered" not in text


def test_unconfirmed_report_says_tracking_goes_on() -> None:
    sending = Outcome("+1 323-555-1212", None, FaxStatus.SENDING, error_code="E41", retrying=True)
    m = mail(report(sending, kind="unconfirmed", tracked_until=T0 + 3 * 86400))
    assert m["Subject"] == "Fax not yet confirmed: Contract"
    text, _ = texts(m)
    assert "not been confirmed yet" in text and "eFax will try again" in text
    assert "busy" in text and "keeps checking until 2024-05-13" in text


def test_not_sent_report_gives_the_reason() -> None:
    m = mail(
        report(
            kind="not_sent",
            not_sent_reason="eFax refused the request (400): bad document",
            intended=("+1 323-555-1212 (Bob)",),
        )
    )
    assert m["Subject"] == "Fax failed: Contract"
    text, _ = texts(m)
    assert "was not sent" in text and "bad document" in text and "Meant for: +1 323-555-1212 (Bob)" in text


def test_empty_subject_and_header_injection_are_harmless() -> None:
    r = Report(
        kind="final",
        job_id="J",
        subject="",
        original_message_id="<a@b>\r\nBcc: x@evil.example",
        accepted_at=T0,
        outcomes=(delivered(),),
    )
    m = mail(r)
    assert m["Subject"] == "Fax delivered: (no subject)"
    assert m["In-Reply-To"] == "<a@b>" and m["Bcc"] is None
    assert thread_id("original@example.com") == "<original@example.com>"
    assert thread_id("") is None


@pytest.mark.parametrize(
    ("to", "header_from", "expected"),
    [
        ("alice@example.com", "alice@example.com", "alice@example.com"),
        ("ALICE@example.com", "alice@example.com", "ALICE@example.com"),
        ("mallory@example.org", "mallory@example.org", None),  # not a sender: no backscatter
        ("desk@scan.example.com", "mfp@scan.example.com", "desk@scan.example.com"),  # a sender
        ("desk@elsewhere.example", "mfp@scan.example.com", "mfp@scan.example.com"),  # no outside Reply-To
        ("desk@elsewhere.example", "desk@elsewhere.example", None),  # From: must be a sender
        ("", "alice@example.com", "alice@example.com"),
        ("", "", None),
        ("<>", "<>", None),
        ("MAILER-DAEMON@example.com", "MAILER-DAEMON@example.com", None),
        ("not-an-address", "not-an-address", None),
    ],
)
def test_who_may_get_a_report(to: str, header_from: str, expected: str | None) -> None:
    senders = ["alice@example.com", "*@scan.example.com", "mailer-daemon@example.com"]
    address, why = report_recipient(to, header_from=header_from, senders=senders)
    assert address == expected, why
    gone = report_recipient("alice@example.com", header_from="alice@example.com", senders=None)
    assert gone[0] is None


def test_failures_only_skips_all_delivered() -> None:
    assert wanted(report(delivered()), "all")
    assert not wanted(report(delivered()), "failures")
    assert wanted(report(delivered(), failed("E41")), "failures")
    assert wanted(report(Outcome("+1", None, FaxStatus.CANCELLED)), "failures")
    assert wanted(report(kind="unconfirmed"), "failures")


def test_faxes_are_matched_to_recipients_despite_number_spelling() -> None:
    numbers = ["13235551212", "+442079460958", "13235550000"]
    assert match_destinations(numbers, ["3235550000", "+442079460958", "3235551212"]) == [2, 1, 0]
    assert match_destinations(numbers, ["", "?", "x"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("attempts", "code", "words"),
    [
        (1, "E41", "eFax tried once; this result is final."),  # never "already retried" beside one
        (3, "E41", "eFax tried 3 times; this result is final."),
        (None, "E41", "eFax retries this kind of failure by itself before it gives up"),
        (None, "E51", "eFax does not retry this; this result is final."),
    ],
)
def test_what_the_report_says_of_retries_agrees_with_the_attempts(
    attempts: int | None, code: str, words: str
) -> None:
    outcome = Outcome("+1 323-555-0000", None, FaxStatus.FAILED, error_code=code, attempts=attempts)
    text, html = texts(mail(report(outcome)))
    assert words in text and words in html
    assert "already retried" not in text
    assert f"Attempts: {attempts if attempts is not None else 'unknown'}" in text


def test_a_cover_page_is_said_to_be_counted_in_the_pages() -> None:
    text, html = texts(mail(report(delivered(), cover_page=True)))  # 3 pages, documents 2
    assert "Pages: 3 (a cover page and 2 pages of your documents)" in text
    assert "Documents faxed (after a cover page):" in text and "1. contract.pdf (pdf, 2 pages)" in text
    assert "a cover page and 2 pages of your documents" in html
    text, _ = texts(mail(report(delivered())))  # no cover page: the number alone
    assert "Pages: 3\n" in text and "cover" not in text
    partial = Outcome("+1 323-555-0000", None, FaxStatus.FAILED, error_code="E42", pages=1, attempts=1)
    text, _ = texts(mail(report(partial, cover_page=True)))
    assert "Pages sent: 1 (counting the cover page)" in text


def test_times_in_utc_say_utc_once() -> None:
    built = compose(
        report(delivered()),
        to="alice@example.com",
        from_address="fax@example.com",
        zone=ZoneInfo("UTC"),
        now=T0,
        message_id="<r@example.com>",
    )
    text = built.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Accepted by the gateway: 2024-05-10 13:07:00 UTC\n" in text and "UTC (UTC)" not in text


def test_the_report_from_has_a_display_name() -> None:
    assert mail(report(delivered()))["From"] == "Fax gateway <fax-gateway@fax.local>"
    named = compose(
        report(delivered()),
        to="alice@example.com",
        from_address="fax@example.com",
        zone=BERLIN,
        now=T0,
        message_id="<r@example.com>",
        from_name="Praxis Fax",
    )
    assert named["From"] == "Praxis Fax <fax@example.com>"


def test_the_parts_of_a_mail_delivered_apart_say_where_the_other_numbers_went() -> None:
    first = report(
        delivered(),
        intended=("+1 323-555-1212 (Bob Smith)",),
        deferred=("+1 323-555-0300", "+1 323-555-0301"),
    )
    text, html = texts(mail(first))  # written before the rest came
    assert "your mail server delivered it in parts. This report is about +1 323-555-1212 (Bob Smith)." in text
    assert (
        "The gateway asked your mail server to send +1 323-555-0300 and +1 323-555-0301 in another "
        "delivery, which gets a report of its own; if none comes, send your mail again to those numbers."
    ) in text
    assert "delivered it in parts" in html
    later = report(
        delivered(),
        intended=("+1 323-555-1212 (Bob Smith)",),
        deferred=("+1 323-555-0300", "+1 323-555-0301"),
        other_deliveries=(OtherDelivery("01HXJOB2", ("+1 323-555-0300", "+1 323-555-0301")),),
    )
    text, _ = texts(mail(later))
    assert "+1 323-555-0300 and +1 323-555-0301 came in another delivery (job 01HXJOB2)" in text
    assert "asked your mail server" not in text
    rest = report(
        delivered("+1 323-555-0300", None),
        intended=("+1 323-555-0300",),
        other_deliveries=(OtherDelivery("01HXJOB", ("+1 323-555-1212",)),),
    )
    text, _ = texts(mail(rest))
    assert "This report is about +1 323-555-0300." in text
    assert "+1 323-555-1212 came in another delivery (job 01HXJOB) and gets a report of its own." in text
    plain, _ = texts(mail(report(delivered())))
    assert "in parts" not in plain


def test_a_reply_address_is_explained_in_place_of_replies_are_not_read() -> None:
    hint = "To act on this fax, reply to this mail from your own address with one word: retry or cancel."
    plain, rich = texts(mail(report(failed("E41"), reply_hint=hint, attached=("confirmation-x.pdf",))))
    assert hint in plain and "replies are not read" not in plain
    assert "Attached: confirmation-x.pdf" in plain and "confirmation-x.pdf" in rich
    held, _ = texts(mail(report(kind="held", reply_hint=hint)))
    assert "reply to this mail with the word retry" in " ".join(held.split())
    bare, _ = texts(mail(report(failed("E41"))))
    assert "replies are not read" in bare

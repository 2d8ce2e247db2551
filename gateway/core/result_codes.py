"""eFax's result codes (efax-api.md §6.1) for people: what happened, retries, what to do (pure).

Each ``ResultCode`` says what the code means in a sentence, whether eFax retries it by
itself before calling it final (the billable / non-billable / human-answer retry
buckets), whether sending again to the same number can help, and what the sender can
do. ``explain`` also gives a sentence for codes eFax never documented.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultCode:
    """One eFax result code, for people."""

    code: str
    meaning: str  # a sentence: what happened
    retried: bool  # eFax retries this by itself before calling it final
    permanent: bool  # sending the same fax to the same number again will not help
    advice: str  # what the sender can do


_SEND_AGAIN = "Send your mail again."
RESULT_CODES: dict[str, ResultCode] = {
    c.code: c
    for c in (
        ResultCode(
            "E06",
            "eFax had an unexpected system problem while sending.",
            True,
            False,
            f"{_SEND_AGAIN} If it keeps happening, tell your administrator.",
        ),
        ResultCode(
            "E07",
            "eFax could not turn your documents into fax pages.",
            True,
            True,
            "Check that each attachment opens normally (not damaged or password-protected), "
            "or attach it as a PDF, then send again.",
        ),
        ResultCode(
            "E33",
            "A person answered the call instead of a fax machine.",
            True,
            True,
            "Check that the number is a fax number and not a telephone; ask the recipient "
            "for their fax number.",
        ),
        ResultCode(
            "E41",
            "The fax number was busy.",
            True,
            False,
            "Try again later, or ask the recipient whether their fax line is free.",
        ),
        ResultCode(
            "E42",
            "Nobody answered: the number rang but no fax machine picked up.",
            True,
            False,
            "Check the number and that the recipient's fax machine is switched on, then try again.",
        ),
        ResultCode(
            "E43",
            "A person answered the call instead of a fax machine.",
            True,
            True,
            "Check that the number is a fax number and not a telephone; ask the recipient "
            "for their fax number.",
        ),
        ResultCode(
            "E44",
            "The transmission was interrupted before all pages got through.",
            True,
            False,
            f"{_SEND_AGAIN} The recipient may have some of the pages; you may want to tell them.",
        ),
        ResultCode(
            "E45",
            "The fax was cancelled by the sender.",
            False,
            False,
            "Nothing, unless you still want it sent: then send your mail again.",
        ),
        ResultCode(
            "E46",
            "The fax expired: eFax could not complete it in the time it allows.",
            True,
            False,
            "Send your mail again later.",
        ),
        ResultCode(
            "E49",
            "The connection with the receiving fax machine failed (a communication error, "
            "often a poor line).",
            True,
            False,
            "Try again later; if it keeps failing, the recipient's fax machine or line may have a problem.",
        ),
        ResultCode(
            "E51",
            "The fax number is not valid: its format is wrong.",
            False,
            True,
            "Check the number, including the country code, and send again.",
        ),
        ResultCode(
            "E52",
            "eFax refused to dial the number because it is a high-risk destination.",
            False,
            True,
            "Check the number; if it is right, ask your administrator to contact eFax.",
        ),
        ResultCode(
            "E53",
            "The number is not allowed for this fax account.",
            False,
            True,
            "Check the number, or ask your administrator which destinations this account may fax.",
        ),
    )
}


def explain(code: str | None, message: str | None) -> ResultCode:
    """The plain meaning of a result code; codes eFax did not document still get a sentence."""
    known = RESULT_CODES.get((code or "").strip().upper())
    if known is not None:
        return known
    said = f" ({message})" if message else ""
    what = f"eFax reported error {code}{said}." if code else f"eFax reported a failure{said} without a code."
    return ResultCode(
        code or "",
        what,
        False,
        False,
        f"{_SEND_AGAIN} If it fails again, tell your administrator and quote this report.",
    )

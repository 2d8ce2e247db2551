"""Which listed faxes are a mail's, after a send of unknown outcome (pure)."""

from __future__ import annotations

from gateway.core.reconcile import Listed, match

AT = 1_700_000_000.0
TWO = ["13235551212", "13235551213"]


def fax(
    n: int, dest: str, *, pages: int | None = 2, done: float | None = AT + 60, ref: str | None = None
) -> Listed:
    return Listed(f"fax-{n}", dest, pages, done, ref)


def test_the_reference_decides_when_the_list_carries_it() -> None:
    listed = [fax(1, "3235551212", ref="JOB1"), fax(2, "3235551213", ref="JOB1"), fax(3, "3235551212")]
    found = match(listed, reference="JOB1", destinations=TWO, pages=1, attempt_at=AT, known=set())
    assert found.how == "reference" and found.found == (("fax-1", TWO[0]), ("fax-2", TWO[1]))


def test_without_references_one_plausible_fax_per_number_is_found() -> None:
    listed = [fax(1, "+13235551212", pages=None, done=None), fax(2, "3235551213", pages=1)]
    found = match(listed, reference="JOB1", destinations=TWO, pages=1, attempt_at=AT, known=set())
    assert found.how == "destination" and found.found == (("fax-1", TWO[0]), ("fax-2", TWO[1]))


def test_faxes_of_other_mails_of_other_sizes_or_from_before_are_not_ours() -> None:
    listed = [
        fax(1, "3235551212", ref="JOB0"),  # someone else's reference
        fax(2, "3235551212", pages=5),  # another document
        fax(3, "3235551212", done=AT - 3600),  # finished before the attempt
        fax(4, "3235551212"),  # already recorded for another mail
    ]
    found = match(listed, reference="JOB1", destinations=TWO[:1], pages=1, attempt_at=AT, known={"fax-4"})
    assert found.how == "none" and found.missing == (TWO[0],) and not found.complete


def test_two_faxes_that_could_both_be_ours_are_not_guessed_between() -> None:
    listed = [fax(1, "3235551212"), fax(2, "3235551212")]
    found = match(listed, reference="JOB1", destinations=TWO[:1], pages=1, attempt_at=AT, known=set())
    assert found.how == "ambiguous" and not found.complete


def test_one_number_found_and_another_not_is_not_found() -> None:
    found = match(
        [fax(1, "3235551212")], reference="JOB1", destinations=TWO, pages=1, attempt_at=AT, known=set()
    )
    assert found.how == "none" and found.missing == (TWO[1],)

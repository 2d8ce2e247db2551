"""The transmission confirmation page (gateway.core.confirmation) and its thumbnail."""

from __future__ import annotations

import io
from dataclasses import replace
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from gateway.core.confirmation import Confirmation, SentDocument, facts, latin1, render
from gateway.core.thumbnail import first_page_png
from tests.e2e.conftest import make_pdf

AT = 1_764_754_200.0  # 2025-12-03 09:30:00 UTC
BERLIN = ZoneInfo("Europe/Berlin")


def confirmation(**changes: object) -> Confirmation:
    base = Confirmation(
        job_id="JOB1",
        fax_id="0f8fad5b-d9cb-469f-a165-70867728950e",
        result="Delivered",
        result_detail="eFax reported the transmission complete",
        destination="+1 323-555-1212",
        recipient_name="Zoë Ångström 李",
        from_number="13235550100",
        sender="alice@example.com",
        subject="Contract",
        accepted_at=AT - 60,
        submitted_at=AT - 50,
        completed_at=AT,
        pages=3,
        duration_s=47,
        attempts=1,
        remote_csid=None,
        cover_page=True,
        documents=(SentDocument("contract.pdf", "pdf", "PDF", 2, 1234, "ab" * 32),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def text_of(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(p.extract_text() for p in reader.pages)


def test_start_is_end_minus_duration_in_utc_and_the_mailbox_zone() -> None:
    rows = dict(facts(confirmation(), BERLIN))
    assert rows["End"] == "2025-12-03 09:30:00 UTC / 10:30:00 CET (Europe/Berlin)"
    assert rows["Start"].startswith("2025-12-03 09:29:13 UTC / 10:29:13 CET") and "end minus" in rows["Start"]
    assert rows["Remote station (CSID)"] == "not reported"


def test_what_efax_did_not_report_is_said_so_never_guessed() -> None:
    rows = dict(facts(confirmation(completed_at=None, duration_s=None, pages=None), BERLIN))
    assert rows["Start"] == rows["End"] == rows["Duration"] == "not reported by eFax"
    assert rows["Pages"] == "not reported by eFax"


def test_a_reported_csid_is_printed() -> None:
    _, text = text_of(render([confirmation(remote_csid="ACME LEGAL")], zone=BERLIN, generated_at=AT))
    assert "Remote station (CSID) ACME LEGAL" in text


def test_twenty_five_documents_stay_on_one_page_and_say_where_the_rest_are() -> None:
    docs = tuple(SentDocument(f"d{i}.pdf", "pdf", "PDF", 1, 10, f"{i:02d}" * 32) for i in range(25))
    pages, text = text_of(render([confirmation(documents=docs)], zone=BERLIN, generated_at=AT))
    assert pages == 1
    assert "00" * 32 in text and "queue show JOB1 prints every hash" in text


def test_names_outside_latin1_are_written_as_near_as_the_standard_fonts_allow() -> None:
    assert latin1("Zoë Ångström 李") == "Zoë Ångström ?"
    assert latin1("Ł") == "L" or latin1("Ł") == "?"
    pages, text = text_of(render([confirmation()], zone=BERLIN, generated_at=AT))
    assert pages == 1 and "Zoë Ångström ?" in text


def test_thumbnails_of_a_pdf_and_of_text_are_pngs_and_junk_gives_none() -> None:
    for png in (first_page_png("PDF", make_pdf()), first_page_png("TXT", b"Hello\nworld")):
        assert png is not None and png.startswith(b"\x89PNG")
    assert first_page_png("PDF", b"%PDF-1.4 not really") is None
    assert first_page_png("TXT", b"   ") is None
    with_picture = render(
        [confirmation(thumbnail_png=first_page_png("PDF", make_pdf()))], zone=BERLIN, generated_at=AT
    )
    assert len(PdfReader(io.BytesIO(with_picture)).pages[0].images) == 1

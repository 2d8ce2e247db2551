"""The eFax client's value types and tolerant wire reading: pure tables."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.efax import wire
from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import FaxState, check_fax_id, normalise_status, parse_timestamp

FAX_ID = "ea7382cf-8483-4bc5-954e-d3bc7074246a"


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("NEW", FaxState.IN_PROGRESS),
        ("INPROGRESS", FaxState.IN_PROGRESS),
        ("IN PROGRESS", FaxState.IN_PROGRESS),
        ("IN_PROGRESS", FaxState.IN_PROGRESS),
        ("in-progress", FaxState.IN_PROGRESS),
        ("INPROGESS", FaxState.IN_PROGRESS),
        ("PENDING RETRY", FaxState.IN_PROGRESS),
        ("PENDINGRETRY", FaxState.IN_PROGRESS),
        ("COMPLETE", FaxState.DELIVERED),
        ("COMPLETED", FaxState.DELIVERED),
        ("Completed", FaxState.DELIVERED),
        ("ERROR", FaxState.FAILED),
        ("FAILED", FaxState.FAILED),
        ("CANCELED", FaxState.CANCELLED),
        ("CANCELLED", FaxState.CANCELLED),
        (" canceled ", FaxState.CANCELLED),
        ("STORED", FaxState.UNKNOWN),
        ("", FaxState.UNKNOWN),
        (None, FaxState.UNKNOWN),
    ],
)
def test_normalise_status(raw: str | None, state: FaxState) -> None:
    assert normalise_status(raw) is state


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-11-14T15:37:22+00:00", datetime(2024, 11, 14, 15, 37, 22, tzinfo=UTC)),
        ("2024-05-10T15:07:01.000Z", datetime(2024, 5, 10, 15, 7, 1, tzinfo=UTC)),
        ("2024-05-10T15:07:01z", datetime(2024, 5, 10, 15, 7, 1, tzinfo=UTC)),
        ("2024-05-21T04:27:56.000+0000", datetime(2024, 5, 21, 4, 27, 56, tzinfo=UTC)),
        (
            "1984-01-01T14:56:16.395012+00:00",
            datetime(1984, 1, 1, 14, 56, 16, 395012, tzinfo=UTC),
        ),
        (
            "2024-05-10T15:07:01.12+05:30",
            datetime(2024, 5, 10, 15, 7, 1, 120000, tzinfo=timezone(timedelta(hours=5.5))),
        ),
        ("2024-05-10 15:07:01", datetime(2024, 5, 10, 15, 7, 1, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("  ", None),
        ("yesterday", None),
    ],
)
def test_parse_timestamp(raw: str | None, expected: datetime | None) -> None:
    parsed = parse_timestamp(raw)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


def test_fax_id_is_lowercased_and_checked() -> None:
    assert check_fax_id(FAX_ID.upper()) == FAX_ID
    for bad in ["", "../../tokens", FAX_ID + "0", FAX_ID[:-1] + "g", "3f3123e2c-...."]:
        with pytest.raises(EfaxPermanentError) as caught:
            check_fax_id(bad)
        assert caught.value.status == 0


def _details(**overrides: object) -> wire.WireFax:
    data: dict[str, object] = {
        "fax_id": FAX_ID,
        "direction": "OUTBOUND",
        "transmission_data": {
            "transmission_status": "COMPLETED",
            "completed_timestamp": "2024-05-10T15:07:01.000Z",
            "error_code": "0",
            "error_message": "OK",
            "total_pages_sent": 3,
            "total_duration": "42",
        },
        "attempts": [{"attempt_number": 1, "attempt_status": "COMPLETED", "duration": 42}],
    }
    data.update(overrides)
    return wire.read_model(wire.WireFax, data)


def test_transmission_details_clone_shape() -> None:
    status = wire.to_status(_details(), FAX_ID)
    assert status.state is FaxState.DELIVERED
    assert status.raw_status == "COMPLETED"
    assert (status.error_code, status.error_message) == (None, None)
    assert (status.pages, status.duration_s, status.attempts) == (3, 42, 1)
    assert status.completed_at == datetime(2024, 5, 10, 15, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("csid", "expected"), [("ACME LEGAL", "ACME LEGAL"), ("", None), ("unavailable", None)]
)
def test_the_remote_csid_is_read_only_when_efax_reports_one(csid: str, expected: str | None) -> None:
    assert wire.to_status(_details(destination_fax_csid=csid), FAX_ID).remote_csid == expected
    assert wire.to_status(_details(), FAX_ID).remote_csid is None  # the clone shape has none


@pytest.mark.parametrize("no_error", ["", "0", "SFAX", "sfax", "OK", None])
def test_success_codes_are_not_errors(no_error: str | None) -> None:
    td = {"transmission_status": "COMPLETE", "error_code": no_error}
    assert wire.to_status(_details(transmission_data=td), FAX_ID).error_code is None


def test_failed_fax_keeps_code_and_message() -> None:
    td = {"transmission_status": "ERROR", "error_code": "E41", "error_message": "Number busy"}
    status = wire.to_status(_details(transmission_data=td), FAX_ID)
    assert (status.state, status.error_code, status.error_message) == (
        FaxState.FAILED,
        "E41",
        "Number busy",
    )


def test_failed_fax_without_summary_code_uses_last_attempt() -> None:
    attempts = [
        {"attempt_number": 1, "attempt_status": "ERROR", "error_code": "E42"},
        {"attempt_number": 2, "attempt_status": "ERROR", "error_code": "E41", "error_message": "x"},
    ]
    td = {"transmission_status": "ERROR", "error_code": ""}
    status = wire.to_status(_details(transmission_data=td, attempts=attempts), FAX_ID)
    assert (status.error_code, status.error_message, status.attempts) == ("E41", "x", 2)


def test_transmission_details_flat_shape_and_garbage() -> None:
    flat = wire.read_model(
        wire.WireFax,
        {
            "fax_status": "IN PROGRESS",
            "pages": "two",
            "duration": None,
            "attempts": 3,
            "transmission_data": "weird",
            "unknown_field": {"nested": True},
        },
    )
    status = wire.to_status(flat, FAX_ID)
    assert status.state is FaxState.IN_PROGRESS
    assert (status.pages, status.duration_s, status.attempts) == (None, None, 3)


def test_summary_from_metadata_object_and_array_shapes() -> None:
    item = {
        "fax_id": FAX_ID,
        "direction": "outbound",
        "fax_status": "STORED",
        "pages": 2,
        "duration": 38,
        "completed_timestamp": "2024-11-26T20:09:13+00:00",
        "originating_fax_number": "unavailable",
        "originating_fax_tsid": "UNAVAILABLE",
        "destination_fax_number": "+12345678910",
        "image_downloaded": "false",
        "transmission_data": [{"transmission_status": "ERROR", "error_code": "E51"}],
        "client_tracking_data": {"client_reference_id": "job-1"},
    }
    summary = wire.to_summary(wire.read_model(wire.WireFax, item), FAX_ID)
    assert summary.direction == "OUTBOUND"
    assert summary.state is FaxState.FAILED  # transmission_status wins over fax_status
    assert (summary.pages, summary.duration_s) == (2, 38)
    assert summary.originating_fax_number is None
    assert summary.originating_fax_tsid is None
    assert summary.destination_fax_number == "+12345678910"
    assert summary.image_downloaded is False
    assert summary.client_reference_id == "job-1"
    assert summary.error_code == "E51"


def test_summary_of_minimal_received_item() -> None:
    summary = wire.to_summary(wire.read_model(wire.WireFax, {"fax_id": FAX_ID}), FAX_ID)
    assert summary.state is FaxState.UNKNOWN
    assert summary.completed_at is None
    assert summary.client_reference_id is None


def test_submitted_reply_shapes() -> None:
    items = [{"fax_id": FAX_ID.upper(), "destination_fax_number": "8665559999"}]
    assert wire.to_submitted(items)[0].fax_id == FAX_ID
    assert wire.to_submitted({"faxes": items})[0].destination_fax_number == "8665559999"
    bad_replies: list[object] = [[], {"faxes": []}, [{"fax_id": "nope"}], "ok", [1]]
    for bad in bad_replies:
        with pytest.raises(wire.UnreadableReply):
            wire.to_submitted(bad)


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        (b"%PDF-1.7\n...", "PDF"),
        (b"\n %PDF-1.4", "PDF"),
        (b"II*\x00rest", "TIFF"),
        (b"MM\x00*rest", "TIFF"),
        (b"GIF89a", "UNKNOWN"),
    ],
)
def test_image_format_is_sniffed(content: bytes, fmt: str) -> None:
    data = {"fax_id": FAX_ID, "file_name": "x.pdf", "image": base64.b64encode(content).decode()}
    image = wire.to_image(data, FAX_ID)
    assert (image.content, image.format, image.file_name) == (content, fmt, "x.pdf")


@pytest.mark.parametrize("data", [{"image": ""}, {"image": None}, {}, {"image": 5}, []])
def test_image_reply_without_image_is_unreadable(data: object) -> None:
    with pytest.raises(wire.UnreadableReply):
        wire.to_image(data, FAX_ID)


def test_image_base64_with_line_breaks_and_no_padding() -> None:
    encoded = base64.b64encode(b"%PDF-1.4 abcd").decode().rstrip("=")
    wrapped = encoded[:8] + "\r\n" + encoded[8:]
    assert wire.to_image({"image": wrapped}, FAX_ID).content == b"%PDF-1.4 abcd"
    with pytest.raises(wire.UnreadableReply):
        wire.to_image({"image": "not*base64!"}, FAX_ID)


@pytest.mark.parametrize(
    ("body", "content_type", "code", "text"),
    [
        (
            b'{"errors":[{"element_name":"fax_number","user_message":"Bad number",'
            b'"developer_message":"fax_number invalid","error_code":"100"}],'
            b'"transaction_id":"t-1"}',
            "application/json",
            "100",
            "Bad number; fax_number invalid",
        ),
        (b'{"errors":[{"element_name":"documents","error_code":101}]}', "", "101", "field documents"),
        (b'{"message":"Unauthorized"}', "application/json", None, "Unauthorized"),
        (
            b'{"error":"invalid_client","error_description":"Bad credentials"}',
            "",
            None,
            "Bad credentials; invalid_client",
        ),
        (b"Too Many Requests.", "text/plain", None, "Too Many Requests."),
        (b"<html><body>502</body></html>", "text/html", None, None),
        (b"", "", None, None),
        (b"[1, 2]", "application/json", None, "[1, 2]"),
    ],
)
def test_error_bodies(body: bytes, content_type: str, code: str | None, text: str | None) -> None:
    assert wire.error_details(body, content_type) == (code, text)


NOW = datetime(2024, 5, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Fri, 10 May 2024 12:00:30 GMT", 30.0),
        ("Fri, 10 May 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert wire.retry_after_s(header, NOW) == seconds

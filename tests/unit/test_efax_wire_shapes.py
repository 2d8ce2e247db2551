"""Reading eFax's replies where efax-api.md leaves the shape open (gateway.efax.wire).

COMPLETE with a failure code is a failure; the create reply as a list, wrapped in
``faxes`` or one object; error bodies of every shape keep their text.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.efax import wire
from gateway.efax.models import FaxState

FAX_ID = "ea7382cf-8483-4bc5-954e-d3bc7074246a"
OTHER_ID = "057be5c6-c358-4b37-bd46-c2a5c33b9f89"


def details(status: str, code: str = "", message: str = "") -> dict[str, Any]:
    return {
        "fax_id": FAX_ID,
        "transmission_data": {"transmission_status": status, "error_code": code, "error_message": message},
    }


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        ("COMPLETE", "E41", "Number busy"),
        ("COMPLETED", "E41", "Number busy"),
        ("Completed", "E51", "Destination fax number format invalid"),
        ("COMPLETED", "3", "Line error"),
        ("COMPLETE", "E42", "OK"),  # a failure code wins over a cheerful message
        ("COMPLETE", "E43", ""),
    ],
)
def test_complete_with_a_failure_code_is_failed_with_that_code(status: str, code: str, message: str) -> None:
    data = details(status, code, message)
    read = wire.to_status(wire.read_model(wire.WireFax, data), FAX_ID)
    assert (read.state, read.error_code, read.raw_status) == (FaxState.FAILED, code, status)
    assert read.error_message == (message or None)
    summary = wire.to_summary(wire.read_model(wire.WireFax, data), FAX_ID)
    assert (summary.state, summary.error_code) == (FaxState.FAILED, code)
    flat = {"fax_id": FAX_ID, "status": status, "error_code": code, "error_message": message}
    assert wire.to_status(wire.read_model(wire.WireFax, flat), FAX_ID).state is FaxState.FAILED


@pytest.mark.parametrize("code", ["", "0", "00", "0.0", "SFAX", "sfax", "OK", None])
def test_complete_with_a_success_code_is_delivered(code: str | None) -> None:
    data = {"fax_id": FAX_ID, "transmission_data": {"transmission_status": "COMPLETED", "error_code": code}}
    read = wire.to_status(wire.read_model(wire.WireFax, data), FAX_ID)
    assert (read.state, read.error_code, read.error_message) == (FaxState.DELIVERED, None, None)


@pytest.mark.parametrize(
    "body",
    [
        [{"fax_id": FAX_ID}, {"fax_id": OTHER_ID}],
        {"faxes": [{"fax_id": FAX_ID}, {"fax_id": OTHER_ID}]},
        {"fax_id": FAX_ID.upper(), "destination_fax_number": "8665559999"},
        {"faxes": {"fax_id": FAX_ID}},
    ],
    ids=["list", "faxes", "object", "faxes-object"],
)
def test_the_create_reply_is_read_in_each_shape(body: object) -> None:
    ids = [fax.fax_id for fax in wire.to_submitted(body)]
    assert ids[0] == FAX_ID and ids[1:] in ([], [OTHER_ID])


@pytest.mark.parametrize("bad", [{"fax_id": "nope"}, {"faxes": {}}, {"destination_fax_number": "1"}, {}])
def test_a_create_reply_without_a_usable_id_is_unreadable(bad: object) -> None:
    with pytest.raises(wire.UnreadableReply):
        wire.to_submitted(bad)


@pytest.mark.parametrize(
    ("body", "content_type", "code", "text"),
    [
        (
            b'{"error_code": "E100", "developer_message": "fax_number is invalid", "transaction_id": "t"}',
            "application/json",
            "E100",
            "fax_number is invalid",
        ),
        (
            b'{"Message": "User is not authorized to access this resource"}',
            "application/json",
            None,
            "User is not authorized to access this resource",
        ),
        (b'{"message": "Forbidden"}', "application/json", None, "Forbidden"),
        (b'{"MESSAGE": "Endpoint request timed out"}', "", None, "Endpoint request timed out"),
        (b'{"error": {"code": "429", "message": "Slow down"}}', "", "429", "Slow down"),
        (b'{"errors": ["Bad fax number", "No documents"]}', "", None, "Bad fax number; No documents"),
        (b'[{"error_code": "100", "user_message": "Bad request"}]', "", "100", "Bad request"),
        (b'"Service Unavailable"', "application/json", None, "Service Unavailable"),
        (b"Bad Gateway: upstream\n reset", "text/plain", None, "Bad Gateway: upstream reset"),
        (
            b'{"status": 418, "api_key": "k-123", "why": "teapot"}',
            "",
            None,
            '{"status":418,"api_key":"[redacted]","why":"teapot"}',
        ),
    ],
    ids=[
        "flat",
        "Message",
        "message",
        "MESSAGE",
        "error-object",
        "strings",
        "array",
        "json-string",
        "text",
        "unknown",
    ],
)
def test_error_bodies_of_other_shapes_keep_their_text(
    body: bytes, content_type: str, code: str | None, text: str
) -> None:
    assert wire.error_details(body, content_type) == (code, text)

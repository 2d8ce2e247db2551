"""What the eFax simulator puts on the wire: JSON shapes built from fax records.

Pure functions of (record, status, config): the metadata object (efax-api.md
§5.1, also each item of the sent/received lists and the webhook payload), the
transmission-details object (§5.4), timestamps in the configured style, the
configured status spellings, and the eFax error shape (§3.4)::

    {"errors": [{"element_name", "user_message", "developer_message",
                 "more_info", "error_code"}], "transaction_id": "..."}

Choices on UNCONFIRMED points: outbound ``fax_status`` repeats the transmission
status (a failure reads COMPLETE, with its Exx code, under ``failure_status``
"COMPLETE"); inbound ``fax_status`` is "STORED"; ``originating_fax_number`` of an
outbound fax is its ``custom_CallerID`` or "unavailable"; failed attempts
report 0 pages and 0 seconds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.faxes import (
    ERROR_MESSAGES,
    Direction,
    FaxRecord,
    FaxState,
    Status,
)

CLIENT_DATA_FIELDS = (
    "client_code",
    "client_id",
    "client_matter",
    "client_name",
    "client_reference_id",
    "billing_code",
)


def timestamp(at: float | None, style: str) -> str | None:
    """Format simulator-clock seconds as eFax-style ISO-8601 (None stays None)."""
    if at is None:
        return None
    moment = datetime.fromtimestamp(at, tz=UTC)
    if style == "offset":
        return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    millis = f"{moment.microsecond // 1000:03d}"
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis}Z" if style == "z" else f"{base}.{millis}+0000"


def spell(state: FaxState, config: SimulatorConfig) -> str:
    """The wire spelling of a state; with ``failure_status`` COMPLETE, ERROR is spelt so too."""
    if state is FaxState.COMPLETE or (state is FaxState.ERROR and config.failure_status == "COMPLETE"):
        return config.status_complete_spelling
    if state is FaxState.INPROGRESS:
        return config.status_inprogress_spelling
    return state.value


def _option(fax: FaxRecord, name: str) -> Any:
    return fax.fax_options.get(name)


def _pages_and_duration(fax: FaxRecord, status: Status, config: SimulatorConfig) -> tuple[int, int]:
    if fax.direction is Direction.INBOUND or status.state is FaxState.COMPLETE:
        return fax.pages, fax.pages * config.seconds_per_page
    return 0, 0


def metadata(fax: FaxRecord, status: Status, config: SimulatorConfig) -> dict[str, Any]:
    """The §5.1 metadata object for one fax."""
    pages, duration = _pages_and_duration(fax, status, config)
    if fax.direction is Direction.INBOUND:
        fax_status = "STORED"
        transmission = {
            "transmission_status": spell(FaxState.COMPLETE, config),
            "billable_retries": None,
            "error_code": "",
            "error_message": "",
        }
    else:
        fax_status = spell(status.state, config)
        transmission = {
            "transmission_status": fax_status,
            "billable_retries": None,
            "error_code": status.error_code,
            "error_message": ERROR_MESSAGES.get(status.error_code, "") if status.error_code else "",
        }
    cover = _option(fax, "cover_page_options")
    cover = cover if isinstance(cover, dict) else {}
    caller_id = _option(fax, "custom_CallerID")
    originating = fax.originating_number
    if fax.direction is Direction.OUTBOUND:
        originating = caller_id if isinstance(caller_id, str) and caller_id else "unavailable"
    return {
        "fax_id": fax.fax_id,
        "size": fax.size,
        "duration": duration,
        "pages": pages,
        "image_downloaded": fax.image_downloaded,
        "fax_status": fax_status,
        "completed_timestamp": timestamp(status.completed_at, config.timestamp_style),
        "direction": fax.direction.value,
        "originating_fax_number": originating,
        "destination_fax_number": fax.destination_number,
        "originating_fax_tsid": fax.originating_tsid,
        "destination_fax_csid": _csid(status, config),
        "routing_data": {
            "from_name": str(cover.get("from_name", "")),
            "to_name": fax.to_name,
            "to_company": fax.to_company,
            "subject": str(cover.get("subject", "")),
            "cover_page_tags": None,
        },
        "transmission_data": transmission,
        "client_tracking_data": {name: str(fax.client_data.get(name) or "") for name in CLIENT_DATA_FIELDS},
    }


def transmission_details(fax: FaxRecord, status: Status, config: SimulatorConfig) -> dict[str, Any]:
    """The §5.4 transmission-details object for one outbound fax."""
    pages, duration = _pages_and_duration(fax, status, config)
    spelled = spell(status.state, config)
    completed = timestamp(status.completed_at, config.timestamp_style)
    message = ERROR_MESSAGES.get(status.error_code, "") if status.error_code else ""
    attempts: list[dict[str, Any]] = []
    if status.state is not FaxState.NEW:
        attempts.append(
            {
                "attempt_number": 1,
                "attempt_status": spelled,
                "started_timestamp": timestamp(fax.created_at, config.timestamp_style),
                "completed_timestamp": completed,
                "error_code": status.error_code,
                "error_message": message,
                "pages_sent": pages,
                "duration": duration,
            }
        )
    meta = metadata(fax, status, config)
    return {
        "fax_id": fax.fax_id,
        "direction": fax.direction.value,
        "originating_fax_number": meta["originating_fax_number"],
        "destination_fax_number": fax.destination_number,
        "transmission_data": {
            "transmission_status": spelled,
            "completed_timestamp": completed,
            "error_code": status.error_code,
            "error_message": message,
            "total_pages_sent": pages,
            "total_duration": duration,
            "billable_retries": None,
        },
        "attempts": attempts,
        **({"destination_fax_csid": _csid(status, config)} if _csid(status, config) else {}),
    }


def _csid(status: Status, config: SimulatorConfig) -> str:
    """The remote station id, once delivered, when the config names one."""
    return config.destination_csid if status.state is FaxState.COMPLETE else ""


def transaction_id_or_new(header_value: str | None) -> str:
    return header_value if header_value else str(uuid.uuid4())


def error_entry(
    error_code: str,
    user_message: str,
    *,
    developer_message: str = "",
    element_name: str = "",
    more_info: str = "",
) -> dict[str, str]:
    """One item of the ``errors`` array."""
    return {
        "element_name": element_name,
        "user_message": user_message,
        "developer_message": developer_message or user_message,
        "more_info": more_info,
        "error_code": error_code,
    }


def errors_response(
    status_code: int,
    entries: list[dict[str, str]],
    *,
    transaction_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An eFax error reply listing several errors."""
    body = {"errors": entries, "transaction_id": transaction_id_or_new(transaction_id)}
    return JSONResponse(body, status_code=status_code, headers=headers)


def error_response(
    status_code: int,
    error_code: str,
    user_message: str,
    *,
    transaction_id: str | None = None,
    developer_message: str = "",
    element_name: str = "",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An eFax error reply; a missing transaction id is replaced by a fresh uuid."""
    entry = error_entry(
        error_code, user_message, developer_message=developer_message, element_name=element_name
    )
    return errors_response(status_code, [entry], transaction_id=transaction_id, headers=headers)

"""The JSON eFax sends back, read tolerantly, and turned into ``models`` values.

Written from ``efax-api.md`` only.  Every reply model ignores unknown fields and
accepts missing ones; scalars are coerced leniently (``"2"`` -> 2, garbage ->
None) and nested objects may arrive as objects or as one-element arrays, because
public clients disagree on both.  A reply that is not even a JSON object (or
array, where one is expected) raises ``UnreadableReply``; the client decides what
that means for the call.

- Outcome: ``COMPLETE`` / ``COMPLETED`` means delivered only when the error code is a
  success one (``""``, ``0``, ``SFAX``, ``OK``); with any other code (``E41``, ``"3"``)
  the fax failed, with that code and message (``final_state``).
- ``POST /faxes`` replies: a bare array, ``{"faxes": [...]}``, or one object
  ``{"fax_id", "destination_fax_number"}`` (``to_submitted``).
- List replies: ``{"faxes": [...]}`` or a bare array; ``first_record`` when present
  (``page_first_record``, used by ``paging``).
- Error bodies (``error_details``): the ``{"errors": [...]}`` shape, a flat
  ``{"error_code", "developer_message"}``, API Gateway's ``{"message"}`` /
  ``{"Message"}`` (keys in any case), ``{"error": {...}}``, other JSON (shown compact,
  values of secret-looking keys masked), plain text; and the Retry-After header.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import (
    FaxState,
    FaxStatus,
    FaxSummary,
    ReceivedImage,
    SubmittedFax,
    check_fax_id,
    normalise_status,
    parse_timestamp,
)

NO_ERROR_CODES = frozenset({"", "0", "SFAX", "OK"})
_ZERO = re.compile(r"[+-]?0+(\.0*)?")  # "00", "0.0": still zero, still no error
_SECRET_KEY = re.compile(r"token|secret|key|password|passwd|authori[sz]ation|credential|cookie", re.I)
UNAVAILABLE = frozenset({"UNAVAILABLE", "UNKNOWN", "N/A"})


class UnreadableReply(Exception):
    """A 2xx reply whose body is not what the endpoint returns."""


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None
    return None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _object(value: object) -> object:
    """An object, or the first object of an array (FAXECHO models them as arrays)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return next((item for item in value if isinstance(item, dict)), None)
    return None


def _objects(value: object) -> object:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return None


def _attempts(value: object) -> object:
    """A list of attempt objects, or a bare count."""
    return _objects(value) if isinstance(value, list) else _int(value)


def _raw_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


Text = Annotated[str | None, BeforeValidator(_text)]
Int = Annotated[int | None, BeforeValidator(_int)]
Bool = Annotated[bool | None, BeforeValidator(_bool)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireToken(_Wire):
    access_token: Text = None
    token_type: Text = None
    expires_in: Int = None


class WireTransmissionData(_Wire):
    transmission_status: Text = None
    error_code: Text = None
    error_message: Text = None
    completed_timestamp: Text = None
    total_pages_sent: Int = None
    total_duration: Int = None
    pages: Int = None
    duration: Int = None


class WireClientData(_Wire):
    client_reference_id: Text = None


class WireAttempt(_Wire):
    attempt_number: Int = None
    attempt_status: Text = None
    error_code: Text = None
    error_message: Text = None


class WireFax(_Wire):
    """A list item, a metadata reply or a transmission-details reply."""

    fax_id: Text = None
    direction: Text = None
    fax_status: Text = None
    transmission_status: Text = None
    status: Text = None
    error_code: Text = None
    error_message: Text = None
    completed_timestamp: Text = None
    pages: Int = None
    total_pages_sent: Int = None
    duration: Int = None
    total_duration: Int = None
    originating_fax_number: Text = None
    originating_fax_tsid: Text = None
    destination_fax_number: Text = None
    destination_fax_csid: Text = None  # the answering machine's station id, when eFax reports it
    image_downloaded: Bool = None
    transmission_data: Annotated[WireTransmissionData | None, BeforeValidator(_object)] = None
    client_tracking_data: Annotated[WireClientData | None, BeforeValidator(_object)] = None
    client_data: Annotated[WireClientData | None, BeforeValidator(_object)] = None
    attempts: Annotated[list[WireAttempt] | int | None, BeforeValidator(_attempts)] = None


class WireSubmitted(_Wire):
    fax_id: Text = None
    destination_fax_number: Text = None


class WireImage(_Wire):
    fax_id: Text = None
    file_name: Text = None
    image: Annotated[str | None, BeforeValidator(_raw_str)] = None


class WireErrorItem(_Wire):
    """One error: an item of ``errors``, an ``error`` object, or a flat body itself."""

    element_name: Text = None
    user_message: Text = None
    developer_message: Text = None
    message: Text = None
    error_code: Text = None
    code: Text = None


def _error_items(value: object) -> list[object]:
    """``errors`` as a list of objects; bare strings become ``{"message": ...}``."""
    values = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    items: list[object] = []
    for item in values:
        if isinstance(item, dict):
            items.append(_lower_keys(item))
        elif isinstance(item, str) and item.strip():
            items.append({"message": item})
    return items


class WireErrorBody(_Wire):
    """Any JSON error object, keys lower-cased first (``Message`` = ``message``)."""

    errors: Annotated[list[WireErrorItem] | None, BeforeValidator(_error_items)] = None
    transaction_id: Text = None
    error_description: Text = None
    error: Text = None
    detail: Text = None
    title: Text = None


def _lower_keys(data: dict[Any, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in data.items() if isinstance(key, str)}


def load_json(body: bytes) -> Any:
    """Decode a JSON body or raise UnreadableReply."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise UnreadableReply("the reply is not JSON") from err


M = TypeVar("M", bound="_Wire")


def read_model(model: type[M], data: object) -> M:
    """Validate one JSON value as ``model``; non-objects raise UnreadableReply."""
    if not isinstance(data, dict):
        raise UnreadableReply(f"expected a JSON object for {model.__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:  # pragma: no cover - every field is lenient
        raise UnreadableReply(f"unexpected {model.__name__} shape") from err


def page_first_record(data: object) -> int | None:
    """The ``first_record`` a list reply carries (UNCONFIRMED for eFax), else None."""
    return _int(data.get("first_record")) if isinstance(data, dict) else None


def fax_list(data: object) -> list[object]:
    """The items of a list reply: ``{"faxes": [...]}`` or a bare array."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("faxes"), list):
        return list(data["faxes"])
    if isinstance(data, dict) and not data.get("faxes"):
        return []  # {} or {"faxes": null}: an empty page
    raise UnreadableReply("expected a list of faxes")


def error_code_of(raw: str | None) -> str | None:
    """eFax's result code, or None for the codes that mean success."""
    if raw is None or raw.upper() in NO_ERROR_CODES or _ZERO.fullmatch(raw):
        return None
    return raw


def final_state(state: FaxState, error_code: str | None) -> FaxState:
    """COMPLETE with a failure code is a failure: "delivered" needs a success code too."""
    if state is FaxState.DELIVERED and error_code is not None:
        return FaxState.FAILED
    return state


def _number(raw: str | None) -> str | None:
    return None if raw is None or raw.upper() in UNAVAILABLE else raw


def _submitted_items(data: object) -> list[object]:
    """A bare array, ``{"faxes": [...]}`` (or one object there), or one bare object."""
    if isinstance(data, dict) and isinstance(data.get("faxes"), dict):
        return [data["faxes"]]
    if isinstance(data, dict) and "fax_id" in data and "faxes" not in data:
        return [data]
    return fax_list(data)


def to_submitted(data: object) -> list[SubmittedFax]:
    """The reply to POST /faxes; raises UnreadableReply if any id is unusable."""
    submitted = []
    for item in _submitted_items(data):
        wire = read_model(WireSubmitted, item)
        try:
            fax_id = check_fax_id(wire.fax_id or "")
        except EfaxPermanentError as err:
            raise UnreadableReply("a fax id in the reply is not a UUID") from err
        submitted.append(SubmittedFax(fax_id, wire.destination_fax_number or ""))
    if not submitted:
        raise UnreadableReply("the reply lists no faxes")
    return submitted


def to_summary(wire: WireFax, fax_id: str) -> FaxSummary:
    """A list item or metadata reply as a FaxSummary (fax_id already checked)."""
    td = wire.transmission_data or WireTransmissionData()
    tracking = wire.client_tracking_data or wire.client_data or WireClientData()
    raw_status = td.transmission_status or wire.transmission_status or wire.fax_status
    error_code = error_code_of(td.error_code or wire.error_code)
    return FaxSummary(
        fax_id=fax_id,
        direction=wire.direction.upper() if wire.direction else None,
        state=final_state(normalise_status(raw_status), error_code),
        pages=_first(wire.pages, wire.total_pages_sent, td.total_pages_sent, td.pages),
        duration_s=_first(wire.duration, wire.total_duration, td.total_duration, td.duration),
        completed_at=parse_timestamp(wire.completed_timestamp or td.completed_timestamp),
        originating_fax_number=_number(wire.originating_fax_number),
        originating_fax_tsid=_number(wire.originating_fax_tsid),
        destination_fax_number=_number(wire.destination_fax_number),
        image_downloaded=wire.image_downloaded,
        client_reference_id=tracking.client_reference_id,
        error_code=error_code,
        error_message=(td.error_message or wire.error_message) if error_code else None,
    )


def to_status(wire: WireFax, fax_id: str, source: str = "transmission-details") -> FaxStatus:
    """A transmission-details (or metadata) reply, any of the shapes seen, as a FaxStatus."""
    td = wire.transmission_data or WireTransmissionData()
    attempts = wire.attempts if isinstance(wire.attempts, list) else []
    last = attempts[-1] if attempts else WireAttempt()
    raw_status = td.transmission_status or wire.transmission_status or wire.status or wire.fax_status
    error_code = error_code_of(td.error_code or wire.error_code)
    state = final_state(normalise_status(raw_status), error_code)
    error_message = td.error_message or wire.error_message
    if error_code is None and state is FaxState.FAILED:
        error_code, error_message = error_code_of(last.error_code), last.error_message
    if error_code is None and state is not FaxState.FAILED:
        error_message = None  # "OK", "Success": not worth showing
    return FaxStatus(
        fax_id=fax_id,
        state=state,
        raw_status=raw_status,
        error_code=error_code,
        error_message=error_message,
        pages=_first(td.total_pages_sent, td.pages, wire.total_pages_sent, wire.pages),
        duration_s=_first(td.total_duration, td.duration, wire.total_duration, wire.duration),
        completed_at=parse_timestamp(td.completed_timestamp or wire.completed_timestamp),
        attempts=len(attempts) if attempts else _int(wire.attempts),
        source=source,
        remote_csid=_number(wire.destination_fax_csid),
    )


def to_image(data: object, fax_id: str) -> ReceivedImage:
    """The reply to GET /faxes/{id}/image; the base64 image decoded and sniffed."""
    wire = read_model(WireImage, data)
    if not wire.image:
        raise UnreadableReply("the reply carries no image")
    encoded = "".join(wire.image.split())
    encoded += "=" * (-len(encoded) % 4)
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise UnreadableReply("the image is not valid base64") from err
    return ReceivedImage(fax_id, wire.file_name, content, sniff_format(content))


def sniff_format(content: bytes) -> str:
    """PDF, TIFF or UNKNOWN, from the first bytes."""
    if content[:1024].lstrip().startswith(b"%PDF"):
        return "PDF"
    if content[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return "UNKNOWN"


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def error_details(body: bytes, content_type: str) -> tuple[str | None, str | None]:
    """(error_code, human text) from any error body eFax or its gateway may send."""
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        return _error_object(data)
    if isinstance(data, list) and any(isinstance(item, dict) for item in data):
        return _error_object({"errors": data})
    if isinstance(data, str):
        return None, " ".join(data.split()) or None
    if "html" in content_type.lower():
        return None, None
    text = " ".join(body.decode("utf-8", "replace").split())
    return None, text or None


def _error_object(data: dict[Any, Any]) -> tuple[str | None, str | None]:
    lowered = _lower_keys(data)
    if isinstance(lowered.get("error"), dict):  # {"error": {"code", "message"}}
        lowered["errors"] = [*_error_items(lowered.get("errors")), lowered.pop("error")]
    wire = WireErrorBody.model_validate(lowered)
    flat = WireErrorItem.model_validate(lowered)  # {"error_code", "developer_message"} at the top
    parts: list[str] = []
    code: str | None = None
    for item in [*(wire.errors or []), flat]:
        code = code or item.error_code or item.code
        texts = [t for t in (item.user_message, item.developer_message, item.message) if t]
        for text in texts:
            if text not in parts:
                parts.append(text)
        if item.element_name and not texts:
            parts.append(f"field {item.element_name}")
    for extra in (wire.error_description, wire.error, wire.detail, wire.title):
        if extra and extra not in parts:
            parts.append(extra)
    if not parts and lowered:  # a shape nobody described: show it, secrets masked
        parts.append(json.dumps(_masked(data), separators=(",", ":"), default=str))
    return code, "; ".join(parts) or None


def _masked(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: "[redacted]" if isinstance(key, str) and _SECRET_KEY.search(key) else _masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)

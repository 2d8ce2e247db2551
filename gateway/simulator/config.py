"""Settings of the eFax simulator (``SimulatorConfig``), with their units and defaults.

Built once by whoever starts the simulator and kept on ``SimulatorState.config``.
``PATCH /_sim/config`` (and ``SimulatorState.update_config``) may change every
field except ``clock`` at run time; ``apply_changes`` checks the types first.

Each field is documented where it is declared. The points efax-api.md marks
UNCONFIRMED (status spellings, the dropped leading 1, image-marks-downloaded,
page info in lists, timestamp format, webhook header, the create reply's shape, which
status paths exist and how an unknown route answers, how a failure reports its
state, error body shapes, what the paging offset counts, webhook bodies) are all
switchable here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

COMPLETE_SPELLINGS = ("COMPLETE", "COMPLETED")
INPROGRESS_SPELLINGS = ("INPROGRESS", "IN PROGRESS")
TIMESTAMP_STYLES = ("z", "offset", "compact")
SEARCH_MODES = ("metadata", "ignored", "nothing")
STATUS_PATHS = ("both", "plural", "singular", "none")
UNKNOWN_ROUTE_STATUSES = (404, 403)
FAILURE_STATUSES = ("ERROR", "COMPLETE")
CREATE_REPLY_SHAPES = ("list", "object", "faxes")
ERROR_BODY_SHAPES = ("efax", "flat", "Message", "message", "text")
OFFSET_UNITS = ("records", "pages")
WEBHOOK_BODY_SHAPES = ("metadata", "nested", "no_fax_id", "inline_image")
MAX_BODY_BYTES = 100 * 1024 * 1024  # eFax: 100 MB total, base64 included


@dataclass
class SimulatorConfig:
    # app_id -> api_key accepted by POST /tokens; None: any non-empty pair.
    credentials: dict[str, str] | None = None
    # Lifetime of an access token, seconds (eFax: 24 h).
    token_ttl_s: int = 86400
    # Issuing a token revokes the earlier tokens of the same app_id (UNCONFIRMED).
    token_revokes_previous: bool = False
    # Seconds from POST /faxes to the final state (NEW for the first third).
    complete_after_s: float = 2.0
    # Reported transmission duration per page, seconds.
    seconds_per_page: int = 30
    # Wire spelling of the success state: "COMPLETE" or "COMPLETED".
    status_complete_spelling: str = "COMPLETE"
    # Wire spelling of the busy state: "INPROGRESS" or "IN PROGRESS".
    status_inprogress_spelling: str = "INPROGRESS"
    # POST /faxes reply drops the leading 1 of 1+10-digit numbers (as the mock does).
    drop_leading_one: bool = True
    # GET /faxes/{id}/image also sets image_downloaded=true (UNCONFIRMED).
    image_marks_downloaded: bool = False
    # List replies carry first_record / last_record (1-based; 0 on an empty page).
    list_page_info: bool = False
    # What ``search_text`` does on the lists (UNCONFIRMED, efax-api.md 4.1): "metadata"
    # searches every metadata value and the client data; "ignored" lists as if it were
    # absent; "nothing" matches no fax at all.
    search_mode: str = "metadata"
    # List items carry ``client_tracking_data`` (the client reference) (UNCONFIRMED).
    list_client_data: bool = True
    # Sent faxes still in progress are listed; False: only finished ones (UNCONFIRMED).
    list_in_progress: bool = True
    # HTTP status of a successful POST /faxes (eFax: 201; one clone says 200).
    create_status: int = 201
    # Shape of the POST /faxes reply (UNCONFIRMED): "list" [{fax_id, destination_fax_number}],
    # "faxes" {"faxes": [...]}, "object" one bare object (one destination; a list for more).
    create_reply_shape: str = "list"
    # Which transmission-details paths exist: "both", "plural" (transmission-details),
    # "singular" (transmission-detail) or "none" (only metadata tells the state).
    status_paths: str = "both"
    # Status of a route the server does not have: 404 (the eFax error shape) or 403
    # {"message": "Missing Authentication Token"}, as AWS API Gateway answers.
    unknown_route_status: int = 404
    # How a failed fax reports its state: "ERROR", or "COMPLETE" (the configured spelling)
    # with its Exx error code and message, as some replies may (UNCONFIRMED).
    failure_status: str = "ERROR"
    # Shape of error bodies (UNCONFIRMED): "efax" {"errors": [...], "transaction_id"},
    # "flat" {"error_code", "user_message", "developer_message", "transaction_id"},
    # "Message" {"Message": text}, "message" {"message": text}, "text" plain text.
    error_body_shape: str = "efax"
    # What the pagination-offset header counts (UNCONFIRMED): "records" (0-based record
    # index) or "pages" (0-based page index: offset 2 with limit 100 = records 200-299).
    pagination_offset_unit: str = "records"
    # Seconds between a 202 cancel and the CANCELED state (a fax may finish first).
    cancel_delay_s: float = 0.0
    # Body of the 202 cancel reply: "" or "ACCEPTED".
    cancel_reply_text: str = ""
    # Timestamp format: "z" 2024-05-10T15:07:01.000Z, "offset" 2024-05-10T15:07:01+00:00,
    # "compact" 2024-05-10T15:07:01.000+0000.
    timestamp_style: str = "z"
    # The answering machine's station id (CSID) reported for a delivered outbound fax, as
    # destination_fax_csid in metadata and in transmission-details (where eFax carries it is
    # unconfirmed); "": none reported, the field empty in metadata as in eFax's example.
    destination_csid: str = ""
    # Largest accepted POST /faxes body, bytes.
    max_body_bytes: int = MAX_BODY_BYTES
    # Most requests kept for /_sim/requests (the oldest are dropped); stats count all.
    request_log_limit: int = 100_000
    # Webhook targets; None: no webhook of that direction.
    webhook_inbound_url: str | None = None
    webhook_outbound_url: str | None = None
    # HMAC-SHA256 key and the header carrying the lowercase hex digest.
    webhook_secret: str = ""
    webhook_header: str = "X-HMAC-Signature"
    # Webhook body (UNCONFIRMED): "metadata" (the metadata object), "nested"
    # {"event", "data": {"fax": metadata}}, "no_fax_id" {"event", "direction", "user_id"},
    # "inline_image" (metadata plus the image as base64 in "image").
    webhook_body_shape: str = "metadata"
    # Delivery attempts per notification, and the first pause between them
    # (seconds, doubled after each failure).
    webhook_max_attempts: int = 4
    webhook_retry_delay_s: float = 0.5
    # Time source, epoch seconds; /_sim/clock adds an offset on top of it.
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        problems = check(self)
        if problems:
            raise ValueError("; ".join(problems))


_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "bool": (bool,),
        "int": (int,),
        "float": (int, float),
        "str": (str,),
        "str | None": (str, type(None)),
        "dict[str, str] | None": (dict, type(None)),
    }
)


def check(config: SimulatorConfig) -> list[str]:
    """Return what is wrong with a config's values (empty when fine)."""
    problems: list[str] = []
    if config.status_complete_spelling not in COMPLETE_SPELLINGS:
        problems.append(f"status_complete_spelling must be one of {COMPLETE_SPELLINGS}")
    if config.status_inprogress_spelling not in INPROGRESS_SPELLINGS:
        problems.append(f"status_inprogress_spelling must be one of {INPROGRESS_SPELLINGS}")
    if config.search_mode not in SEARCH_MODES:
        problems.append(f"search_mode must be one of {SEARCH_MODES}")
    choices: tuple[tuple[str, object, tuple[object, ...]], ...] = (
        ("create_reply_shape", config.create_reply_shape, CREATE_REPLY_SHAPES),
        ("status_paths", config.status_paths, STATUS_PATHS),
        ("unknown_route_status", config.unknown_route_status, UNKNOWN_ROUTE_STATUSES),
        ("failure_status", config.failure_status, FAILURE_STATUSES),
        ("error_body_shape", config.error_body_shape, ERROR_BODY_SHAPES),
        ("pagination_offset_unit", config.pagination_offset_unit, OFFSET_UNITS),
        ("webhook_body_shape", config.webhook_body_shape, WEBHOOK_BODY_SHAPES),
    )
    for name, value, allowed in choices:
        if value not in allowed:
            problems.append(f"{name} must be one of {allowed}")
    if config.timestamp_style not in TIMESTAMP_STYLES:
        problems.append(f"timestamp_style must be one of {TIMESTAMP_STYLES}")
    if config.complete_after_s < 0 or config.cancel_delay_s < 0:
        problems.append("complete_after_s and cancel_delay_s must be >= 0")
    if config.request_log_limit < 1:
        problems.append("request_log_limit must be >= 1")
    if config.webhook_max_attempts < 1:
        problems.append("webhook_max_attempts must be >= 1")
    if not 200 <= config.create_status <= 299:
        problems.append("create_status must be a 2xx code")
    return problems


def apply_changes(config: SimulatorConfig, changes: Mapping[str, object]) -> list[str]:
    """Set the given fields on ``config`` if every one is known and well typed.

    Returns the problems found; on any problem nothing is changed.
    """
    by_name = {f.name: f for f in fields(config) if f.name != "clock"}
    problems: list[str] = []
    for name, value in changes.items():
        spec = by_name.get(name)
        if spec is None:
            problems.append(f"unknown or read-only setting {name!r}")
            continue
        allowed = _TYPES.get(str(spec.type), (object,))
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            problems.append(f"{name} must be {spec.type}")
        elif isinstance(value, dict) and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(f"{name} must map strings to strings")
    if problems:
        return problems
    old = {name: getattr(config, name) for name in changes}
    for name, value in changes.items():
        if str(by_name[name].type) == "float" and isinstance(value, int):
            value = float(value)
        setattr(config, name, value)
    problems = check(config)
    if problems:
        for name, value in old.items():
            setattr(config, name, value)
    return problems


def public_view(config: SimulatorConfig) -> dict[str, object]:
    """The config as JSON-able data, without secrets (api keys, webhook secret)."""
    out: dict[str, object] = {}
    for f in fields(config):
        if f.name == "clock":
            continue
        value = getattr(config, f.name)
        if f.name == "credentials" and value is not None:
            value = sorted(value)  # app ids only
        elif f.name == "webhook_secret":
            value = "***" if value else ""
        out[f.name] = value
    return out

"""Validation of a ``POST /faxes`` body, as efax-api.md §3 and §6.2 describe it.

Consumes: the parsed JSON body. Produces either a ``SendRequest`` (decoded
documents included) or a list of ``FieldError`` that the app turns into one 400
reply listing every problem (``element_name`` is a path such as
``destinations[0].fax_number``; ``error_code`` "100").

Rules:

- ``destinations``: list of objects, at least 1; entries beyond 50 are ignored
  (eFax: "simply ignored"). ``fax_number`` is 10-15 digits with an optional
  leading "+"; ``to_name`` / ``to_company`` optional strings.
- ``documents``: 1-25 objects; ``document_type`` an uppercase token (letters
  and digits, 2-10 characters); ``document_content`` non-empty strict base64.
- ``fax_options`` (optional object): ``image_resolution`` STANDARD | FINE;
  ``include_cover_page`` boolean (the strings "true"/"false" are tolerated);
  ``cover_page_options`` object of strings; ``retry_options`` with integers
  ``non_billable`` 1-10, ``billable`` 1-10, ``human_answer`` 1-3;
  ``custom_CSID`` / ``custom_CallerID`` strings.
- ``client_data`` (optional object): string (or null) values.

The size limit (100 MB, base64 included) is checked by the app on the raw body.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.simulator.faxes import Document

MAX_DESTINATIONS = 50
MAX_DOCUMENTS = 25
RETRY_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"non_billable": (1, 10), "billable": (1, 10), "human_answer": (1, 3)}
)
RESOLUTIONS = ("STANDARD", "FINE")

_NUMBER = re.compile(r"^\+?[0-9]{10,15}$")
_DOC_TYPE = re.compile(r"^[A-Z][A-Z0-9]{1,9}$")


@dataclass(frozen=True)
class FieldError:
    element_name: str
    message: str


@dataclass(frozen=True)
class Destination:
    fax_number: str
    to_name: str
    to_company: str


@dataclass(frozen=True)
class SendRequest:
    destinations: list[Destination]
    documents: list[Document]
    fax_options: dict[str, Any]
    client_data: dict[str, Any]
    include_cover_page: bool


def _destinations(raw: object, errors: list[FieldError]) -> list[Destination]:
    if not isinstance(raw, list) or not raw:
        errors.append(FieldError("destinations", "destinations must be a non-empty list"))
        return []
    out: list[Destination] = []
    for i, item in enumerate(raw[:MAX_DESTINATIONS]):
        where = f"destinations[{i}]"
        if not isinstance(item, dict):
            errors.append(FieldError(where, "each destination must be an object"))
            continue
        number = item.get("fax_number")
        if not isinstance(number, str) or not _NUMBER.match(number):
            errors.append(FieldError(f"{where}.fax_number", "fax_number must be 10-15 digits, optional +"))
            continue
        names = {}
        for key in ("to_name", "to_company"):
            value = item.get(key, "")
            if value is not None and not isinstance(value, str):
                errors.append(FieldError(f"{where}.{key}", f"{key} must be a string"))
            names[key] = value or ""
        out.append(Destination(number, names["to_name"], names["to_company"]))
    return out


def _documents(raw: object, errors: list[FieldError]) -> list[Document]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_DOCUMENTS:
        errors.append(FieldError("documents", f"documents must list 1-{MAX_DOCUMENTS} documents"))
        return []
    out: list[Document] = []
    for i, item in enumerate(raw):
        where = f"documents[{i}]"
        if not isinstance(item, dict):
            errors.append(FieldError(where, "each document must be an object"))
            continue
        doc_type = item.get("document_type")
        if not isinstance(doc_type, str) or not _DOC_TYPE.match(doc_type):
            errors.append(FieldError(f"{where}.document_type", "document_type must be an uppercase token"))
            continue
        content = item.get("document_content")
        try:
            if not isinstance(content, str) or not content:
                raise ValueError("empty")
            decoded = base64.b64decode(content, validate=True)
        except (ValueError, binascii.Error):
            errors.append(FieldError(f"{where}.document_content", "document_content must be base64"))
            continue
        out.append(Document(doc_type, decoded))
    return out


def _retry_options(raw: object, errors: list[FieldError]) -> None:
    if not isinstance(raw, dict):
        errors.append(FieldError("fax_options.retry_options", "retry_options must be an object"))
        return
    for key, (low, high) in RETRY_RANGES.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors.append(FieldError(f"fax_options.retry_options.{key}", f"{key} must be {low}-{high}"))


def _fax_options(raw: object, errors: list[FieldError]) -> tuple[dict[str, Any], bool]:
    if raw is None:
        return {}, False
    if not isinstance(raw, dict):
        errors.append(FieldError("fax_options", "fax_options must be an object"))
        return {}, False
    resolution = raw.get("image_resolution", "FINE")
    if resolution not in RESOLUTIONS:
        errors.append(FieldError("fax_options.image_resolution", "image_resolution must be STANDARD or FINE"))
    cover = raw.get("include_cover_page", False)
    if isinstance(cover, str) and cover.lower() in ("true", "false"):
        cover = cover.lower() == "true"
    if not isinstance(cover, bool):
        errors.append(FieldError("fax_options.include_cover_page", "must be a boolean"))
        cover = False
    cover_options = raw.get("cover_page_options", {})
    if not isinstance(cover_options, dict) or not all(isinstance(v, str) for v in cover_options.values()):
        errors.append(FieldError("fax_options.cover_page_options", "must be an object of strings"))
    if "retry_options" in raw:
        _retry_options(raw["retry_options"], errors)
    for key in ("custom_CSID", "custom_CallerID"):
        if key in raw and not isinstance(raw[key], str):
            errors.append(FieldError(f"fax_options.{key}", f"{key} must be a string"))
    return dict(raw), cover


def _client_data(raw: object, errors: list[FieldError]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(v is None or isinstance(v, str) for v in raw.values()):
        errors.append(FieldError("client_data", "client_data must be an object of strings"))
        return {}
    return dict(raw)


def parse_send_request(body: object) -> SendRequest | list[FieldError]:
    """Check a POST /faxes body; return the request or every problem found."""
    if not isinstance(body, dict):
        return [FieldError("body", "the request body must be a JSON object")]
    errors: list[FieldError] = []
    destinations = _destinations(body.get("destinations"), errors)
    documents = _documents(body.get("documents"), errors)
    fax_options, cover = _fax_options(body.get("fax_options"), errors)
    client_data = _client_data(body.get("client_data"), errors)
    if errors:
        return errors
    return SendRequest(destinations, documents, fax_options, client_data, cover)

"""Fax addresses: ``<number>@fax_domain`` to a dialable number, and sender matching.

Pure functions. Numbers are read with phonenumbers using the default country; they go
to eFax as ``1`` plus ten digits for North America and ``+`` plus digits elsewhere. A
number with an extension (``x900``, ``ext. 900``, ``;ext=900``, ``#900``, ``,900``) is
refused: eFax has no field for one, and dialling the number alone faxes the switchboard.
Each refusal carries the SMTP reply that says why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

# Number types that cost the account money or reach no fax machine. Never dialled.
_FORBIDDEN_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal number",
    PhoneNumberType.PAGER: "a pager number",
    PhoneNumberType.UAN: "a universal access number",
    PhoneNumberType.VOICEMAIL: "a voicemail number",
}

_NANP_REGION_CODE = 1


class AddressRefused(Exception):
    """``reply`` is the whole SMTP reply line, code and sentence."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class FaxNumber:
    wire: str  # what eFax is sent: 1XXXXXXXXXX or +<digits>
    e164: str  # +<digits>
    pretty: str  # "+1 323-555-1212"
    region: str | None


def _local_part(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return local, domain.lower().rstrip(".")


def parse_fax_address(
    address: str,
    *,
    fax_domain: str,
    default_country: str,
    allowed_countries: frozenset[str],
    allow_numbers: Sequence[str] = (),
    deny_numbers: Sequence[str] = (),
) -> FaxNumber:
    """Read an RCPT address; raise AddressRefused with the SMTP reply when it cannot be faxed.

    The rules, in order: only ``fax_domain``; a valid number; never a premium-rate or
    other special number type; never a number matching ``deny_numbers``; a number
    matching ``allow_numbers`` is allowed; else its country must be allowed. Patterns are
    shell-style on the E.164 form (``+1900*``, ``+4420794609??``).
    """
    local, domain = _local_part(address)
    if domain != fax_domain:
        raise AddressRefused(
            f"550 5.7.1 This gateway only accepts mail for <number>@{fax_domain}; "
            "it does not relay to other domains."
        )
    number = parse_number(local, default_country)
    region = phonenumbers.region_code_for_number(number)
    kind = phonenumbers.number_type(number)
    if kind in _FORBIDDEN_TYPES:
        raise AddressRefused(
            f"550 5.7.1 {local} is {_FORBIDDEN_TYPES[kind]}; such numbers are never dialled."
        )
    fax_number = to_fax_number(number)
    denied = number_matches(fax_number.e164, deny_numbers)
    if denied is not None:
        raise AddressRefused(
            f"550 5.7.1 Faxes to {fax_number.e164} are not allowed here "
            f"(the administrator's rule deny_numbers {denied})."
        )
    if number_matches(fax_number.e164, allow_numbers) is not None:
        return fax_number
    if region not in allowed_countries:
        allowed = ", ".join(sorted(allowed_countries))
        raise AddressRefused(
            f"550 5.7.1 Faxes to {region or 'that destination'} are not allowed here (allowed: {allowed})."
        )
    return fax_number


def number_matches(e164: str, patterns: Sequence[str]) -> str | None:
    """The first pattern (``+1900*``) that the E.164 number matches, or None."""
    return next((p for p in patterns if fnmatch.fnmatchcase(e164, p.strip())), None)


def parse_number(text: str, default_country: str) -> phonenumbers.PhoneNumber:
    cleaned = text.strip()
    if not cleaned or len(cleaned) > 40:
        raise AddressRefused(f"553 5.1.3 {cleaned or 'An empty name'} is not a fax number.")
    try:
        number = phonenumbers.parse(cleaned, default_country)
    except NumberParseException as err:
        raise AddressRefused(f"553 5.1.3 {cleaned} is not a fax number: {_parse_reason(err)}.") from err
    if number.extension:
        # eFax dials the number alone: the fax would go to the switchboard, not the extension
        raise AddressRefused(
            f"553 5.1.3 {cleaned} has an extension ({number.extension}); a fax is dialled to the "
            "number alone and would not reach it: ask for the fax machine's own number, without "
            "the extension."
        )
    if not phonenumbers.is_valid_number(number):
        raise AddressRefused(
            f"553 5.1.3 {cleaned} is not a valid fax number; write it with its country code, "
            "for example +13235551212@..."
        )
    return number


def _parse_reason(err: NumberParseException) -> str:
    return {
        NumberParseException.INVALID_COUNTRY_CODE: "its country code is unknown",
        NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
        NumberParseException.TOO_SHORT_NSN: "it is too short",
        NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
        NumberParseException.TOO_LONG: "it is too long",
    }.get(err.error_type, "it cannot be read")


def to_fax_number(number: phonenumbers.PhoneNumber) -> FaxNumber:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    wire = e164[1:] if number.country_code == _NANP_REGION_CODE else e164
    pretty = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return FaxNumber(wire=wire, e164=e164, pretty=pretty, region=phonenumbers.region_code_for_number(number))


def format_number(digits: str, default_country: str = "US") -> str:
    """A number from eFax (``13235551212``, ``+44...``, ``3235551212``) for people to read."""
    candidates: list[tuple[str, str | None]] = (
        [(digits, None)] if digits.startswith("+") else [(digits, default_country), ("+" + digits, None)]
    )
    for text, region in candidates:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return digits


def sender_matches(address: str, patterns: list[str]) -> bool:
    """Does an address match one of ``alice@example.com`` / ``*@scan.example.com``?

    Case-insensitive; an empty list matches no one.
    """
    address = address.strip().lower()
    if "@" not in address:
        return False
    return any(fnmatch.fnmatchcase(address, p.strip().lower()) for p in patterns if p.strip())


def display_names(fields: Sequence[str]) -> dict[str, str]:
    """address (lower-case) -> display name, from address fields such as To and Cc."""
    pairs = getaddresses(list(fields))
    return {addr.lower(): name for name, addr in pairs if name and addr}

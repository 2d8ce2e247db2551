"""Honest senders: the one address a mail's ``From:`` names, read as mail readers and DMARC read it.

Pure: the raw header block in, the sender (address, display name, the domain a DMARC
evaluator takes) or a ``SenderRefused`` with the SMTP reply out.

The From field is read from the mail's own bytes (not from a parser that may already
have dropped what it could not read), and refused as ambiguous (``550 5.7.1``) when
people or programs could take it for someone else than the address the gateway checks:

- no From field, or more than one (RFC 5322 allows exactly one);
- more than one address, a group, or no address at all;
- text the RFC 5322 parser cannot place (``alice@example.com <mallory@evil.example>``,
  ``alice@example.com)<mallory@evil.example>``, a stray ``>``): readers differ on
  which address such a field names, and DMARC evaluators with them;
- a parser that reads it differently: the strict parser (``email.headerregistry``) and
  the lenient one (``email.utils.getaddresses``) must find the same single address;
- a display name (encoded words decoded, comments too) that holds an ``@`` other than
  the address itself, or ``<``/``>``: ``"alice@example.com" <mallory@evil.example>``,
  ``=?utf-8?q?alice=40example.com?= <mallory@evil.example>``,
  ``mallory@evil.example (alice@example.com)``;
- a control, bidi or other invisible character anywhere in the field; a quoted local
  part holding an ``@`` (``"alice@example.com"@evil.example``).

``report_address`` decides where a mail's reports go: the From address, or a trusted
scanner's ``Reply-To`` when that address is itself one of the mailbox's senders.

``dmarc_domain`` is the RFC5322.From domain as a DMARC evaluator compares it: lower
case, without a final dot, IDNA A-labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.errors import ObsoleteHeaderDefect
from email.headerregistry import AddressHeader
from email.utils import getaddresses, parseaddr

from gateway.core.addressing import sender_matches

_ADVICE = "send it with one plain address, such as Alice Example <alice@example.com>"


class SenderRefused(Exception):
    """``reply`` is the whole SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class HeaderFrom:
    address: str  # local@domain, as written
    display_name: str  # decoded
    dmarc_domain: str


def header_fields(raw: bytes, name: str) -> list[str]:
    """The values of every ``name`` field of the raw mail's header block, unfolded.

    The header ends at the first empty line (CRLF CRLF or LF LF). Bytes that are not
    UTF-8 become U+FFFD.
    """
    wanted = name.lower().encode("ascii")
    values: list[bytearray] = []
    current: bytearray | None = None
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    header = raw[: min(ends) + 1] if ends else raw  # only the header is split into lines
    for line in header.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current += line
            continue
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == wanted:
            current = bytearray(value)
            values.append(current)
        else:
            current = None
    return [bytes(v).decode("utf-8", "replace").strip() for v in values]


def one_sender(values: list[str]) -> HeaderFrom:
    """The one sender of a mail whose From fields are ``values``; else SenderRefused."""
    if len(values) != 1:
        found = "no From: field" if not values else f"{len(values)} From: fields"
        raise SenderRefused(
            f"550 5.7.1 The mail has {found}; it needs exactly one From: address to be faxed."
        )
    value = values[0]
    shown = _shown(value)

    def ambiguous(why: str) -> SenderRefused:
        return SenderRefused(
            f"550 5.7.1 The From: field {shown} could be read as another sender than the one "
            f"it names ({why}); {_ADVICE}."
        )

    if not value.replace("\t", " ").isprintable():
        raise ambiguous("it holds control or invisible characters")
    parsed = policy.default.header_factory("From", value)
    assert isinstance(parsed, AddressHeader)
    if any(g.display_name is not None for g in parsed.groups):
        raise ambiguous("it is a group")
    addresses = parsed.addresses
    if len(addresses) != 1:
        if not addresses:
            raise SenderRefused(f"550 5.7.1 The From: field {shown} names no address; {_ADVICE}.")
        raise SenderRefused(
            f"550 5.7.1 The From: field names {len(addresses)} addresses; the mail needs exactly one "
            f"to be faxed: {_ADVICE}."
        )
    defects: tuple[Exception, ...] = tuple(getattr(parsed, "defects", ()))  # BaseHeader's, mixed in
    if any(not isinstance(d, ObsoleteHeaderDefect) for d in defects):
        raise ambiguous("part of it is not an address")
    address = addresses[0]
    if "@" in address.username or not address.domain or address.domain.startswith("["):
        raise ambiguous("its address is not a plain name@domain")
    addr_spec = f"{address.username}@{address.domain}"
    lenient = [(n, a) for n, a in getaddresses([value]) if n or a]
    if len(lenient) != 1 or lenient[0][1].lower() != addr_spec.lower():
        raise ambiguous("mail programs read different addresses in it")
    for name in (address.display_name, lenient[0][0]):
        if not name.isprintable():
            raise ambiguous("its name holds control or invisible characters")
        if "<" in name or ">" in name or ("@" in name and name.strip(" \"'").lower() != addr_spec.lower()):
            raise ambiguous("its name looks like another address")
    return HeaderFrom(addr_spec, address.display_name, dmarc_domain(address.domain))


def dmarc_domain(domain: str) -> str:
    """A domain as DMARC compares it: lower case, no final dot, A-labels."""
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _shown(value: str) -> str:
    text = "".join(c if c.isprintable() and c.isascii() else "?" for c in value)
    return text if len(text) <= 80 else text[:77] + "..."


def report_address(reply_to_field: str, header_from: str, *, trusted_only: bool, senders: list[str]) -> str:
    """Where the reports of a mail go: ``header_from``, or the ``Reply-To`` address when
    the session is trusted by its network alone (no AUTH) and that address is itself one
    of the mailbox's ``senders``. Behind a trusted MTA every session is trusted, so any
    other Reply-To would carry the report (numbers, subject) out of the organisation
    while the sender hears nothing."""
    reply_to = parseaddr(reply_to_field)[1]
    if reply_to and trusted_only and sender_matches(reply_to, senders):
        return reply_to
    return header_from

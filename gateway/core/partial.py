"""message/partial (RFC 2046 section 5.2.2): recognise the pieces, put them back together.

Consumes: parsed pieces (for ``partial_key``) and the raw bytes of all pieces of one
split message (for ``reassemble_partials``).
Produces: the key ``(id, number, total)`` a store can group pieces by, and the raw
bytes of the reassembled message, which then goes through ``extract_documents``
like any other mail.

Reassembly follows the RFC: the enclosing headers of piece 1, except Content-*,
Subject, Message-ID, Encrypted and MIME-Version, come first; then those very
fields from the enclosed message's own header; the bodies of pieces 1..total are
joined in number order; headers of pieces 2..total are dropped. Missing, duplicate
(with different content) or mismatched pieces raise ``DocumentError`` with a sentence.
Storing pieces and the time window they may take to arrive belong to the caller;
the bounds on a split mail (``MAX_PIECES``, ``MAX_OPEN_PER_SENDER``, its size) are
worded here (``too_many_pieces``, ``split_too_big``).
"""

from __future__ import annotations

from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Final

from gateway.core.document_errors import DocumentError

MAX_PIECES: Final = 100
MAX_OPEN_PER_SENDER: Final = 5  # split mails of one sender waiting for pieces at once
TOO_MANY_PIECES: Final = (
    f"552 5.3.4 This split message has more than {MAX_PIECES} pieces, more than this gateway "
    "joins; send it as one message."
)
_ENCLOSED_FIELDS: Final = frozenset({b"subject", b"message-id", b"encrypted", b"mime-version"})


def partial_key(message: EmailMessage) -> tuple[str, int, int | None] | None:
    """(id, number, total) for a message/partial piece; None for any other mail.

    ``total`` is given only on the last piece (RFC 2046), so it is often None.
    A piece whose id or number is missing or not a number also gives None.
    """
    try:
        if message.get_content_type() != "message/partial":
            return None
        ident = message.get_param("id")
        number = message.get_param("number")
        total = message.get_param("total")
    except Exception:  # a header the parser cannot read is not a usable piece
        return None
    if not isinstance(ident, str) or not ident.strip() or not isinstance(number, str):
        return None
    try:
        position = int(number.strip())
        count = int(total.strip()) if isinstance(total, str) else None
    except ValueError:
        return None
    if position < 1 or (count is not None and count < 1):
        return None
    return ident.strip(), position, count


def reassemble_partials(pieces: Sequence[bytes]) -> bytes:
    """The original message from all of its message/partial pieces, in any order."""
    parser = BytesParser(policy=policy.default)
    by_number: dict[int, bytes] = {}
    ident: str | None = None
    total: int | None = None
    for raw in pieces:
        key = partial_key(parser.parsebytes(raw, headersonly=True))
        if key is None:
            raise DocumentError("A piece of the split message is not a message/partial piece.")
        piece_id, number, piece_total = key
        if ident is not None and piece_id != ident:
            raise DocumentError("The pieces given belong to different split messages.")
        ident = piece_id
        if piece_total is not None:
            if total is not None and total != piece_total:
                raise DocumentError("The pieces of the split message disagree on their number.")
            total = piece_total
        if number in by_number and by_number[number] != raw:
            raise DocumentError(f"Piece {number} of the split message arrived twice, different.")
        by_number[number] = raw
    if total is None:
        raise DocumentError("The last piece of the split message has not arrived.")
    if total > MAX_PIECES:
        raise DocumentError(f"The message is split into {total} pieces; at most {MAX_PIECES} can be joined.")
    missing = [n for n in range(1, total + 1) if n not in by_number]
    if missing or len(by_number) != total:
        raise DocumentError(
            f"Piece {missing[0] if missing else total + 1} of {total} of the split message has not arrived."
        )
    outer_header, first_body, newline = _split(by_number[1])
    enclosed = first_body + b"".join(_split(by_number[n])[1] for n in range(2, total + 1))
    inner_header, inner_body, _ = _split(enclosed)
    kept = [f for f in _fields(outer_header) if not _is_enclosed_field(f)]
    kept += [f for f in _fields(inner_header) if _is_enclosed_field(f)]
    return b"".join(kept) + newline + inner_body


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block with its line endings, body, the newline style) of a raw message."""
    candidates = [(raw.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(at, sep) for at, sep in candidates if at >= 0]
    if raw.startswith((b"\r\n", b"\n")):
        newline = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        return b"", raw[len(newline) :], newline
    if not found:
        return raw if raw.endswith(b"\n") else raw + b"\n", b"", b"\n"
    at, sep = min(found)
    newline = sep[: len(sep) // 2]
    return raw[: at + len(newline)], raw[at + len(sep) :], newline


def _fields(header: bytes) -> list[bytes]:
    """Header fields, each with its folded continuation lines and line endings."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif line.strip():
            fields.append(line)
    return fields


def _is_enclosed_field(field: bytes) -> bool:
    name = field.split(b":", 1)[0].strip().lower()
    return name.startswith(b"content-") or name in _ENCLOSED_FIELDS


def split_too_big(size: int, limit: int) -> str:
    """``552 5.3.4``: the pieces of a split mail come to ``size`` bytes, over ``limit``."""
    return (
        f"552 5.3.4 The pieces of this split message come to {_amount(size)}, more than the "
        f"{_amount(limit)} one mail may have here; send fewer or smaller attachments."
    )


def _amount(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{-(-size // 1000)} KB"

"""Unpack Outlook's winmail.dat (TNEF) into its attached files, with tnefparse.

Consumes: the bytes of a TNEF stream (application/ms-tnef, usually "winmail.dat").
Produces: ``TnefContents``: the files in order as ``(name, bytes)`` and how many
attached items had no file data (embedded Outlook items, OLE objects).

tnefparse decodes, but on hostile input its MAPI property loops follow 32-bit counts
from the data (billions of iterations) and its embedded-message support recurses
into unchecked data. So the stream is first rebuilt keeping only what is needed:
the version and codepage, and per attachment its rendering record, title, data and
MAPI property block; a property block is kept only if a bounded walk proves its
counts fit the bytes and it holds no embedded message. Any failure after that is
reported as a damaged winmail.dat (``TnefError``); the caller decides the sentence.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from typing import Final

from tnefparse import TNEF

SIGNATURE: Final = b"\x78\x9f\x3e\x22"
_LEVEL_MESSAGE: Final = 1
_LEVEL_ATTACHMENT: Final = 2
_VERSION: Final = 0x9006
_OEM_CODEPAGE: Final = 0x9007
_REND_DATA: Final = 0x9002
_TITLE: Final = 0x8010
_DATA: Final = 0x800F
_MAPI_BLOCK: Final = 0x9005
_EMBEDDED_SIG: Final = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_FIXED_SIZES: Final = {
    0x0002: 2,
    0x000B: 2,
    0x0003: 4,
    0x0004: 4,
    0x000A: 4,
    0x0005: 8,
    0x0006: 8,
    0x0007: 8,
    0x0014: 8,
    0x0040: 8,
    0x0048: 16,
}
_VARIABLE_TYPES: Final = frozenset({0x0000, 0x000D, 0x001E, 0x001F, 0x0102})


class TnefError(Exception):
    """The stream is not a TNEF stream tnefparse can read."""


@dataclass(frozen=True)
class TnefContents:
    files: tuple[tuple[str, bytes], ...]
    items_without_data: int


def unpack_tnef(data: bytes) -> TnefContents:
    """The files inside a winmail.dat, in order; raises TnefError when it is damaged."""
    clean = _sanitised(data)
    try:
        parsed = TNEF(clean, do_checksum=False)
        files: list[tuple[str, bytes]] = []
        without_data = 0
        for attachment in parsed.attachments:
            payload = attachment.data
            if not isinstance(payload, bytes) or not payload:
                without_data += 1
                continue
            files.append((_name(attachment), payload))
    except Exception as err:  # tnefparse raises many kinds on odd input
        raise TnefError(str(err)) from err
    return TnefContents(tuple(files), without_data)


def _name(attachment: object) -> str:
    try:
        long_name = attachment.long_filename()  # type: ignore[attr-defined]
        if isinstance(long_name, str) and long_name.strip("\x00 "):
            return long_name.strip("\x00 ")
    except Exception:  # a title in an unexpected codepage: use the raw bytes below
        pass
    raw = getattr(attachment, "_name", b"")
    if isinstance(raw, bytes):
        return raw.decode("cp1252", errors="replace").strip("\x00 ")
    return str(raw).strip("\x00 ")


def _sanitised(data: bytes) -> bytes:
    """A TNEF stream holding only the objects tnefparse can decode in bounded time."""
    if len(data) < 6 or not data.startswith(SIGNATURE):
        raise TnefError("not a TNEF stream")
    out = [data[:6]]
    offset = 6
    seen_attachment = False
    objects = 0
    while offset + 11 <= len(data):
        level, name, _type, length = struct.unpack_from("<BHHI", data, offset)
        end = offset + 9 + length + 2
        if end > len(data):
            break
        body = data[offset + 9 : offset + 9 + length]
        obj = data[offset:end]
        offset = end
        objects += 1
        if level == _LEVEL_MESSAGE:
            if (name == _VERSION and length == 4) or (name == _OEM_CODEPAGE and _known_codepage(body)):
                out.append(obj)
        elif level == _LEVEL_ATTACHMENT:
            if name == _REND_DATA:
                seen_attachment = True
                out.append(obj)
            elif seen_attachment and (
                name in (_TITLE, _DATA) or (name == _MAPI_BLOCK and _bounded_mapi(body))
            ):
                out.append(obj)
    if objects == 0:
        raise TnefError("no TNEF objects")
    return b"".join(out)


def _known_codepage(body: bytes) -> bool:
    if len(body) < 4:
        return False
    number = struct.unpack_from("<I", body)[0]
    name = {20127: "ascii", 28591: "iso-8859-1", 65001: "utf-8", 20866: "koi8-r"}.get(number, f"cp{number}")
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _bounded_mapi(block: bytes) -> bool:
    """True when every count in a MAPI property block fits the bytes that follow it."""
    if _EMBEDDED_SIG in block:
        return False
    try:
        end = len(block)
        count, offset = struct.unpack_from("<I", block)[0], 4
        if count > end // 8:
            return False
        for _ in range(count):
            prop_type, prop_id = struct.unpack_from("<HH", block, offset)
            offset += 4
            if prop_id >= 0x8000:  # named property: GUID, kind, then an id or a name
                kind = struct.unpack_from("<I", block, offset + 16)[0]
                offset += 20
                if kind == 0:
                    offset += 4
                else:
                    size = struct.unpack_from("<I", block, offset)[0]
                    block[offset + 4 : offset + 4 + size + (-size % 4)].decode("utf-16")
                    offset += 4 + size + (-size % 4)
            values = 1
            multi = bool(prop_type & 0x1000)
            prop_type &= ~0x1000
            if multi:
                values = struct.unpack_from("<I", block, offset)[0]
                offset += 4
                if values > (end - offset) // 2:
                    return False
            if prop_type in _FIXED_SIZES:
                size = _FIXED_SIZES[prop_type]
                offset += size * values + (2 if size == 2 and values % 2 else 0)
            elif prop_type in _VARIABLE_TYPES:
                if not multi:
                    values = struct.unpack_from("<I", block, offset)[0]
                    offset += 4
                    if values > (end - offset) // 4:
                        return False
                for _ in range(values):
                    size = struct.unpack_from("<I", block, offset)[0]
                    if prop_type == 0x001F:  # UTF-16 text: tnefparse decodes it strictly
                        block[offset + 4 : offset + 4 + size + (-size % 4)].decode("utf-16")
                    offset += 4 + size + (-size % 4)
                    if offset > end:
                        return False
            else:
                return False
            if offset > end:
                return False
    except (struct.error, UnicodeDecodeError):
        return False
    return True

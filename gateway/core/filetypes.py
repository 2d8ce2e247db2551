"""What a file is, read from its bytes (magic numbers), never from its name or MIME type.

Consumes: the decoded bytes of one attachment.
Produces: a ``Kind`` token, e.g. ``"pdf"``, ``"tiff"``, ``"docx"``, ``"zip"``, ``"text"``.
Touches nothing outside the process; reads at most the zip central directory and a
few bytes of an OLE2 directory, so it is cheap on any input.

The groups below (IMAGE_KINDS, OFFICE_KINDS, ...) drive what the documents core does
with each kind; ``describe`` gives the plain words used in reports ("a zip archive").
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Final, Literal

import filetype

Kind = Literal[
    "pdf",
    "tiff",
    "jpeg",
    "png",
    "gif",
    "bmp",
    "webp",
    "heif",
    "text",
    "html",
    "calendar",
    "vcard",
    "postscript",
    "doc",
    "docx",
    "xls",
    "xlsx",
    "ppt",
    "pptx",
    "odt",
    "ods",
    "odp",
    "rtf",
    "tnef",
    "outlook-item",
    "zip",
    "archive",
    "executable",
    "image-other",
    "audio",
    "video",
    "font",
    "empty",
    "unknown",
]

IMAGE_KINDS: Final = frozenset({"tiff", "jpeg", "png", "gif", "bmp", "webp", "heif"})
OFFICE_KINDS: Final = frozenset({"doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf"})
TEXT_KINDS: Final = frozenset({"text", "html"})

EXTENSIONS: Final[dict[str, str]] = {
    "pdf": "pdf",
    "tiff": "tif",
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "webp": "webp",
    "heif": "heic",
    "text": "txt",
    "html": "html",
    "calendar": "ics",
    "vcard": "vcf",
    "tnef": "dat",
    "zip": "zip",
    **{k: k for k in OFFICE_KINDS},
}

_DESCRIPTIONS: Final[dict[str, str]] = {
    "calendar": "a calendar invitation",
    "vcard": "a contact card",
    "postscript": "a PostScript file",
    "outlook-item": "an attached Outlook item",
    "zip": "a zip archive",
    "archive": "a compressed archive",
    "executable": "a program",
    "image-other": "an image in a format that cannot be converted",
    "audio": "a sound file",
    "video": "a video",
    "font": "a font file",
    "empty": "an empty file",
    "unknown": "a file of an unknown type",
}
_ADVICE: Final[dict[str, str]] = {
    "postscript": "; print it to PDF and send that",
    "image-other": "; send it as JPEG, PNG or PDF",
    "outlook-item": "; forward it as a mail instead",
}

_TNEF_MAGIC: Final = b"\x78\x9f\x3e\x22"
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXECUTABLE_MAGICS: Final = (
    b"MZ",
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"\x00asm",
)
_ODF_KINDS: Final[dict[bytes, Kind]] = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/vnd.oasis.opendocument.spreadsheet": "ods",
    b"application/vnd.oasis.opendocument.presentation": "odp",
}
_OOXML_PARTS: Final[tuple[tuple[str, Kind], ...]] = (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx"))
# ISO base media files whose major or compatible brand says HEIF (iPhone photos: "heic").
_HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_BMP_HEADER_SIZES: Final = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_TEXT_CONTROLS_ALLOWED: Final = frozenset(b"\t\n\r\f\x1b")
_SNIFF: Final = 8192


def describe(kind: str) -> str:
    """Plain words for a kind, e.g. "a zip archive"."""
    return _DESCRIPTIONS.get(kind, f"a {kind.upper()} file")


def left_out_reason(kind: str) -> str:
    """Why a file of this kind is not faxed, e.g. "a zip archive, which cannot be faxed"."""
    if kind == "empty":
        return "an empty file"
    return f"{describe(kind)}, which cannot be faxed{_ADVICE.get(kind, '')}"


def detect(data: bytes) -> Kind:
    """Read the kind of ``data`` from its first bytes."""
    if not data.strip():
        return "empty"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(_TNEF_MAGIC):
        return "tnef"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if _is_bmp(data):
        return "bmp"
    if _is_heif(data):
        return "heif"
    if data.startswith(_OLE2_MAGIC):
        return _ole2_kind(data)
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(data)
    if data.startswith(b"{\\rtf"):
        return "rtf"
    if data.startswith(_EXECUTABLE_MAGICS):
        return "executable"
    if b"%PDF-" in data[:1024] and b"%%EOF" in data[-2048:]:
        return "pdf"  # a PDF behind a few bytes of junk (PJL, MacBinary), as readers allow
    text_kind = _text_kind(data)
    if text_kind is not None:
        return text_kind
    return _library_kind(data)


def _is_bmp(data: bytes) -> bool:
    if not data.startswith(b"BM") or len(data) < 26:
        return False
    offset, header_size = struct.unpack_from("<II", data, 10)
    return header_size in _BMP_HEADER_SIZES and 14 + header_size <= offset <= len(data)


def _is_heif(data: bytes) -> bool:
    """A HEIF ``ftyp`` box: its major brand, or a compatible one, is a HEIF brand (not AVIF)."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return False
    (size,) = struct.unpack_from(">I", data, 0)
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(size, 64, len(data)), 4)]
    return b"avif" not in brands and any(brand in _HEIF_BRANDS for brand in brands)


def _ole2_kind(data: bytes) -> Kind:
    """Office 97-2003 files and Outlook .msg share one container; its stream names tell."""

    def has(name: str) -> bool:
        return name.encode("utf-16-le") in data

    if has("__substg1.0_"):
        return "outlook-item"
    if has("WordDocument"):
        return "doc"
    if has("Workbook") or has("Book"):
        return "xls"
    if has("PowerPoint Document"):
        return "ppt"
    return "unknown"


def _zip_kind(data: bytes) -> Kind:
    """Office Open XML and OpenDocument files are zips; the member names tell which."""
    if data[30:38] == b"mimetype":
        for mimetype, kind in _ODF_KINDS.items():
            if data.startswith(mimetype, 38):
                return kind
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except Exception:  # any damaged zip is still "a zip archive"
        return "zip"
    if "[Content_Types].xml" in names:
        for prefix, kind in _OOXML_PARTS:
            if any(name.startswith(prefix) for name in names):
                return kind
    return "zip"


def _text_kind(data: bytes) -> Kind | None:
    """ "text", "html", "calendar", ... when the bytes read as text; else None."""
    sample = data[:_SNIFF]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = sample.decode("utf-16")
        except UnicodeDecodeError:
            text = sample[: len(sample) - 1].decode("utf-16", errors="replace")
    else:
        if b"\x00" in sample:
            return None
        controls = sum(1 for byte in sample if byte < 0x20 and byte not in _TEXT_CONTROLS_ALLOWED)
        if controls * 100 > len(sample):
            return None
        text = sample.decode("utf-8", errors="replace")
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith("begin:vcalendar"):
        return "calendar"
    if start.startswith("begin:vcard"):
        return "vcard"
    if start.startswith("%!ps"):
        return "postscript"
    if start.startswith(("<!doctype html", "<html", "<head", "<body")) or (
        start.startswith("<") and ("<body" in start or "<div" in start or "<p>" in start)
    ):
        return "html"
    return "text"


def _library_kind(data: bytes) -> Kind:
    """The long tail (archives, media, fonts) from the ``filetype`` library."""
    guess = filetype.guess(data[:_SNIFF])
    if guess is None:
        return "unknown"
    mime = str(guess.mime)
    if mime.startswith("image/"):
        return "image-other"
    if mime.startswith("audio/"):
        return "audio"
    if mime.startswith("video/"):
        return "video"
    if mime.startswith(("font/", "application/font")):
        return "font"
    if guess.extension in {"exe", "elf", "dex", "crx", "deb", "rpm", "swf", "wasm"}:
        return "executable"
    if guess.extension in {
        "zip",
        "tar",
        "rar",
        "gz",
        "bz2",
        "7z",
        "xz",
        "Z",
        "lz",
        "cab",
        "ar",
        "zst",
        "lz4",
        "br",
    }:
        return "archive"
    return "unknown"

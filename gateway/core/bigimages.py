"""Large images brought down to fax resolution while they are decoded, within a memory budget.

Consumes: the bytes of one image (JPEG, PNG, HEIC/HEIF, or any format Pillow decodes
whole), its size from the header, and ``max_decode_bytes`` (pixels x bytes per pixel
that may be decoded at once).
Produces: a Pillow image no larger than a fax page at fine resolution (``FAX_BOX``:
1728 x 2200 pixels, turned the way the image is), upright (EXIF orientation applied),
in mode 1, L or RGB, flattened onto white; or ``DocumentRefused`` with a sentence when
the image cannot be decoded within the budget.

How each format is brought down:
  * **JPEG**: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (Pillow's ``draft``), so
    a 100-megapixel photo is decoded at about 1.6 megapixels; what is left is resized.
  * **PNG** (8-bit, not interlaced): decoded in strips of rows. The image data is
    inflated as a stream and cut into strips; each strip becomes a small PNG of its own
    (the row above it prepended unfiltered, so that "up", "average" and "Paeth" rows
    decode as they would in the whole image), which Pillow decodes and reduces; the
    strips are pasted into the small result. A 59-megapixel RGBA PNG is never held
    whole: a strip is a few MB.
  * **HEIC/HEIF** (pillow-heif, libheif applies the file's rotation and mirroring) and
    every other format: decoded whole when its pixels fit the budget, then reduced;
    refused with a sentence when they do not.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from PIL import Image, ImageOps

from gateway.core.document_errors import DocumentRefused

FAX_BOX: Final = (1728, 2200)  # a Letter page at fax fine resolution (about 204 x 200 dpi)
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_STRIP_BYTES: Final = 4_000_000  # filtered bytes per PNG strip


def fits_fax(size: tuple[int, int]) -> bool:
    """True when the image is no more than twice a fax page's pixels each way."""
    box = _box(size)
    return size[0] <= 2 * box[0] and size[1] <= 2 * box[1]


def downscaled(data: bytes, kind: str, filename: str, *, max_decode_bytes: int) -> Image.Image:
    """The image at fax resolution, decoded within ``max_decode_bytes``."""
    if kind == "jpeg":
        image = _jpeg(data)
    elif kind == "png" and (strips := png_strips(data)) is not None:
        image = _png(strips, filename, max_decode_bytes)
    elif kind == "heif":
        image = _heif(data, filename, max_decode_bytes)
    else:
        image = _whole(data, kind, filename, max_decode_bytes)
    return _plain(_fit(image))


def _box(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    return (FAX_BOX[1], FAX_BOX[0]) if width > height else FAX_BOX


def _fit(image: Image.Image) -> Image.Image:
    """Within ``FAX_BOX``: reduced by a whole factor strip by strip (so a mode-1 scan is
    never converted whole), then resized to the box."""
    box = _box(image.size)
    if image.width <= box[0] and image.height <= box[1]:
        return image
    factor = max(1, math.floor(min(image.width / box[0], image.height / box[1])))
    if factor > 1:
        image = _reduced(image, factor)
    scale = min(box[0] / image.width, box[1] / image.height, 1.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    mode = _working_mode(image.mode)
    rows = max(factor, (_STRIP_BYTES // max(1, image.width * 4)) // factor * factor)
    result = Image.new(mode, (math.ceil(image.width / factor), math.ceil(image.height / factor)))
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(image.height, top + rows)))
        result.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return result


def _working_mode(mode: str) -> str:
    """A mode Pillow reduces and resizes with a proper filter."""
    if mode in ("L", "RGB", "RGBA", "LA"):
        return mode
    if mode in ("1", "I;16", "I;16B", "I;16L", "I", "F"):
        return "L"
    return "RGBA"


def _plain(image: Image.Image) -> Image.Image:
    """Mode 1, L or RGB, anything transparent flattened onto white."""
    if image.mode in ("1", "L", "RGB"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("L")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


@contextmanager
def quiet() -> Iterator[None]:
    """Without Pillow's own pixel-count warning (its limit is below the gateway's): the
    gateway's limits are checked from the header, and decoding is bounded here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def open_image(data: bytes, pil_format: str) -> Image.Image:
    """``Image.open`` of one format, ``quiet``."""
    with quiet():
        return Image.open(io.BytesIO(data), formats=[pil_format])


def _jpeg(data: bytes) -> Image.Image:
    with open_image(data, "JPEG") as image:
        box = _box(image.size)
        image.draft(image.mode if image.mode in ("L", "RGB") else "RGB", box)  # >= box, /2 /4 /8
        with quiet():
            image.load()
        upright = ImageOps.exif_transpose(image)
        return upright if upright is not None else image.copy()


def _heif(data: bytes, filename: str, max_decode_bytes: int) -> Image.Image:
    import pillow_heif  # the libheif binding; loaded only for a HEIC/HEIF file

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        width, height = heif.size
        channels = 4 if heif.has_alpha else 3
        if width * height * channels > max_decode_bytes:
            raise _too_large(filename)
        image = heif.to_pillow()
    except DocumentRefused:
        raise
    except Exception as err:
        raise _damaged(filename) from err
    upright = ImageOps.exif_transpose(image)
    return upright if upright is not None else image


def _whole(data: bytes, kind: str, filename: str, max_decode_bytes: int) -> Image.Image:
    with open_image(data, _PIL_FORMATS[kind]) as image:
        width, height = image.size
        if width * height * bytes_per_pixel(image.mode) > max_decode_bytes:
            raise _too_large(filename)
        with quiet():
            image.load()
        upright = ImageOps.exif_transpose(image)
        return upright if upright is not None else image.copy()


_PIL_FORMATS: Final = {"tiff": "TIFF", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel of an image in ``mode`` (mode 1 too takes a byte)."""
    return {"1": 1, "L": 1, "P": 1, "LA": 4, "PA": 4, "RGB": 4, "RGBA": 4, "CMYK": 4}.get(mode, 4)


# ---- PNG in strips ---------------------------------------------------------------------


class _Strips:
    """A PNG's header chunks and its image data, to be cut into strips of rows."""

    def __init__(self, width: int, height: int, header: bytes, palette: bytes, idat: list[memoryview]):
        self.width = width
        self.height = height
        self.ihdr = header  # the IHDR chunk's 13 data bytes
        self.palette = palette  # PLTE and tRNS chunks as they were
        self.idat = idat
        channels = _PNG_CHANNELS[header[9]]
        self.row_bytes = 1 + width * channels  # a filter byte, then 8-bit samples
        self.channels = channels

    def rows(self, per_strip: int) -> Iterator[bytes]:
        """The filtered rows, ``per_strip`` at a time (the last strip may be shorter)."""
        inflater = zlib.decompressobj()
        want = per_strip * self.row_bytes
        pending = bytearray()
        for chunk in self.idat:
            data: bytes = bytes(chunk)
            while data:
                pending += inflater.decompress(data, max(want - len(pending), 1 << 16))
                data = inflater.unconsumed_tail
                while len(pending) >= want:
                    yield bytes(pending[:want])
                    del pending[:want]
        pending += inflater.flush()
        while pending:
            size = min(want, len(pending) - len(pending) % self.row_bytes) or len(pending)
            yield bytes(pending[:size])
            del pending[:size]

    def png(self, rows: bytes, above: bytes | None) -> bytes:
        """One strip as a PNG of its own; ``above`` is the unfiltered row before it."""
        count = len(rows) // self.row_bytes + (1 if above is not None else 0)
        header = struct.pack(">II", self.width, count) + self.ihdr[8:]
        body = (b"\x00" + above if above is not None else b"") + rows
        return b"".join(
            (
                _PNG_SIGNATURE,
                _chunk(b"IHDR", header),
                self.palette,
                _chunk(b"IDAT", zlib.compress(body, 0)),
                _chunk(b"IEND", b""),
            )
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_strips(data: bytes) -> _Strips | None:
    """The PNG's parts when it can be decoded in strips (8-bit, not interlaced), else None."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    view = memoryview(data)
    at = len(_PNG_SIGNATURE)
    header = b""
    palette: list[bytes] = []
    idat: list[memoryview] = []
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        body = view[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = bytes(body)
        elif kind in (b"PLTE", b"tRNS"):
            palette.append(bytes(view[at : at + 12 + length]))
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if len(header) != 13 or not idat:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or interlace != 0 or colour not in _PNG_CHANNELS or width < 1 or height < 1:
        return None
    return _Strips(width, height, header, b"".join(palette), idat)


def _png(strips: _Strips, filename: str, max_decode_bytes: int) -> Image.Image:
    box = _box((strips.width, strips.height))
    factor = max(1, math.floor(min(strips.width / box[0], strips.height / box[1])))
    if strips.row_bytes * factor * 8 > max_decode_bytes:
        raise _too_large(filename)  # a single group of rows over the budget: absurdly wide
    try:
        return png_in_strips(strips, factor, _STRIP_BYTES)
    except Exception as err:
        raise _damaged(filename) from err


def png_in_strips(strips: _Strips, factor: int, strip_bytes: int) -> Image.Image:
    """The PNG reduced by ``factor`` and flattened onto white, decoded ``strip_bytes`` of
    filtered rows at a time."""
    per_strip = max(factor, (strip_bytes // strips.row_bytes) // factor * factor)
    result: Image.Image | None = None
    above: bytes | None = None
    y = 0
    for rows in strips.rows(per_strip):
        with Image.open(io.BytesIO(strips.png(rows, above)), formats=["PNG"]) as piece:
            piece.load()
            strip = piece.crop((0, 1, piece.width, piece.height)) if above is not None else piece.copy()
        above = strip.crop((0, strip.height - 1, strip.width, strip.height)).tobytes()  # as stored
        if strip.mode == "P":
            strip = strip.convert("RGBA")
        small = _plain(strip.reduce(factor) if factor > 1 else strip)  # onto white, strip by strip
        if result is None:
            result = Image.new(small.mode, (small.width, math.ceil(strips.height / factor)), "white")
        result.paste(small, (0, y))
        y += small.height
    if result is None or y == 0:
        raise ValueError("no rows")
    return result.crop((0, 0, result.width, y)) if y < result.height else result


def _too_large(filename: str) -> DocumentRefused:
    return DocumentRefused(
        f'The image "{filename}" is too large in pixels to convert safely; '
        "scan or save it at a lower resolution."
    )


def _damaged(filename: str) -> DocumentRefused:
    return DocumentRefused(
        f'The image "{filename}" is damaged and cannot be converted; save it again and resend it.'
    )

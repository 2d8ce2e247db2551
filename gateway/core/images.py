"""Images to PDF: TIFF (multi-page, G3/G4, TIFF-F), JPEG, PNG, GIF, BMP, WebP, HEIC/HEIF.

Consumes: the bytes of one image, its detected kind, and the limits.
Produces: ``(pdf_bytes, pages)``; one page per TIFF frame, one page for other images
(the first frame of an animated GIF/WebP/PNG).

Bounds, checked from headers before any pixel is decoded:
  * ``max_image_pixels`` per frame (width x height), so absurd headers are refused;
  * ``max_decode_bytes``: an image larger than a fax page (twice its pixels each way),
    a HEIC photo, or one img2pdf cannot embed as it is, is brought down to fax
    resolution while it is decoded, within that budget (bigimages: JPEG scaled by
    libjpeg, PNG in strips of rows, others whole only when they fit);
  * ``max_tiff_frames`` and the pages still allowed in the fax;
  * ``timeout_s`` between frames while converting (a cooperative deadline).
Pillow opens only the detected format (no plugin guessing). img2pdf embeds JPEG,
PNG and CCITT G4 data of fax size without re-encoding (it applies the EXIF rotation);
whatever it refuses (alpha, palettes, odd modes, broken DPI) is normalised with Pillow
first: upright, flattened onto white, RGB, L or 1-bit, then saved as PNG (JPEG for a
photo) for img2pdf. Pages are fitted into US Letter, keeping
the aspect ratio the image's DPI implies, the page turned the way the image is in
inches (TIFF-F at 204x98 dpi is 1728x1100 pixels, yet a portrait page).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Final

import img2pdf
from PIL import Image, ImageSequence

from gateway.core import bigimages
from gateway.core.document_errors import DocumentRefused, TooManyPages

_PIL_FORMATS: Final = {
    "tiff": "TIFF",
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "bmp": "BMP",
    "webp": "WEBP",
}
_DIRECT: Final = frozenset({"tiff", "jpeg", "png"})  # img2pdf embeds these as they are
_SCAN_600_DPI: Final = 5100 * 7020  # pixels of a Letter or A4 page scanned at 600 dpi
_PHOTOS: Final = frozenset({"jpeg", "heif", "webp"})  # brought down, saved as JPEG, not PNG
_LETTER: Final = (img2pdf.in_to_pt(8.5), img2pdf.in_to_pt(11))
# No date and img2pdf's own writer (not qpdf's, which adds a random /ID): one image makes
# one PDF, so its hash proves what went out, and a reader and the gateway agree.
_SAME_BYTES: Final = {"nodate": True, "engine": img2pdf.Engine.internal}


def image_to_pdf(
    data: bytes,
    kind: str,
    filename: str,
    *,
    max_pixels: int,
    max_frames: int,
    pages_left: int,
    max_pages: int,
    timeout_s: float,
    max_decode_bytes: int = 150_000_000,
) -> tuple[bytes, int]:
    """Convert one image to PDF within the bounds above; refuse with a sentence otherwise."""
    deadline = time.monotonic() + timeout_s
    frames, size = _check(data, kind, filename, max_pixels, max_frames)
    if frames > pages_left:
        raise TooManyPages(
            f'The image "{filename}" has {frames} pages; one fax may have at most {max_pages} pages.'
        )
    small = bigimages.fits_fax(size)
    scan = kind == "tiff" and (frames > 1 or size[0] * size[1] <= _SCAN_600_DPI)
    if kind in _DIRECT and (small or scan):  # a 600-dpi G4 scan: embedded as it is, no decoding
        try:
            pdf = img2pdf.convert(data, layout_fun=_layout, rotation=img2pdf.Rotation.ifvalid, **_SAME_BYTES)
            return bytes(pdf), frames
        except Exception:  # fall back to normalising with Pillow
            pass
    if frames == 1 and (kind == "heif" or not small):
        try:
            page = bigimages.downscaled(data, kind, filename, max_decode_bytes=max_decode_bytes)
        except DocumentRefused:
            raise
        except Exception as err:
            raise _damaged(filename) from err
        return _one_page(page, kind, filename), 1
    try:
        pngs = list(_normalised(data, kind, frames, deadline, filename, max_decode_bytes))
        pdf = img2pdf.convert(pngs, layout_fun=_layout, rotation=img2pdf.Rotation.ifvalid, **_SAME_BYTES)
    except DocumentRefused:
        raise
    except Exception as err:
        raise _damaged(filename) from err
    return bytes(pdf), len(pngs)


def _layout(width_px: int, height_px: int, dpi: tuple[float, float]) -> tuple[float, float, float, float]:
    """Fit into a Letter page turned the way the image is, judged in inches, not pixels."""
    x_dpi, y_dpi = (d if d and d > 0 else 200.0 for d in dpi)
    landscape = width_px / x_dpi > height_px / y_dpi
    size = (_LETTER[1], _LETTER[0]) if landscape else _LETTER
    layout = img2pdf.get_layout_fun(size, fit=img2pdf.FitMode.into)
    result: tuple[float, float, float, float] = layout(width_px, height_px, dpi)
    return result


def _one_page(page: Image.Image, kind: str, filename: str) -> bytes:
    out = io.BytesIO()
    try:
        if kind in _PHOTOS and page.mode in ("L", "RGB"):
            page.save(out, format="JPEG", quality=85, dpi=(200, 200))
        else:
            page.save(out, format="PNG", dpi=(200, 200))
        return bytes(img2pdf.convert(out.getvalue(), layout_fun=_layout, **_SAME_BYTES))
    except Exception as err:
        raise _damaged(filename) from err


def _check(
    data: bytes, kind: str, filename: str, max_pixels: int, max_frames: int
) -> tuple[int, tuple[int, int]]:
    """Frames in the image and the first one's size, after checking every frame's size
    from its header."""
    if kind == "heif":
        size = _heif_size(data, filename)
        _check_size(size, filename, max_pixels)
        return 1, size
    try:
        with bigimages.open_image(data, _PIL_FORMATS[kind]) as image, bigimages.quiet():
            size = image.size
            _check_size(size, filename, max_pixels)
            if kind != "tiff":
                return 1, size
            frames = 0
            for frame in ImageSequence.Iterator(image):
                frames += 1
                if frames > max_frames:
                    raise DocumentRefused(
                        f'The image "{filename}" has more than {max_frames} pages, '
                        "more than one fax may carry."
                    )
                _check_size(frame.size, filename, max_pixels)
            return frames, size
    except DocumentRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(filename) from err
    except Exception as err:
        raise _damaged(filename) from err


def _heif_size(data: bytes, filename: str) -> tuple[int, int]:
    import pillow_heif  # the libheif binding; loaded only for a HEIC/HEIF file

    try:
        width, height = pillow_heif.open_heif(io.BytesIO(data)).size
    except Exception as err:
        raise _damaged(filename) from err
    return int(width), int(height)


def _check_size(size: tuple[int, int], filename: str, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise _damaged(filename)
    if width * height > max_pixels:
        raise _too_large(filename)


def _normalised(
    data: bytes, kind: str, frames: int, deadline: float, filename: str, max_decode_bytes: int
) -> Iterator[bytes]:
    """Each frame as a PNG img2pdf accepts: flattened on white, in mode 1, L or RGB."""
    with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            if index >= frames:
                break
            held = frame.width * frame.height * bigimages.bytes_per_pixel(frame.mode) * 3
            if held > max_decode_bytes:  # the frame and two copies
                raise _too_large(filename)
            if time.monotonic() > deadline:
                raise DocumentRefused(
                    f'The image "{filename}" took too long to convert; send it as PDF or JPEG.'
                )
            out = io.BytesIO()
            _plain(frame).save(out, format="PNG", dpi=_dpi(frame))
            yield out.getvalue()


def _plain(frame: Image.Image) -> Image.Image:
    if frame.mode in ("1", "L", "RGB"):
        return frame.copy()
    if frame.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return frame.convert("L")
    rgba = frame.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _dpi(frame: Image.Image) -> tuple[float, float]:
    """The frame's DPI when sane, else 200 (a fax's own resolution)."""
    raw = frame.info.get("dpi")
    if not isinstance(raw, tuple) or len(raw) != 2:
        return (200.0, 200.0)
    try:
        x, y = float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        return (200.0, 200.0)
    if 10 <= x <= 5000 and 10 <= y <= 5000:
        return (x, y)
    return (200.0, 200.0)


def _too_large(filename: str) -> DocumentRefused:
    return DocumentRefused(
        f'The image "{filename}" is too large in pixels to convert safely; '
        "scan or save it at a lower resolution."
    )


def _damaged(filename: str) -> DocumentRefused:
    return DocumentRefused(
        f'The image "{filename}" is damaged and cannot be converted; save it again and resend it.'
    )

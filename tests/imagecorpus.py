"""Images as cameras, phones and scanners make them, made here by the real tools.

big_rgba_png      a 59-megapixel RGBA PNG of a few hundred KB (issue 12's), written row
                  by row through zlib so that making it costs no memory
noisy / saved     photo-like images through Pillow's libpng, libjpeg and libtiff
heic_from(jpeg)   libheif's ``heif-enc``, as an iPhone stores its photos
"""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path
from tempfile import TemporaryDirectory

from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def big_rgba_png(width: int = 7680, height: int = 7680) -> bytes:
    """An RGBA PNG: transparent, with an opaque black band every 256 rows and a black
    frame, each row "Up"-filtered after the first, as encoders do for flat images."""
    compressor = zlib.compressobj(6)
    idat: list[bytes] = []
    band = b"\x00\x00\x00\xff" * width
    edge = b"\x00\x00\x00\xff" + b"\x00\x00\x00\x00" * (width - 2) + b"\x00\x00\x00\xff"
    same = b"\x02" + b"\x00" * (4 * width)  # "Up": every sample as in the row above
    previous = b""
    for y in range(height):
        row = band if y % 256 < 8 or y >= height - 8 else edge
        idat.append(compressor.compress(same if row == previous else b"\x00" + row))
        previous = row
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(idat))
        + _chunk(b"IEND", b"")
    )


def noisy(mode: str, size: tuple[int, int]) -> Image.Image:
    """A photo-like image (Pillow's noise and gradients), so that every PNG row filter
    (None, Sub, Up, Average, Paeth) is chosen somewhere by libpng's adaptive filtering."""
    noise = Image.effect_noise(size, 64)
    gradient = Image.linear_gradient("L").resize(size)
    bands = [
        noise,
        gradient,
        Image.eval(noise, lambda v: 255 - v),
        gradient.transpose(Image.Transpose.ROTATE_180),
    ]
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    return Image.merge(mode, bands[:channels])


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def heic_from(jpeg: bytes) -> bytes:
    """``jpeg`` encoded as HEIC by libheif's heif-enc."""
    with TemporaryDirectory() as tmp:
        source, out = Path(tmp, "in.jpg"), Path(tmp, "out.heic")
        source.write_bytes(jpeg)
        subprocess.run(
            ["heif-enc", "-q", "60", "-o", str(out), str(source)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return out.read_bytes()

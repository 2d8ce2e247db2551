"""Phone photos and huge scans become fax pages: HEIC, 100-megapixel JPEGs, 59-megapixel PNGs.

Large images are brought down to fax resolution while they are decoded, within a memory
budget, rather than refused; the PNG strips give exactly what decoding the whole PNG
would; the 59-megapixel RGBA PNG of issue 12 is measured in a process of its own.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap

import pytest
from PIL import Image, ImageChops
from pypdf import PdfReader

from gateway.core import bigimages
from gateway.core.documents import DocumentRefused
from tests import imagecorpus
from tests.unit.extracting import extract, mail


def _page_size(pdf: bytes) -> tuple[float, float]:
    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    return float(box.width), float(box.height)


def _grey(image: Image.Image, x: int, y: int) -> int:
    value = image.convert("L").getpixel((x, y))
    assert isinstance(value, int)
    return value


def _embedded_image(pdf: bytes) -> Image.Image:
    [image] = PdfReader(io.BytesIO(pdf)).pages[0].images
    assert image.image is not None
    return image.image


@pytest.mark.parametrize(("mode", "factor"), [("RGBA", 1), ("RGBA", 3), ("RGB", 2), ("L", 1), ("LA", 2)])
def test_a_png_decoded_in_strips_is_the_png_decoded_whole(mode: str, factor: int) -> None:
    source = imagecorpus.noisy(mode, (601, 301))
    data = imagecorpus.saved(source, "PNG")
    strips = bigimages.png_strips(data)
    assert strips is not None
    got = bigimages.png_in_strips(strips, factor, strip_bytes=20_000)  # a dozen rows a strip
    with Image.open(io.BytesIO(data)) as whole:
        whole.load()
        expected = bigimages._plain(whole.reduce(factor) if factor > 1 else whole)
    assert got.size == expected.size and got.mode == expected.mode
    assert ImageChops.difference(got, expected).getbbox() is None


def test_a_palette_png_decoded_in_strips_is_the_png_decoded_whole() -> None:
    data = imagecorpus.saved(imagecorpus.noisy("RGB", (400, 300)).quantize(64), "PNG")
    strips = bigimages.png_strips(data)
    assert strips is not None
    got = bigimages.png_in_strips(strips, 2, strip_bytes=5_000)
    with Image.open(io.BytesIO(data)) as whole:
        expected = bigimages._plain(whole.convert("RGBA").reduce(2))
    assert ImageChops.difference(got, expected).getbbox() is None


def test_the_59_megapixel_rgba_png_of_issue_12_becomes_a_page_within_250_mib() -> None:
    # A process of its own, so that its peak resident size (VmHWM: the high-water mark of
    # this very program, not of the process it was forked from) is this mail's alone.
    program = textwrap.dedent(
        """
        import re, sys
        from tests import imagecorpus
        from tests.unit.extracting import extract, mail

        def high_water_mib():
            with open("/proc/self/status") as status:
                return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) // 1024

        png = imagecorpus.big_rgba_png(7680, 7680)
        assert len(png) < 300_000
        before = high_water_mib()
        [document] = extract(mail((png, "image/png", "plan.png"))).documents
        print(document.document_type, document.pages, before, high_water_mib())
        sys.stdout.flush()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    kind, pages, before_mib, peak_mib = done.stdout.split()
    assert (kind, pages) == ("PDF", "1")
    assert int(peak_mib) < 250, done.stdout  # 730 MiB when the PNG was decoded whole
    assert int(peak_mib) - int(before_mib) < 150, done.stdout


def test_the_big_png_page_shows_its_bands_on_white() -> None:
    png = imagecorpus.big_rgba_png(7680, 7680)
    [document] = extract(mail((png, "image/png", "plan.png"))).documents
    page = _embedded_image(document.content)
    assert max(page.size) <= 2200
    assert _grey(page, page.width // 2, page.height // 2 + 20) == 255  # transparent: white
    assert _grey(page, page.width // 2, 0) < 64  # the band across the top
    assert _grey(page, 0, page.height // 2 + 20) < 200  # the frame's left edge


def test_a_100_megapixel_photo_is_brought_down_while_decoding_and_keeps_its_orientation() -> None:
    photo = Image.linear_gradient("L").resize((12_000, 9_000))  # 108 megapixels, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the phone was held upright
    jpeg = imagecorpus.saved(photo, "JPEG", quality=70, exif=exif.tobytes())
    del photo
    [document] = extract(mail((jpeg, "image/jpeg", "IMG_0042.JPG"))).documents
    assert document.pages == 1
    width, height = _page_size(document.content)
    assert width < height  # shown upright: a portrait page
    image = _embedded_image(document.content)
    assert image.height > image.width and max(image.size) <= 2200


def test_a_10000_pixel_square_scan_is_brought_down_to_fax_resolution() -> None:
    scan = Image.new("1", (10_000, 10_000), 1)
    scan.paste(0, (0, 0, 10_000, 40))  # a black rule along the top
    tiff = imagecorpus.saved(scan, "TIFF", compression="group4", dpi=(1200, 1200))
    del scan
    [document] = extract(mail((tiff, "image/tiff", "scan.tif"))).documents
    image = _embedded_image(document.content)
    assert max(image.size) <= 2200
    assert _grey(image, image.width // 2, 0) < 128 and _grey(image, image.width // 2, 100) > 200


def test_an_iphone_heic_photo_becomes_a_pdf_page() -> None:
    jpeg = imagecorpus.saved(imagecorpus.noisy("RGB", (1200, 900)), "JPEG", quality=80)
    heic = imagecorpus.heic_from(jpeg)
    assert heic[4:12] == b"ftypheic"
    [document] = extract(mail((heic, "image/heic", "IMG_1234.HEIC"))).documents
    assert (document.document_type, document.pages, document.detected) == ("PDF", 1, "heif")
    assert _page_size(document.content)[0] > _page_size(document.content)[1]  # landscape, as shot
    assert _embedded_image(document.content).size == (1200, 900)


def test_a_heic_photo_over_the_decoding_budget_is_refused_with_a_sentence() -> None:
    heic = imagecorpus.heic_from(imagecorpus.saved(imagecorpus.noisy("RGB", (1200, 900)), "JPEG"))
    with pytest.raises(DocumentRefused, match=re.escape('"big.heic" is too large in pixels')):
        extract(mail((heic, "image/heic", "big.heic")), max_decode_bytes=1_000_000)


def test_a_truncated_large_jpeg_is_refused_as_damaged() -> None:
    jpeg = imagecorpus.saved(Image.linear_gradient("L").resize((6000, 5000)), "JPEG")
    with pytest.raises(DocumentRefused, match=re.escape('"cut.jpg" is damaged')):
        extract(mail((jpeg[: len(jpeg) // 3], "image/jpeg", "cut.jpg")))


def test_a_multi_page_600_dpi_scan_is_faxed_page_by_page() -> None:
    pages = [Image.new("1", (5100, 6600), 1) for _ in range(3)]
    for number, page in enumerate(pages):
        page.paste(0, (0, 0, 5100, 60 * (number + 1)))
    out = io.BytesIO()
    pages[0].save(
        out, format="TIFF", compression="group4", save_all=True, append_images=pages[1:], dpi=(600, 600)
    )
    del pages
    [document] = extract(mail((out.getvalue(), "image/tiff", "scan.tif"))).documents
    assert document.pages == 3 == len(PdfReader(io.BytesIO(document.content)).pages)
    assert _page_size(document.content) == (612.0, 792.0)  # 8.5 x 11 in at 600 dpi: Letter


def test_a_one_page_600_dpi_scan_is_embedded_as_it_is() -> None:
    scan = Image.new("1", (5100, 6600), 1)
    scan.paste(0, (0, 0, 5100, 60))
    tiff = imagecorpus.saved(scan, "TIFF", compression="group4", dpi=(600, 600))
    [document] = extract(mail((tiff, "image/tiff", "scan.tif"))).documents
    assert _embedded_image(document.content).size == (5100, 6600)  # not decoded, not scaled
    assert len(document.content) < len(tiff) + 5_000

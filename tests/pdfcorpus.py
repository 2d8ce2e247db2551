"""PDFs as real tools make them, and damaged the ways scanners and mail paths damage them.

Ghostscript writes the pages (each says "Page N"), qpdf encrypts them and builds object
streams, and the damage below is what PDF viewers (poppler) repair without a word:

    junk_after_eof        20 KB of garbage after %%EOF (a mail path appending its footer)
    wrong_startxref       the startxref pointer off by a few hundred bytes
    startxref_far         the whole trailer followed by 3 KB of padding
    pjl_header            a printer-job (PJL) header before %PDF- (scanners do this)
    shifted_offsets       bytes inserted after the header: every xref offset is wrong
    zeroed_xref           an xref table that reads well and points at offset 0 everywhere

Every builder runs the real program; a missing one fails the test (CI installs them).
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import pikepdf


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def ghostscript_pdf(pages: int, *, object_streams: bool = False) -> bytes:
    """A Letter PDF from Ghostscript whose page N shows "Page N"."""
    program = (
        f"1 1 {pages} {{ /n exch def /Helvetica findfont 36 scalefont setfont "
        "72 600 moveto (Page ) show n 10 string cvs show showpage } for"
    )
    with TemporaryDirectory() as tmp:
        out = Path(tmp, "gs.pdf")
        _run("gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pdfwrite", f"-o{out}", "-c", program)
        if not object_streams:
            return out.read_bytes()
        packed = Path(tmp, "packed.pdf")
        _run("qpdf", "--object-streams=generate", str(out), str(packed))
        return packed.read_bytes()


def qpdf_encrypted(data: bytes, *, user: str, owner: str) -> bytes:
    """``data`` encrypted by qpdf (AES-256); an empty ``user`` opens without a prompt."""
    with TemporaryDirectory() as tmp:
        source, out = Path(tmp, "in.pdf"), Path(tmp, "out.pdf")
        source.write_bytes(data)
        _run(
            "qpdf",
            "--encrypt",
            user,
            owner,
            "256",
            "--print=none",
            "--modify=none",
            "--",
            str(source),
            str(out),
        )
        return out.read_bytes()


def junk_after_eof(pdf: bytes) -> bytes:
    return pdf + b"\r\n" + b"---- footer appended by a mail path ----\r\n" * 500


def wrong_startxref(pdf: bytes) -> bytes:
    at = pdf.rfind(b"startxref")
    number = re.match(rb"startxref\s+(\d+)", pdf[at:])
    assert number is not None
    return pdf[:at] + b"startxref\n" + str(int(number.group(1)) - 300).encode() + pdf[at + number.end() :]


def startxref_far(pdf: bytes) -> bytes:
    return pdf + b" " * 3000 + b"\n"


def pjl_header(pdf: bytes) -> bytes:
    return b'\x1b%-12345X@PJL JOB NAME="Scan"\r\n@PJL ENTER LANGUAGE=PDF\r\n' + pdf


def shifted_offsets(pdf: bytes) -> bytes:
    line = pdf.find(b"\n") + 1
    return pdf[:line] + b"%" + b"inserted by an editor " * 20 + b"\n" + pdf[line:]


def zeroed_xref(pdf: bytes) -> bytes:
    return re.sub(rb"\d{10} 00000 n", b"0000000000 00000 n", pdf)


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "junk_after_eof": junk_after_eof,
    "wrong_startxref": wrong_startxref,
    "startxref_far": startxref_far,
    "pjl_header": pjl_header,
    "shifted_offsets": shifted_offsets,
    "zeroed_xref": zeroed_xref,
}


def filled_form(value: str) -> bytes:
    """A one-page PDF form whose text field holds ``value`` and has no appearance yet
    (as a filled-in form from a web service: viewers draw the value, a printer would not)."""
    base = pikepdf.open(io.BytesIO(ghostscript_pdf(1)))
    page = base.pages[0]
    field = base.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            FT=pikepdf.Name.Tx,
            T=pikepdf.String("name"),
            V=pikepdf.String(value),
            Rect=pikepdf.Array([72, 400, 400, 430]),
            F=4,
            DA=pikepdf.String("/Helv 14 Tf 0 g"),
            P=page.obj,
        )
    )
    page.obj.Annots = base.make_indirect(pikepdf.Array([field]))
    helv = pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
    )
    base.Root.AcroForm = base.make_indirect(
        pikepdf.Dictionary(
            Fields=pikepdf.Array([field]),
            NeedAppearances=True,
            DA=pikepdf.String("/Helv 14 Tf 0 g"),
            DR=pikepdf.Dictionary(Font=pikepdf.Dictionary(Helv=helv)),
        )
    )
    return _saved(base)


def inflate_bomb(inflated_mb: int = 71) -> bytes:
    """A one-page PDF of a few dozen KB whose object stream inflates to ``inflated_mb`` MB
    (the page tree lives in it, so counting the pages would inflate it all)."""
    pdf = pikepdf.open(io.BytesIO(ghostscript_pdf(1)))
    pdf.Root.Padding = pikepdf.String(b" " * (inflated_mb * 1_000_000))
    return _saved(pdf, object_streams=True)


def _saved(pdf: pikepdf.Pdf, *, object_streams: bool = False) -> bytes:
    out = io.BytesIO()
    mode = pikepdf.ObjectStreamMode.generate if object_streams else pikepdf.ObjectStreamMode.preserve
    pdf.save(out, object_stream_mode=mode)
    return out.getvalue()


def pdftotext_pages(pdf: bytes) -> list[str]:
    """The text of each page as poppler reads it (poppler repairs what it can)."""
    with TemporaryDirectory() as tmp:
        source = Path(tmp, "in.pdf")
        source.write_bytes(pdf)
        done = subprocess.run(
            ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True, timeout=60
        )
    return done.stdout.decode("utf-8", "replace").split("\f")[:-1]


def qpdf_check(pdf: bytes) -> subprocess.CompletedProcess[bytes]:
    """``qpdf --check`` of ``pdf``: exit 0 with no warnings for a clean file."""
    with TemporaryDirectory() as tmp:
        source = Path(tmp, "in.pdf")
        source.write_bytes(pdf)
        return subprocess.run(["qpdf", "--check", str(source)], capture_output=True, timeout=60)

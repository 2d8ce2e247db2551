"""Office documents to PDF with LibreOffice in headless mode.

Consumes: the bytes of one DOC/DOCX/XLS/XLSX/PPT/PPTX/ODT/ODS/ODP/RTF file, its kind,
the converter's path (``ExtractionLimits.office_converter``) and a time limit.
Produces: the PDF bytes, or ``DocumentRefused`` with a sentence.

Each conversion runs ``soffice --headless --convert-to pdf`` in a fresh temporary
directory with its own LibreOffice profile (``-env:UserInstallation``), so
conversions never share state or lock each other out. The converter runs in its own
process group and the whole group is killed when the time limit passes; where
util-linux's ``prlimit`` exists, its address space is capped at ``MEMORY_LIMIT_BYTES``
(a document that needs more fails to convert and is refused with a sentence). Without a
converter (``office_converter=None``) the document is refused with a sentence
saying so. The only side effects are the child process and the temporary directory,
which is always removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from gateway.core.document_errors import DocumentRefused
from gateway.core.filetypes import EXTENSIONS

_NAMES: Final = {
    "doc": "Word",
    "docx": "Word",
    "rtf": "RTF",
    "odt": "OpenDocument text",
    "xls": "Excel",
    "xlsx": "Excel",
    "ods": "OpenDocument spreadsheet",
    "ppt": "PowerPoint",
    "pptx": "PowerPoint",
    "odp": "OpenDocument presentation",
}

MEMORY_LIMIT_BYTES = 2_000_000_000  # LibreOffice converts ordinary documents in well under 1 GB


def find_office_converter() -> str | None:
    """The path of LibreOffice's ``soffice`` (or ``libreoffice``), or None."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def office_to_pdf(data: bytes, kind: str, filename: str, converter: str | None, timeout_s: float) -> bytes:
    """Convert one office document to PDF with LibreOffice, killed after ``timeout_s``."""
    label = _NAMES.get(kind, kind.upper())
    if converter is None:
        article = "an" if label[0] in "AEIOU" or label == "RTF" else "a"
        raise DocumentRefused(
            f'The attachment "{filename}" is {article} {label} document, and this gateway has '
            "no converter for it; save it as PDF and send it again."
        )
    with tempfile.TemporaryDirectory(prefix="faxgw-office-") as tmp:
        work = Path(tmp)
        source = work / f"document.{EXTENSIONS.get(kind, kind)}"
        source.write_bytes(data)
        outdir = work / "out"
        outdir.mkdir()
        command = [
            converter,
            f"-env:UserInstallation={(work / 'profile').as_uri()}",
            "--headless",
            "--invisible",
            "--nologo",
            "--nodefault",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "pdf",
            "--outdir",
            str(outdir),
            str(source),
        ]
        limiter = shutil.which("prlimit")  # util-linux: caps the converter's address space
        if limiter is not None:
            command = [limiter, f"--as={MEMORY_LIMIT_BYTES}", "--", *command]
        _run(command, work, timeout_s, filename, label)
        result = outdir / "document.pdf"
        if not result.is_file() or result.stat().st_size == 0:
            raise DocumentRefused(
                f'The {label} document "{filename}" could not be converted to PDF; '
                "save it as PDF and send it again."
            )
        return result.read_bytes()


def _run(command: list[str], home: Path, timeout_s: float, filename: str, label: str) -> None:
    """Run the converter in its own process group; the group never outlives the call."""
    env = {**os.environ, "HOME": str(home)}
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    except OSError as err:
        raise DocumentRefused(
            f'The {label} document "{filename}" could not be converted because the '
            "converter could not be started; save it as PDF and send it again."
        ) from err
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise DocumentRefused(
            f'The {label} document "{filename}" took longer than {timeout_s:g} seconds to '
            "convert; save it as PDF and send it again."
        ) from err
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # also helpers left behind by soffice
        process.wait()

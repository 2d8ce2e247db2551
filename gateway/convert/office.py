"""LibreOffice in headless mode: the office converter the documents core is given.

Consumes: the bytes of one DOC/DOCX/XLS/XLSX/PPT/PPTX/ODT/ODS/ODP/RTF file, its kind, its
name and a time limit (``LibreOffice.__call__``, the core's ``OfficeConverter``).
Produces: the PDF bytes, or ``DocumentRefused`` with the core's sentence
(``gateway.core.office.conversion_refused``). Touches: one child process and one
temporary directory per conversion, nothing else.

Each conversion runs ``soffice --headless --convert-to pdf`` in a fresh temporary
directory with its own LibreOffice profile (``-env:UserInstallation``), so
conversions never share state or lock each other out. The converter runs in its own
process group and the whole group is killed when the time limit passes; where
util-linux's ``prlimit`` exists, its address space is capped at ``MEMORY_LIMIT_BYTES``
(a document that needs more fails to convert and is refused with a sentence). The
temporary directory is always removed.

Settings: none; ``serve`` looks for ``soffice`` on the PATH at start-up
(``find_office_converter``), and ``ExtractionLimits.conversion_timeout_s`` is the limit.
A ``LibreOffice`` is a plain value, so it crosses to the reader processes with the limits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.core.filetypes import EXTENSIONS
from gateway.core.office import conversion_refused

MEMORY_LIMIT_BYTES = 2_000_000_000  # LibreOffice converts ordinary documents in well under 1 GB
# HTML opened by Writer (not Writer/Web, which prints a blank first page), laid out as a
# document: tables keep their columns.
_HTML_AS_WRITER = {"html": ("--infilter=HTML (StarWriter)", "--convert-to", "pdf:writer_pdf_Export")}


@dataclass(frozen=True)
class LibreOffice:
    """Converts with the ``soffice`` (or ``libreoffice``) program at ``path``."""

    path: str

    def __call__(self, data: bytes, kind: str, filename: str, timeout_s: float) -> bytes:
        """One office document as PDF, the converter killed after ``timeout_s``."""
        with tempfile.TemporaryDirectory(prefix="faxgw-office-") as tmp:
            work = Path(tmp)
            source = work / f"document.{EXTENSIONS.get(kind, kind)}"
            source.write_bytes(data)
            outdir = work / "out"
            outdir.mkdir()
            command = [
                self.path,
                f"-env:UserInstallation={(work / 'profile').as_uri()}",
                "--headless",
                "--invisible",
                "--nologo",
                "--nodefault",
                "--norestore",
                "--nolockcheck",
                *_HTML_AS_WRITER.get(kind, ("--convert-to", "pdf")),
                "--outdir",
                str(outdir),
                str(source),
            ]
            limiter = shutil.which("prlimit")  # util-linux: caps the converter's address space
            if limiter is not None:
                command = [limiter, f"--as={MEMORY_LIMIT_BYTES}", "--", *command]
            _run(command, work, timeout_s, kind, filename)
            result = outdir / "document.pdf"
            if not result.is_file() or result.stat().st_size == 0:
                raise conversion_refused(kind, filename, "no pdf")
            return result.read_bytes()


def find_office_converter() -> LibreOffice | None:
    """LibreOffice as found on the PATH (``soffice``, else ``libreoffice``), or None."""
    path = shutil.which("soffice") or shutil.which("libreoffice")
    return LibreOffice(path) if path is not None else None


def _run(command: list[str], home: Path, timeout_s: float, kind: str, filename: str) -> None:
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
        raise conversion_refused(kind, filename, "not started") from err
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise conversion_refused(kind, filename, "too slow", timeout_s=timeout_s) from err
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # also helpers left behind by soffice
        process.wait()

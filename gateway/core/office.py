"""Office documents to PDF: which converter, and the sentences when it cannot (pure).

Consumes: the bytes of one DOC/DOCX/XLS/XLSX/PPT/PPTX/ODT/ODS/ODP/RTF file, its kind,
an ``OfficeConverter`` (``ExtractionLimits.office_converter``) and a time limit.
Produces: the PDF bytes the converter made, or ``DocumentRefused`` with a sentence.

The converter itself runs outside the process (LibreOffice, ``gateway.convert.office``);
this module only decides: without a converter (``office_converter=None``) the document
is refused with a sentence saying so, and every way a conversion can fail has its
sentence here (``conversion_refused``), so the sender reads the same words whichever
converter is used.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol, assert_never

from gateway.core.document_errors import DocumentRefused

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

Failure = Literal["no pdf", "not started", "too slow"]


class OfficeConverter(Protocol):
    """Turns one office document into PDF bytes; raises ``DocumentRefused`` (made by
    ``conversion_refused``) when it cannot. A plain value, so that it can be pickled."""

    def __call__(self, data: bytes, kind: str, filename: str, timeout_s: float) -> bytes: ...


def office_label(kind: str) -> str:
    """What the sender calls a document of this kind: "Word", "OpenDocument text", ..."""
    return _NAMES.get(kind, kind.upper())


def office_to_pdf(
    data: bytes, kind: str, filename: str, converter: OfficeConverter | None, timeout_s: float
) -> bytes:
    """Convert one office document to PDF with ``converter``, or refuse it without one."""
    if converter is None:
        label = office_label(kind)
        article = "an" if label[0] in "AEIOU" or label == "RTF" else "a"
        raise DocumentRefused(
            f'The attachment "{filename}" is {article} {label} document, and this gateway has '
            "no converter for it; save it as PDF and send it again."
        )
    return converter(data, kind, filename, timeout_s)


def conversion_refused(
    kind: str, filename: str, failure: Failure, *, timeout_s: float = 0.0
) -> DocumentRefused:
    """The refusal, with its sentence, for a conversion that failed in this way."""
    label = office_label(kind)
    if failure == "no pdf":
        return DocumentRefused(
            f'The {label} document "{filename}" could not be converted to PDF; '
            "save it as PDF and send it again."
        )
    if failure == "not started":
        return DocumentRefused(
            f'The {label} document "{filename}" could not be converted because the '
            "converter could not be started; save it as PDF and send it again."
        )
    if failure == "too slow":
        return DocumentRefused(
            f'The {label} document "{filename}" took longer than {timeout_s:g} seconds to '
            "convert; save it as PDF and send it again."
        )
    assert_never(failure)

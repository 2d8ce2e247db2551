"""PDF checks: readable, how many pages, and made clean when a viewer would open it anyway.

Consumes: the bytes of one PDF, the pages still allowed in this fax and the bytes its
streams may still inflate to (``inflate_left``: the document's budget, or less when the
mail's is nearly spent).
Produces: ``CheckedPdf``: the page count, the bytes inflated while checking, and, when
the PDF had to be rewritten, the clean PDF (``data``); or ``DocumentRefused`` /
``TooManyPages`` with a sentence.

What a sender's PDF becomes:
  * **clean** (starts with ``%PDF-``, pypdf opens it in strict mode and qpdf without a
    single warning, no encryption, no form fields): sent byte for byte as it came,
    read in place (never copied);
  * **damaged in ways viewers repair** (junk after ``%%EOF``, a wrong or distant
    ``startxref``, a printer-job header before ``%PDF``, broken xref tables): rewritten
    by qpdf (pikepdf), which rebuilds the cross-reference table as poppler does;
  * **encrypted with an owner password only** (it opens without a prompt): decrypted
    with the empty password and sent unencrypted; one that needs a password to open is
    refused with a sentence saying so;
  * **a form**: its fields' appearances are generated and flattened into the pages, so
    what was filled in is what is faxed;
  * anything qpdf cannot make into a PDF that pypdf opens strictly, with the pages qpdf
    counted, is refused as damaged.
A rewritten PDF's streams are copied as they are (never decoded and re-encoded).

Inflate budget: checking a PDF decodes its cross-reference and object streams (the page
tree often lives in one), never page content. Every object stream is inflated first
within ``inflate_left`` (zlib with a ``max_length``; pypdf's own per-stream limits,
set to the same figure, cover the other filters and the xref streams), so a 73 KB PDF
whose object stream inflates to 71 MB is refused in milliseconds, before pypdf or qpdf
parse it. A PDF so damaged that pypdf cannot read its objects goes to qpdf unprobed:
the reader process's own limits bound that case.

The page tree's ``/Count`` is read first, so a 10,000-page PDF is refused without
walking its pages. Every pypdf or qpdf failure (they raise many types on damaged
input) is "damaged".
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, NoReturn

import pikepdf
from pypdf import PdfReader, apply_configuration
from pypdf.errors import LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject, StreamObject

from gateway.core.document_errors import DocumentRefused, TooManyPages

_HEADER_WINDOW: Final = 1024  # readers look for %PDF- this far in (a PJL job header before it)


@dataclass(frozen=True)
class CheckedPdf:
    """One PDF as it will be faxed."""

    pages: int
    inflated: int  # bytes its object streams inflated to while checking
    data: bytes | None = None  # the rewritten PDF; None: the bytes as sent are clean
    why: str = ""  # "repaired", "decrypted", "flattened" (joined by ", ") when rewritten


def count_pdf_pages(data: bytes, filename: str, pages_left: int, max_pages: int) -> int:
    """Pages in the PDF ``data`` as it is (a PDF the gateway made); refuses bad ones."""
    with _InPlace(data) as stream:
        reader = _open(stream, filename, strict=False)
        if reader.is_encrypted:
            raise _damaged(filename)
        return _count(reader, filename, pages_left, max_pages)


def check_pdf(
    data: bytes, filename: str, *, pages_left: int, max_pages: int, inflate_left: int
) -> CheckedPdf:
    """The PDF ``data`` checked, counted, and rewritten when it must be (see above)."""
    start = data.find(b"%PDF-", 0, _HEADER_WINDOW)
    reasons: list[str] = [] if start == 0 else ["repaired"]
    inflated = 0
    pages: int | None = None
    with _InPlace(data) as stream, _limits(inflate_left):
        reader = _reader(stream, filename, strict=not reasons)
        if reader is None:
            reasons.append("repaired")
            reader = _reader(stream, filename, strict=False)
        if reader is not None and reader.is_encrypted:
            reasons.append("decrypted")
        elif reader is not None:
            inflated = _inflate_object_streams(reader, filename, inflate_left)
            try:
                pages = _count(reader, filename, pages_left, max_pages)
                if _has_form(reader):
                    reasons.append("flattened")
            except _Damaged:
                reasons.append("repaired")  # pypdf cannot read the page tree; qpdf may
                pages = None
        if not reasons and pages is not None:
            qpdf_pages = _qpdf_clean_pages(stream)
            if qpdf_pages == pages:
                return CheckedPdf(pages, inflated)
            reasons.append("repaired")
    rewritten = _rewrite(data, filename, flatten="flattened" in reasons)
    checked, inflated_after = _verify(rewritten, filename, pages_left, max_pages, inflate_left)
    why = ", ".join(dict.fromkeys(reasons))
    return CheckedPdf(checked, max(inflated, inflated_after), rewritten, why)


class _InPlace(io.BytesIO):
    """The PDF's bytes as a stream, shared rather than copied (no ``getbuffer``)."""

    @property
    def getbuffer(self) -> NoReturn:
        raise AttributeError("getbuffer")  # pypdf then seeks to learn the size


@contextmanager
def _limits(inflate_left: int) -> Iterator[None]:
    """pypdf's per-stream decoding limits, set to what the budget still allows."""
    left = max(1, inflate_left)
    with apply_configuration(
        zlib_maximum_output_length=left,
        lzw_maximum_output_length=left,
        run_length_maximum_output_length=left,
        brotli_maximum_output_length=left,
        jbig2_maximum_output_length=left,
        array_based_stream_maximum_output_length=left,
        stream_decoding_work_maximum_length=left,
        zlib_maximum_recovery_input_length=min(left, 5_000_000),
    ):
        yield


def _reader(stream: _InPlace, filename: str, *, strict: bool) -> PdfReader | None:
    """pypdf's reader with its cross-reference read, or None when it cannot read it."""
    stream.seek(0)
    try:
        return PdfReader(stream, strict=strict)
    except LimitReachedError as err:
        raise _too_much(filename, 0) from err
    except Exception:
        return None


def _open(stream: _InPlace, filename: str, *, strict: bool) -> PdfReader:
    reader = _reader(stream, filename, strict=strict)
    if reader is None:
        raise _damaged(filename)
    return reader


def _inflate_object_streams(reader: PdfReader, filename: str, inflate_left: int) -> int:
    """Bytes the object streams inflate to, each inflated within what is left; refuses
    the PDF as soon as they come to more."""
    total = 0
    for number in sorted({stream for stream, _ in reader.xref_objStm.values()}):
        try:
            stream = reader.get_object(number)
        except Exception:
            continue  # pypdf says "damaged" when it needs it; qpdf may still repair it
        if not isinstance(stream, StreamObject):
            continue
        left = inflate_left - total
        filters = stream.get("/Filter")
        if isinstance(filters, ArrayObject) and len(filters) == 1:
            filters = filters[0]
        try:
            if filters == NameObject("/FlateDecode") and "/DecodeParms" not in stream:
                size = _inflated_size(bytes(stream._data), left)
            else:
                size = len(stream.get_data())  # within pypdf's limits, set to ``left``
        except (_OverBudget, LimitReachedError) as err:
            raise _too_much(filename, inflate_left) from err
        except Exception:
            continue
        total += size
        if total > inflate_left:
            raise _too_much(filename, inflate_left)
    return total


class _OverBudget(Exception):
    pass


def _inflated_size(raw: bytes, left: int) -> int:
    inflater = zlib.decompressobj()
    size = 0
    chunk = raw
    while chunk:
        out = inflater.decompress(chunk, min(max(left - size, 0) + 1, 1 << 20))
        size += len(out)
        if size > left:
            raise _OverBudget
        chunk = inflater.unconsumed_tail
        if not out and not chunk:
            break
    return size


def _count(reader: PdfReader, filename: str, pages_left: int, max_pages: int) -> int:
    try:
        declared = _declared_count(reader)
        if declared is not None and declared > pages_left:
            raise _too_many(filename, declared, pages_left, max_pages)
        pages = len(reader.pages)
    except TooManyPages:
        raise
    except LimitReachedError as err:
        raise _too_much(filename, 0) from err
    except Exception as err:
        raise _damaged(filename) from err
    if pages < 1:
        raise DocumentRefused(f'The attachment "{filename}" is a PDF without pages.')
    if pages > pages_left:
        raise _too_many(filename, pages, pages_left, max_pages)
    return pages


def _declared_count(reader: PdfReader) -> int | None:
    """The root page tree's /Count, without touching any page; None when absent or odd."""
    root = reader.trailer["/Root"].get_object()
    tree = root["/Pages"].get_object() if isinstance(root, DictionaryObject) else None
    if not isinstance(tree, DictionaryObject):
        return None
    count = tree.get("/Count")
    count = count.get_object() if count is not None else None
    return int(count) if isinstance(count, NumberObject) else None


def _has_form(reader: PdfReader) -> bool:
    """True when the document has interactive form fields (their values are not yet page
    content: a viewer draws them, a fax machine would not)."""
    root = reader.trailer["/Root"].get_object()
    form = root.get("/AcroForm") if isinstance(root, DictionaryObject) else None
    form = form.get_object() if form is not None else None
    if not isinstance(form, DictionaryObject):
        return False
    fields = form.get("/Fields")
    fields = fields.get_object() if fields is not None else None
    return isinstance(fields, ArrayObject) and len(fields) > 0


def _qpdf_clean_pages(stream: _InPlace) -> int | None:
    """Pages as qpdf counts them, or None when qpdf warns (it had to repair something)."""
    stream.seek(0)
    try:
        with pikepdf.open(stream, suppress_warnings=True, attempt_recovery=False) as pdf:
            pages = len(pdf.pages)
            return None if pdf.get_warnings() else pages
    except Exception:
        return None


def _rewrite(data: bytes, filename: str, *, flatten: bool) -> bytes:
    """The PDF rebuilt by qpdf: repaired, unencrypted, its form flattened when asked.

    qpdf rebuilds the cross-reference table when it cannot read it, but trusts one that
    reads well and points at the wrong places; then it is told to rebuild it anyway
    (the last ``startxref`` pointed at nothing), as poppler does by itself."""
    try:
        return _rebuilt(data, flatten=flatten)
    except pikepdf.PasswordError as err:
        raise DocumentRefused(
            f'The attachment "{filename}" is a PDF that needs a password to open; '
            "save a copy without the password and send it again."
        ) from err
    except Exception as first:
        at = data.rfind(b"startxref")
        if at < 0:
            raise _damaged(filename) from first
        try:
            return _rebuilt(data[:at] + b"startxref\n0\n%%EOF\n", flatten=flatten)
        except Exception as err:
            raise _damaged(filename) from err


def _rebuilt(data: bytes, *, flatten: bool) -> bytes:
    with pikepdf.open(io.BytesIO(data), password="", suppress_warnings=True) as pdf:
        if len(pdf.pages) < 1:
            raise ValueError("no pages")
        if flatten:
            pdf.generate_appearance_streams()
            pdf.flatten_annotations("print")
            if "/AcroForm" in pdf.Root:
                del pdf.Root["/AcroForm"]
        out = io.BytesIO()
        pdf.save(
            out,
            encryption=False,
            stream_decode_level=pikepdf.StreamDecodeLevel.none,
            fix_metadata_version=False,
            deterministic_id=True,  # one document makes one PDF (its hash is proof of what went out)
        )
        return out.getvalue()


def _verify(
    data: bytes, filename: str, pages_left: int, max_pages: int, inflate_left: int
) -> tuple[int, int]:
    """Pages of the rewritten PDF, read strictly (it must be clean now), and the bytes its
    object streams inflate to (an encrypted PDF could not be probed before)."""
    with _InPlace(data) as stream, _limits(inflate_left):
        reader = _open(stream, filename, strict=True)
        if reader.is_encrypted:
            raise _damaged(filename)
        inflated = _inflate_object_streams(reader, filename, inflate_left)
        pages = _count(reader, filename, pages_left, max_pages)
        if _qpdf_clean_pages(stream) != pages:
            raise _damaged(filename)
        return pages, inflated


class _Damaged(DocumentRefused):
    """A PDF pypdf cannot read (qpdf may still repair it)."""


def _damaged(filename: str) -> DocumentRefused:
    return _Damaged(
        f'The attachment "{filename}" is a damaged PDF that cannot be read; '
        "save or export it again and resend it."
    )


def _too_much(filename: str, budget: int) -> DocumentRefused:
    within = f" (more than {budget / 1_000_000:g} MB)" if budget else ""
    return DocumentRefused(
        f'The attachment "{filename}" is a PDF whose contents unpack to too much data to check'
        f"{within}; print it to a new PDF or send it in smaller parts."
    )


def _too_many(filename: str, pages: int, pages_left: int, max_pages: int) -> TooManyPages:
    if pages_left >= max_pages:
        return TooManyPages(
            f'The attachment "{filename}" has {pages} pages; one fax may have at most {max_pages} pages.'
        )
    return TooManyPages(
        f'With the attachment "{filename}" ({pages} pages) this fax would have more than '
        f"{max_pages} pages; send it in several mails."
    )

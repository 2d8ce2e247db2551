"""documents: a parsed mail becomes the fax documents the sender meant (pure core).

Consumes: the raw mail (``parse_message``) or a parsed ``EmailMessage``, and
``ExtractionLimits`` (a value; the settings root builds it).
Produces: ``Extraction``: the documents in the order they were attached, each
``PDF`` or ``TXT`` with its page count; what was left out and why; the subject
without its ``[options]``; the trimmed text; and whether that text is the fax.
Fails with ``DocumentError`` (see document_errors) whose ``str`` is one sentence
for the sender; the SMTP handler answers ``554 5.6.0 <sentence>`` at DATA.

What becomes pages (the MIME rules are in mimetree):
  * the type is read from the bytes (filetypes), never from the name or the header;
  * PDF (pdfs): a clean one as sent; one viewers repair, an owner-password one or a
    form rewritten by qpdf (repaired, decrypted, flattened); one needing a password,
    damaged beyond repair or inflating past its budget is refused;
  * TIFF, JPEG, PNG, GIF, BMP, WebP, HEIC/HEIF: converted to PDF (images), large ones
    brought down to fax resolution while decoding (bigimages);
  * HTML files, and an HTML-only body that is the fax: cleaned of anything remote
    (htmlpage) and rendered with their layout by the ``office_converter``; without one
    (or when it fails), as text;
  * text files: PDFs the gateway sets itself (textpdf) when it has fonts
    (``text_fonts``), else TXT documents for eFax's renderer (HTML as its visible text);
  * DOC/DOCX/XLS/XLSX/PPT/PPTX/ODT/ODS/ODP/RTF: the ``office_converter`` when one is
    given (LibreOffice, ``gateway.convert.office``), else refused (office);
  * winmail.dat: unpacked (tnef), its files treated like any other;
  * an attached mail: its text as a TXT document, then its attachments;
  * zip, programs, calendar invitations, ...: left out (``LeftOut``); a mail whose
    attachments are all left out is refused (``NothingToFax``);
  * no attachments at all: the trimmed text is the fax, one PDF headed by who sent it,
    when and about what (or one TXT document without ``text_fonts``).
A message/partial piece raises ``SplitMessage``; reassemble it first (partial).

Bounds (``ExtractionLimits``, all with defaults): documents per fax, pages per fax
(a 10,000-page PDF is refused from its page-tree count), bytes a PDF's object streams
may inflate to (per PDF and per mail), pixels per image frame and pixels x bytes per
pixel decoded at once, frames per TIFF, seconds per conversion. Only office and HTML
conversion leaves the process (a child process, killed at the time limit); everything
else is in-process and bounded by those checks. Call it off the event loop
(``asyncio.to_thread``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from gateway.core import filetypes, mailparse
from gateway.core.document_errors import (
    DocumentError,
    DocumentRefused,
    NothingToFax,
    SplitMessage,
    TooManyDocuments,
    TooManyPages,
)
from gateway.core.htmlpage import printable_html
from gateway.core.images import image_to_pdf
from gateway.core.mailparse import Span
from gateway.core.mailtext import (
    clean_text,
    decode_text,
    html_to_text,
    parse_subject,
    text_pages,
    trim_body,
)
from gateway.core.mimetree import (
    Embedded,
    Item,
    MailContents,
    Part,
    Skipped,
    clean_filename,
    content_type,
    header_text,
    walk_message,
)
from gateway.core.office import OfficeConverter, office_to_pdf
from gateway.core.partial import partial_key, reassemble_partials
from gateway.core.pdfs import check_pdf, count_pdf_pages
from gateway.core.textpdf import Heading, TextFonts, text_to_pdf
from gateway.core.tnef import TnefError, unpack_tnef

__all__ = [
    "DocumentError",
    "DocumentRefused",
    "Extraction",
    "ExtractionLimits",
    "FaxDocument",
    "LeftOut",
    "NothingToFax",
    "SplitMessage",
    "SubjectOptions",
    "TooManyDocuments",
    "TooManyPages",
    "extract_documents",
    "parse_message",
    "partial_key",
    "reassemble_partials",
]

_MAX_NESTING = 5  # attached mails and winmail.dat inside each other
# Not "an attachment the sender meant": a vCard is left out quietly, winmail.dat is a wrapper.
_NOT_COUNTED = frozenset({"vcard", "tnef"})


@dataclass(frozen=True)
class FaxDocument:
    """One document of the fax, in the order it was attached."""

    filename: str  # decoded display name ("scan 1.pdf"), "message.txt" for the mail's text
    document_type: Literal["PDF", "TXT"]  # the only confirmed eFax tokens; all else becomes PDF
    content: bytes  # PDF bytes, or UTF-8 text for TXT
    pages: int  # known before submission (pypdf, frames, or 60 lines a page for text)
    detected: str  # what the bytes were: "pdf", "tiff", "jpeg", "text", "html", "docx", "message"...
    # Where ``content`` lies, base64-encoded, in the raw mail it came from (a PDF sent as
    # is), so that the store can keep it as a reference rather than a second copy.
    span: Span | None = None
    # Set when ``content`` was left behind (b"") because ``span`` says where it is: its
    # size. A reader process answers so, rather than send back what the caller has.
    length: int | None = None

    @property
    def size(self) -> int:
        """Bytes of the document, whether ``content`` holds them or ``span`` does."""
        return len(self.content) if self.length is None else self.length


@dataclass(frozen=True)
class LeftOut:
    """An attachment not faxed, for the report: "a zip archive, which cannot be faxed"."""

    filename: str
    reason: str


@dataclass(frozen=True)
class SubjectOptions:
    cover: bool | None = None  # [cover] -> True, [nocover] -> False, neither -> None
    resolution: Literal["FINE", "STANDARD"] | None = None  # [fine] / [standard]


@dataclass(frozen=True)
class Extraction:
    documents: tuple[FaxDocument, ...]  # never empty
    left_out: tuple[LeftOut, ...]
    subject: str  # without the [options], whitespace tidied
    body_text: str  # trimmed text (no signature, no quoted reply); "" if none
    options: SubjectOptions
    body_is_document: bool  # no attachments: the text is the fax (documents[0], "message.txt")

    @property
    def pages(self) -> int:
        return sum(document.pages for document in self.documents)


@dataclass(frozen=True)
class ExtractionLimits:
    max_documents: int = 25  # documents per fax (eFax takes up to 25)
    max_pages: int = 500  # pages per fax, all documents together
    # per image frame, read from its header (a 108-megapixel phone photo is fine); larger is refused
    max_image_pixels: int = 178_000_000
    # pixels x bytes per pixel decoded at once; larger images are brought down to fax
    # resolution while decoding (JPEG, PNG) or refused when they cannot be (bigimages)
    max_decode_bytes: int = 150_000_000
    max_tiff_frames: int = 500  # frames per TIFF
    conversion_timeout_s: float = 60.0  # per image or office conversion
    # bytes a PDF's object streams may inflate to while it is checked, per PDF and per mail
    max_pdf_inflate_bytes: int = 32_000_000
    max_mail_inflate_bytes: int = 96_000_000
    # LibreOffice (gateway.convert.office) or any OfficeConverter; None: office files are refused
    office_converter: OfficeConverter | None = None
    # The fonts text faxes are set in (gateway.convert.fonts finds DejaVu); None: text goes
    # to eFax as TXT, for its own renderer, and a text-only fax has no heading
    text_fonts: TextFonts | None = None


def parse_message(raw: bytes) -> EmailMessage:
    """The mail parsed with ``policy.default``; defects are tolerated, it never raises.

    The result is what ``BytesParser(policy=policy.default).parsebytes`` gives, built
    for less work (mailparse); on absurd nesting, the headers at least.
    """
    return mailparse.parse(raw)


def extract_documents(message: EmailMessage, limits: ExtractionLimits = ExtractionLimits()) -> Extraction:
    """The fax documents in ``message``; raises DocumentError with a sentence otherwise."""
    if content_type(message) == "message/partial":
        raise SplitMessage(
            "This mail is one piece of a message split into several parts; "
            "it can be faxed only once all the pieces have arrived."
        )
    subject, cover, resolution = parse_subject(header_text(message, "Subject"))
    options = SubjectOptions(cover=cover, resolution=resolution)
    contents = walk_message(message)
    collector = _Collector(limits)
    for item in contents.items:
        collector.add(item, 0)
    texts = [html_to_text(t.text) if t.is_html else t.text for t in contents.body]
    body_text = trim_body("\n".join(texts))
    documents = tuple(collector.documents)
    if collector.attachments:
        if not documents:
            raise NothingToFax(_nothing_sentence(collector, limits))
        return Extraction(
            documents, tuple(collector.left_out), subject, body_text, options, body_is_document=False
        )
    if not body_text:
        raise NothingToFax(_nothing_sentence(collector, limits))
    pages = text_pages(body_text)
    if pages > limits.max_pages:
        raise TooManyPages(
            f"The text of the mail fills {pages} pages; one fax may have at most {limits.max_pages} pages."
        )
    document = _body_document(message, contents, body_text, subject, limits)
    return Extraction(
        (document,), tuple(collector.left_out), subject, body_text, options, body_is_document=True
    )


def _body_document(
    message: EmailMessage, contents: MailContents, body_text: str, subject: str, limits: ExtractionLimits
) -> FaxDocument:
    """The mail's text as the fax: its HTML rendered with its layout when it has only HTML
    and a converter is there, else its text set by the gateway (or TXT without fonts)."""
    only_html = bool(contents.body) and all(t.is_html for t in contents.body)
    heading = Heading(header_text(message, "From"), header_text(message, "Date"), subject)
    if only_html and limits.office_converter is not None:
        html = "\n".join(t.text for t in contents.body)
        rendered = _rendered_html(html, "message.html", heading, limits, limits.max_pages)
        if rendered is not None:
            return FaxDocument("message.pdf", "PDF", rendered[0], rendered[1], "html")
    detected = "html" if only_html else "text"
    pages = text_pages(body_text)
    if limits.text_fonts is None:
        return FaxDocument("message.txt", "TXT", body_text.encode("utf-8"), pages, detected)
    pdf, pages = text_to_pdf(body_text, limits.text_fonts, heading)
    if pages > limits.max_pages:
        raise TooManyPages(
            f"The text of the mail fills {pages} pages; one fax may have at most {limits.max_pages} pages."
        )
    return FaxDocument("message.pdf", "PDF", pdf, pages, detected)


def _rendered_html(
    html: str, name: str, heading: Heading | None, limits: ExtractionLimits, pages_left: int
) -> tuple[bytes, int] | None:
    """HTML rendered to PDF by the converter, cleaned first (htmlpage); None when it has
    nothing to show or the converter failed (the caller falls back to its text)."""
    printable = printable_html(html, heading)
    if printable is None:
        return None
    try:
        pdf = office_to_pdf(printable, "html", name, limits.office_converter, limits.conversion_timeout_s)
    except DocumentRefused:
        return None
    return pdf, count_pdf_pages(pdf, name, pages_left, limits.max_pages)


@dataclass
class _Collector:
    """Turns attachment items into documents in order, keeping the running limits."""

    limits: ExtractionLimits
    documents: list[FaxDocument] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # "name" (what it is), for NothingToFax
    attachments: int = 0  # items the sender meant as attachments (not incidental)
    unnamed: int = 0
    inflated: int = 0  # bytes the PDFs' object streams inflated to so far (the mail's budget)

    @property
    def pages_left(self) -> int:
        return self.limits.max_pages - sum(d.pages for d in self.documents)

    def add(self, item: Item, nesting: int) -> None:
        if isinstance(item, Skipped):
            self.attachments += 1
            self._leave_out(item.filename, item.reason, item.reason)
        elif isinstance(item, Embedded):
            self._embedded(item, nesting)
        else:
            self._part(item, nesting)

    def _part(self, part: Part, nesting: int) -> None:
        kind = _detect(part.data)
        name = part.filename or self._unnamed(kind)
        if kind not in _NOT_COUNTED:
            self.attachments += 1
        if kind == "pdf":
            self._check_room(name)
            self._pdf(part, name)
        elif kind in filetypes.IMAGE_KINDS:
            self._check_room(name)
            pdf, pages = image_to_pdf(
                part.data,
                kind,
                name,
                max_pixels=self.limits.max_image_pixels,
                max_frames=self.limits.max_tiff_frames,
                pages_left=self.pages_left,
                max_pages=self.limits.max_pages,
                timeout_s=self.limits.conversion_timeout_s,
                max_decode_bytes=self.limits.max_decode_bytes,
            )
            self._document(FaxDocument(name, "PDF", pdf, pages, kind))
        elif kind == "html" and self.limits.office_converter is not None and self._html(part, name):
            return
        elif kind in filetypes.TEXT_KINDS:
            text = decode_text(part.data, part.charset)
            text = html_to_text(text) if kind == "html" else clean_text(text).strip("\n")
            if not text.strip():
                self._leave_out(name, "an empty text file", "an empty text file")
                return
            self._text_document(name, text, kind)
        elif kind in filetypes.OFFICE_KINDS:
            self._check_room(name)
            pdf = office_to_pdf(
                part.data, kind, name, self.limits.office_converter, self.limits.conversion_timeout_s
            )
            pages = count_pdf_pages(pdf, name, self.pages_left, self.limits.max_pages)
            self._document(FaxDocument(name, "PDF", pdf, pages, kind))
        elif kind == "tnef":
            self._tnef(part, name, nesting)
        else:
            self._leave_out(name, filetypes.left_out_reason(kind), filetypes.describe(kind))

    def _pdf(self, part: Part, name: str) -> None:
        limits = self.limits
        left = min(limits.max_pdf_inflate_bytes, limits.max_mail_inflate_bytes - self.inflated)
        checked = check_pdf(
            part.data, name, pages_left=self.pages_left, max_pages=limits.max_pages, inflate_left=left
        )
        self.inflated += checked.inflated
        if checked.data is None:  # clean: as sent, still where it lies in the raw mail
            self._document(FaxDocument(name, "PDF", part.data, checked.pages, "pdf", part.span))
        else:
            self._document(FaxDocument(name, "PDF", checked.data, checked.pages, "pdf"))

    def _html(self, part: Part, name: str) -> bool:
        """An HTML file rendered with its layout; False: fax its text instead."""
        self._check_room(name)
        rendered = _rendered_html(
            decode_text(part.data, part.charset), name, None, self.limits, self.pages_left
        )
        if rendered is None:
            return False
        self._document(FaxDocument(name, "PDF", rendered[0], rendered[1], "html"))
        return True

    def _tnef(self, part: Part, name: str, nesting: int) -> None:
        if nesting >= _MAX_NESTING:
            self.attachments += 1
            self._leave_out(
                name,
                "an Outlook attachment package nested too deeply to read",
                "an Outlook attachment package",
            )
            return
        try:
            contents = unpack_tnef(part.data)
        except TnefError as err:
            raise DocumentRefused(
                f'The Outlook attachment package "{name}" is damaged and cannot be unpacked; '
                "send the files again as ordinary attachments."
            ) from err
        for filename, data in contents.files:
            self._part(Part(clean_filename(filename), data, None, "application/octet-stream"), nesting + 1)
        if contents.items_without_data:
            self.attachments += 1
            self._leave_out(
                name, "an Outlook item inside winmail.dat, which cannot be faxed", "an Outlook item"
            )

    def _embedded(self, item: Embedded, nesting: int) -> None:
        self.attachments += 1
        inner = item.message
        subject = header_text(inner, "Subject")
        title = (subject or "attached message").replace("/", "-").replace("\\", "-")
        name = item.filename or clean_filename(f"{title}.eml") or "attached message.eml"
        if nesting >= _MAX_NESTING:
            self._leave_out(name, "an attached mail nested too deeply to read", "an attached mail")
            return
        contents = walk_message(inner)
        texts = [html_to_text(t.text) if t.is_html else t.text for t in contents.body]
        body = "\n".join(texts).strip()
        if body:
            heading = [
                f"{label}: {value}"
                for label in ("From", "Date", "To", "Subject")
                if (value := header_text(inner, label))
            ]
            self._text_document(name, "\n".join([*heading, "", body]), "message")
        elif not contents.items:
            self._leave_out(name, "an attached mail without text or attachments", "an empty mail")
        for child in contents.items:
            self.add(child, nesting + 1)

    def _text_document(self, name: str, text: str, detected: str) -> None:
        self._check_room(name)
        text = clean_text(text)
        pages = text_pages(text)
        if pages > self.pages_left:
            raise TooManyPages(
                f'The text "{name}" fills {pages} pages; with the other documents that is '
                f"more than the {self.limits.max_pages} pages one fax may have."
            )
        fonts = self.limits.text_fonts
        if fonts is None:
            self._document(FaxDocument(name, "TXT", text.encode("utf-8"), pages, detected))
            return
        pdf, pages = text_to_pdf(text, fonts)
        if pages > self.pages_left:
            raise TooManyPages(
                f'The text "{name}" fills {pages} pages; with the other documents that is '
                f"more than the {self.limits.max_pages} pages one fax may have."
            )
        self._document(FaxDocument(name, "PDF", pdf, pages, detected))

    def _check_room(self, name: str) -> None:
        if len(self.documents) >= self.limits.max_documents:
            raise TooManyDocuments(
                f"The mail has more than {self.limits.max_documents} documents to fax "
                f'("{name}" is one too many); one fax may carry at most '
                f"{self.limits.max_documents}, so send them in several mails."
            )

    def _document(self, document: FaxDocument) -> None:
        self._check_room(document.filename)
        self.documents.append(document)

    def _leave_out(self, name: str | None, reason: str, short: str) -> None:
        self.left_out.append(LeftOut(name or "unnamed part", reason))
        self.found.append(f'"{name}" ({short})' if name else short)

    def _unnamed(self, kind: str) -> str:
        self.unnamed += 1
        return f"attachment {self.unnamed}.{filetypes.EXTENSIONS.get(kind, 'bin')}"


def _detect(data: bytes) -> filetypes.Kind:
    """``filetypes.detect(data)`` without its copies of a whole PDF (``strip``).

    Bytes that start with ``%PDF-`` after a BOM or blanks are the first thing detect
    calls a PDF, so the first kilobyte is enough to say so.
    """
    if data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    return filetypes.detect(data)


def _nothing_sentence(collector: _Collector, limits: ExtractionLimits) -> str:
    accepted = "a PDF, an image (TIFF, JPEG, PNG, GIF, BMP, WebP, HEIC) or a text file"
    if limits.office_converter:
        accepted = (
            "a PDF, an image (TIFF, JPEG, PNG, GIF, BMP, WebP, HEIC), a text file or an office document "
            "(Word, Excel, PowerPoint, OpenDocument, RTF)"
        )
    if not collector.found:
        return (
            f"The mail has no text and no attachment to fax; write the text in the mail or attach {accepted}."
        )
    found = collector.found[:3]
    more = len(collector.found) - len(found)
    listed = ", ".join(found) + (f" and {more} more" if more else "")
    return f"Nothing in this mail can be faxed: it holds {listed}; attach {accepted}."

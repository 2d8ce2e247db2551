"""The words of a mail: decoding, HTML to text, trimming, subject options, text pages.

Consumes: bytes with a declared charset, HTML strings, the mail's subject.
Produces: plain ``str`` values. Nothing here touches the network; HTML is read with
libxml2's parser (lxml, linear in its input: the standard ``html.parser`` took minutes
on ``<a `` thirty thousand times) and no remote content (images, styles) is ever fetched.

Trimming (``trim_body``) keeps what the sender wrote and cuts what a mail client
added: the signature after a ``-- `` line, quoted replies (``>`` lines, "On ... wrote:",
Outlook's "-----Original Message-----" and "From:/Sent:" blocks) and a trailing
"Sent from my iPhone". Forwarded messages are kept: they are usually the point.

Subject options: ``[nocover]``, ``[cover]``, ``[fine]``, ``[standard]`` (any case);
the last one of each pair wins.

Text pages: a TXT document is counted as 60 lines a page after wrapping at 80
columns (a form feed starts a new page), at least one page.
"""

from __future__ import annotations

import codecs
import math
import re
from html import unescape
from typing import Any, Final, Literal

from lxml import etree

LINES_PER_PAGE: Final = 60
COLUMNS: Final = 80
MAX_PARSED_HTML: Final = 1_000_000

_OPTION = re.compile(r"\[\s*(nocover|cover|fine|standard)\s*\]", re.IGNORECASE)
_WROTE: Final = r"\b(wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu)\b[^:]{0,80}:\s*$"
_ATTRIBUTION = re.compile(r"^\s*(on|am|le|el|il|op|em)\b.*" + _WROTE, re.IGNORECASE)
_WROTE_END = re.compile(_WROTE, re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)"
    r"\s*-{2,}\s*$",
    re.IGNORECASE,
)
_HEADER_BLOCK = re.compile(r"^\s*\*?(from|von|de)\s*:\*?\s", re.IGNORECASE)
_SENT_LINE = re.compile(r"^\s*\*?(sent|gesendet|envoyé|enviado|inviato|verzonden)\s*:\*?\s", re.IGNORECASE)
_RULE = re.compile(r"^\s*_{8,}\s*$")
_SENT_FROM = re.compile(r"^\s*(sent from my|get outlook for|sent from mail for|von meinem)\b", re.IGNORECASE)

_TAG: Final = re.compile(r"<[^<>]*>")
_CONTROLS: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_LINE_TAGS: Final = frozenset(
    {
        "address",
        "article",
        "aside",
        "dd",
        "div",
        "dt",
        "figcaption",
        "footer",
        "form",
        "header",
        "li",
        "main",
        "nav",
        "pre",
        "section",
        "tr",
    }
)
_PARAGRAPH_TAGS: Final = frozenset(
    {
        "blockquote",
        "dl",
        "fieldset",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "ol",
        "p",
        "table",
        "ul",
    }
)
_HIDDEN_TAGS: Final = frozenset({"head", "script", "style", "title", "template", "noscript"})


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes to text: the declared charset, else UTF-8, else Windows-1252; never raises."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate.strip().lower())
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


def clean_text(text: str) -> str:
    """LF line ends, and no control characters but tab, line feed and form feed."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class _TextFromHTML:
    """Collects visible text; lines inside <blockquote> are prefixed with "> ".

    A parser target for lxml: libxml2 calls ``start``, ``end`` and ``data`` as it reads."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._line: list[str] = []
        self._line_depth = 0
        self._quote_depth = 0
        self._hidden = 0
        self._pre = 0

    def _break(self, *, force: bool = False, blank: bool = False) -> None:
        """End the current line (if it has text, or always with ``force``)."""
        raw = "".join(self._line)
        text = raw.rstrip() if self._pre else raw.strip()
        if text or force:
            self.lines.append("> " * self._line_depth + text if text else "")
        if blank and self.lines and self.lines[-1]:
            self.lines.append("")
        self._line = []
        self._line_depth = self._quote_depth

    def _block(self, tag: str) -> None:
        if tag == "br":
            self._break(force=True)
        elif tag in _LINE_TAGS:
            self._break()
        elif tag in _PARAGRAPH_TAGS:
            self._break(blank=True)

    def start(self, tag: Any, attrib: Any) -> None:
        tag = str(tag).lower()
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        self._block(tag)
        if tag == "blockquote":
            self._quote_depth += 1
            self._line_depth = self._quote_depth
        elif tag == "pre":
            self._pre += 1
        elif tag == "li":
            self._line.append("- ")
        elif tag in ("td", "th"):
            self._line.append(" ")

    def end(self, tag: Any) -> None:
        tag = str(tag).lower()
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        if tag != "br":
            self._block(tag)
        if tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
            self._line_depth = self._quote_depth
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)

    def comment(self, text: str) -> None:
        pass

    def close(self) -> str:
        return self.text()

    def data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._line.append(first)
            for piece in rest:
                self._break(force=True)
                self._line.append(piece)
            return
        self._line.append(re.sub(r"\s+", " ", data.replace("\xa0", " ")))

    def text(self) -> str:
        self._break()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block; links are never fetched.

    HTML over 1 MB skips the parser for a linear tag strip (fewer blocks, same words).
    """
    if len(html) > MAX_PARSED_HTML:
        return _stripped(html)
    target = _TextFromHTML()
    parser = etree.HTMLParser(target=target, no_network=True, recover=True)
    try:
        parser.feed(html)
        text = parser.close()
    except Exception:  # libxml2 is lenient; this is a last resort for odd input
        return _stripped(html)
    return tidy(str(text))


def _stripped(html: str) -> str:
    text = unescape(_TAG.sub(" ", html))
    return tidy("\n".join(" ".join(line.split()) for line in clean_text(text).split("\n")))


def tidy(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines, trim the ends."""
    lines = [line.rstrip() for line in clean_text(text).split("\n")]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip("\n")


def trim_body(text: str) -> str:
    """The part of a mail body the sender wrote: no signature, no quoted reply."""
    lines = clean_text(text).split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if line in ("-- ", "--") or _ORIGINAL.match(line) or _ATTRIBUTION.match(line):
            break
        if _RULE.match(line) and _starts_header_block(lines, index + 1):
            break
        if _HEADER_BLOCK.match(line) and _starts_header_block(lines, index):
            break
        if _WROTE_END.search(line) and kept and kept[-1].lstrip().lower().startswith("on "):
            kept.pop()  # "On Mon, 3 Jun 2024, Bob Smith <bob@example.com>\nwrote:"
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _SENT_FROM.match(kept[-1]):
        kept.pop()
    return tidy("\n".join(kept))


def _starts_header_block(lines: list[str], index: int) -> bool:
    """True at an Outlook reply header: a From: line with a Sent: line just after."""
    if index >= len(lines) or not _HEADER_BLOCK.match(lines[index]):
        return False
    return any(_SENT_LINE.match(line) for line in lines[index + 1 : index + 4])


def text_pages(text: str) -> int:
    """Pages a TXT document fills: 60 lines a page after wrapping at 80 columns."""
    pages = 0
    for sheet in clean_text(text).split("\f"):
        lines = sum(max(1, math.ceil(len(line.expandtabs(8)) / COLUMNS)) for line in sheet.split("\n"))
        pages += max(1, math.ceil(lines / LINES_PER_PAGE))
    return max(1, pages)


def parse_subject(subject: str) -> tuple[str, bool | None, Literal["FINE", "STANDARD"] | None]:
    """Split ``[nocover]``-style options off a subject: (clean subject, cover, resolution)."""
    cover: bool | None = None
    resolution: Literal["FINE", "STANDARD"] | None = None
    for match in _OPTION.finditer(subject):
        word = match.group(1).lower()
        if word in ("cover", "nocover"):
            cover = word == "cover"
        else:
            resolution = "FINE" if word == "fine" else "STANDARD"
    clean = " ".join(_OPTION.sub(" ", subject).split())
    return clean, cover, resolution

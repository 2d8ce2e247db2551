"""Walk a parsed mail's MIME tree: which parts are the text, which are attachments.

Consumes: an ``EmailMessage`` parsed with ``email.policy.default``.
Produces: ``MailContents``: the body text parts in order, and the attachment items in
the order they appear: ``Part`` (bytes to turn into pages), ``Embedded`` (an attached
mail, message/rfc822) or ``Skipped`` (a part that cannot be read, with the reason).

The rules, in the words of the issue they implement:
  * attachments, and inline parts that carry a filename, become pages; parts the HTML
    body references by ``cid:`` (or by Content-Location) are the body's pictures,
    typically signature logos, and are dropped without mention;
  * text/plain and text/html parts without a filename are the body; in
    multipart/alternative the plain text wins, but attachments are collected from
    every branch (Apple Mail puts them in the HTML branch), each once;
  * multipart/related: the root first; unnamed, unreferenced resources are dropped;
  * multipart/signed: the signed content only (the signature is not a document);
    multipart/encrypted and S/MIME envelopes are reported as unreadable;
  * message/partial and message/external-body are reported, never followed;
  * a multipart part whose boundary is missing or does not match its body (the parser
    then sees one block of text) is read as a mail client would show it: with the
    boundary its body does use (a ``--x`` line followed by part headers), else as text.
Header values the parser cannot read never raise: they count as absent. The walk is
bounded in depth and in the number of parts.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from dataclasses import dataclass, field
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Final

from gateway.core.document_errors import DocumentRefused
from gateway.core.mailparse import Span, base64_payload
from gateway.core.mailtext import decode_text

MAX_DEPTH: Final = 30
MAX_PARTS: Final = 2000
_SIGNATURES: Final = frozenset(
    {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-signature",
        "application/pgp-encrypted",
    }
)
_SMIME_ENVELOPES: Final = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_CID: Final = re.compile(r"""cid:([^\s"'<>()]+)""", re.IGNORECASE)
# A boundary line as a body uses it: "--" and up to 70 characters, then a part's header.
_DELIMITER: Final = re.compile(
    r"^--([0-9A-Za-z'()+_,\-./:=?]{1,70})[ \t]*\r?\n(?=[ \t]*content-[a-z-]+:)", re.IGNORECASE | re.MULTILINE
)
_URL_ATTR: Final = re.compile(r"""(?:src|background)\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    filename: str | None
    data: bytes
    charset: str | None
    declared: str
    span: Span | None = None  # where ``data`` lies in the raw mail, base64-encoded


@dataclass(frozen=True)
class Embedded:
    filename: str | None
    message: Message


@dataclass(frozen=True)
class Skipped:
    filename: str | None
    reason: str


Item = Part | Embedded | Skipped


@dataclass(frozen=True)
class BodyText:
    text: str
    is_html: bool


@dataclass
class MailContents:
    body: list[BodyText] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)


def walk_message(message: Message) -> MailContents:
    """The body texts and attachment items of ``message``, in order of appearance."""
    references = _html_references(message)
    return _Walker(references).walk(message, 0, in_related=False)


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # unreadable Content-Type: RFC 2045 says treat as octets
        return "application/octet-stream"


def header_text(part: Message, name: str) -> str:
    """A header as readable text ("" when absent); never raises on odd encodings.

    Raw 8-bit bytes (no RFC 2047) are read as UTF-8, else Windows-1252.
    """
    raw = _raw_header(part, name)
    if _has_surrogates(raw):
        return " ".join(_unsurrogate(raw).split())
    try:
        value = part.get(name)
        text = "" if value is None else str(value)
    except Exception:  # policy.default failed to parse it; decode the raw value
        try:
            text = str(make_header(decode_header(raw)))
        except Exception:
            text = raw
    return " ".join(_unsurrogate(text).split())


def _raw_header(part: Message, name: str) -> str:
    return next((str(v) for k, v in part.raw_items() if k.lower() == name.lower()), "")


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _unsurrogate(text: str) -> str:
    """Undo surrogate escapes of raw 8-bit header bytes: UTF-8, else Windows-1252."""
    if not _has_surrogates(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return decode_text(raw, None)


def filename_of(part: Message) -> str | None:
    """The decoded display name (RFC 2231 / RFC 2047, any charset), without any path."""
    try:
        name = part.get_filename()
    except Exception:  # an unreadable parameter counts as no name
        return None
    if not name:
        return None
    if "\ufffd" in name:  # raw 8-bit bytes that were not UTF-8: read them as Windows-1252
        name = _filename_from_raw(part) or name
    if "=?" in name:
        with contextlib.suppress(Exception):  # keep the name as written
            name = str(make_header(decode_header(name)))
    return clean_filename(name)


def _filename_from_raw(part: Message) -> str | None:
    probe = Message()
    for header in ("Content-Disposition", "Content-Type"):
        raw = _raw_header(part, header)
        if raw:
            probe[header] = _unsurrogate(raw)
    try:
        name = probe.get_filename()
    except Exception:  # the raw header is no better; keep what policy.default read
        return None
    return name if isinstance(name, str) else None


def clean_filename(name: str) -> str | None:
    """A display name without any path, control characters or runs of spaces; at most 120."""
    name = _unsurrogate(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join("".join(ch for ch in name if ch.isprintable()).split())
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[:110]}.{ext[:8]}" if dot and len(ext) <= 8 else name[:120]
    return name or None


def payload_bytes(part: Message) -> bytes:
    return payload_and_span(part)[0]


def payload_and_span(part: Message) -> tuple[bytes, Span | None]:
    """The decoded payload, and where it lies in the raw mail as clean base64 (or None)."""
    kept = base64_payload(part)  # an attachment still in the raw mail: decoded from there
    if kept is not None:
        return kept
    try:
        data = part.get_payload(decode=True)
    except Exception:  # undecodable transfer encoding: nothing usable
        return b"", None
    return (data if isinstance(data, bytes) else b""), None


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _subparts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _html_references(message: Message) -> frozenset[str]:
    """Every cid: and src= target in the mail's HTML parts, lower-cased."""
    found: set[str] = set()
    stack: list[tuple[Message, int]] = [(message, 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        part, depth = stack.pop()
        visited += 1
        if part.is_multipart():
            if depth < MAX_DEPTH:
                stack.extend((p, depth + 1) for p in _subparts(part))
        elif content_type(part) == "text/html":
            html = decode_text(payload_bytes(part), _charset(part))
            found.update(urllib.parse.unquote(m).strip("<>").lower() for m in _CID.findall(html))
            found.update(m.strip().lower() for m in _URL_ATTR.findall(html))
    return frozenset(found)


class _Walker:
    def __init__(self, references: frozenset[str]) -> None:
        self._references = references
        self._visited = 0

    def walk(self, part: Message, depth: int, *, in_related: bool) -> MailContents:
        found = MailContents()
        self._visited += 1
        if self._visited > MAX_PARTS:
            raise DocumentRefused(
                f"The mail has more than {MAX_PARTS} parts; send the documents in fewer mails."
            )
        ctype = content_type(part)
        if depth > MAX_DEPTH:
            found.items.append(Skipped(filename_of(part), "a part nested too deeply to read"))
        elif ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = _subparts(part)
            if inner:
                found.items.append(Embedded(filename_of(part), inner[0]))
        elif part.is_multipart():
            self._multipart(part, ctype, depth, found)
        elif ctype.startswith("multipart/"):
            self._broken_multipart(part, ctype, depth, found)
        else:
            self._leaf(part, ctype, found, in_related=in_related)
        return found

    def _broken_multipart(self, part: Message, ctype: str, depth: int, found: MailContents) -> None:
        """A multipart the parser could not split: split it with the boundary its body
        uses, else take its body as the text a mail client would show."""
        raw = payload_bytes(part)  # the body's bytes as they came (no transfer encoding)
        body = raw.decode("ascii", "replace")
        delimiter = _DELIMITER.search(body)
        if delimiter is not None and depth < MAX_DEPTH:
            boundary = delimiter.group(1)
            # Parsed the ordinary way: its parts must not come back as places in the raw
            # mail (mailparse's spans), since they lie in these rebuilt bytes.
            rebuilt = BytesParser(_class=EmailMessage, policy=email_policy.default).parsebytes(
                f'Content-Type: {ctype}; boundary="{boundary}"\r\n\r\n'.encode() + raw
            )
            if rebuilt.is_multipart():
                self._multipart(rebuilt, ctype, depth, found)
                return
        text = decode_text(raw, _charset(part)).strip()
        if text:
            start = text[:200].lstrip().lower()
            found.body.append(BodyText(text, start.startswith(("<!doctype html", "<html", "<body"))))
        else:
            found.items.append(Skipped(filename_of(part), "a damaged part of the mail"))

    def _multipart(self, part: Message, ctype: str, depth: int, found: MailContents) -> None:
        children = _subparts(part)
        if ctype == "multipart/alternative":
            self._alternative(children, depth, found)
        elif ctype == "multipart/related" and children:
            start = _strip_id(_param(part, "start"))
            root = next((c for c in children if start and _content_id(c) == start), children[0])
            self._merge(found, self.walk(root, depth + 1, in_related=False))
            for child in children:
                if child is not root:
                    self._merge(found, self.walk(child, depth + 1, in_related=True))
        elif ctype == "multipart/signed":
            if children:
                self._merge(found, self.walk(children[0], depth + 1, in_related=False))
        elif ctype == "multipart/encrypted":
            found.items.append(Skipped(filename_of(part), "an encrypted part, which cannot be read"))
        else:
            for child in children:
                self._merge(found, self.walk(child, depth + 1, in_related=False))

    def _alternative(self, children: list[Message], depth: int, found: MailContents) -> None:
        branches = [self.walk(child, depth + 1, in_related=False) for child in children]
        with_body = [b for b in branches if any(t.text.strip() for t in b.body)]
        plain = [b for b in with_body if not any(t.is_html for t in b.body)]
        chosen = plain[0] if plain else (with_body[-1] if with_body else None)
        if chosen is not None:
            found.body.extend(chosen.body)
        seen: set[object] = set()
        for branch in branches:
            for item in branch.items:
                key: object = item.data if isinstance(item, Part) else id(item)
                if key not in seen:
                    seen.add(key)
                    found.items.append(item)

    def _leaf(self, part: Message, ctype: str, found: MailContents, *, in_related: bool) -> None:
        if ctype in _SIGNATURES or self._referenced(part):
            return
        name = filename_of(part)
        disposition = _disposition(part)
        if ctype in _SMIME_ENVELOPES:
            found.items.append(Skipped(name, "an S/MIME encrypted or signed envelope, which cannot be read"))
        elif ctype == "message/partial":
            found.items.append(Skipped(name, "one piece of a message split into several parts"))
        elif ctype == "message/external-body":
            found.items.append(Skipped(name, "a link to content elsewhere, which is never fetched"))
        elif ctype.startswith("multipart/"):
            found.items.append(Skipped(name, "a damaged part of the mail"))
        elif ctype in ("text/plain", "text/html") and name is None and disposition != "attachment":
            text = decode_text(payload_bytes(part), _charset(part))
            found.body.append(BodyText(text, ctype == "text/html"))
        elif name is None and in_related and disposition != "attachment":
            return  # an unnamed resource of the HTML body that nothing references
        else:
            data, span = payload_and_span(part)
            found.items.append(Part(name, data, _charset(part), ctype, span))

    def _referenced(self, part: Message) -> bool:
        cid = _content_id(part)
        if cid and cid in self._references:
            return True
        location = header_text(part, "Content-Location").lower()
        return bool(location) and location in self._references

    @staticmethod
    def _merge(into: MailContents, found: MailContents) -> None:
        into.body.extend(found.body)
        into.items.extend(found.items)


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    return value if isinstance(value, str) else ""


def _content_id(part: Message) -> str:
    return _strip_id(header_text(part, "Content-ID"))


def _strip_id(value: str) -> str:
    return urllib.parse.unquote(value.strip().strip("<>").strip()).lower()

"""mailparse: the raw mail as ``email`` parses it with ``policy.default``, for less work.

Consumes: the raw bytes of one mail. Produces: the ``EmailMessage`` tree that
``BytesParser(policy=policy.default).parsebytes(raw)`` gives (same headers, payloads,
preamble, epilogue, defects, types), built in a way that costs a fraction of it:

  * **Base64 bodies are not fed line by line.** Before parsing, every run of at least
    8 lines made only of base64 characters (an attachment's body) is replaced by one
    token line of base64 characters. The feedparser takes the same decision for such
    a line as for each line of the run (never a header, a boundary, a blank line or a
    ``From`` line), so it builds the same tree; afterwards each token is replaced by
    its run. A run that is a part's whole payload stays a slice of the raw bytes
    until something reads that payload (``_ParsedMessage._payload``), so an attachment
    can be decoded straight from the raw mail (``base64_payload``) without its text
    ever being held beside it. If a token is not found where expected, the mail is
    parsed the ordinary way.
  * **Each header is parsed once per message.** ``policy.default`` parses a header
    value anew on every ``get`` (and makes a new header class each time); here the
    parsed header objects, which are immutable, are kept per mail (``_Policy``).

Never raises on a bad mail: ``parse`` falls back exactly as ``documents.parse_message``
always did (headers only, then an empty message).
"""

from __future__ import annotations

import binascii
import re
from email import policy as email_policy
from email.feedparser import FeedParser
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import Any, Final

# Lines of base64 characters ending in CRLF (or LF), at least 8 of them, each at a line start.
_RUN: Final = re.compile(rb"(?<=\n)(?:[A-Za-z0-9+/=]++\r?\n){8,}+")
_INDEX_DIGITS: Final = 6
_FEED_CHARS: Final = 8192  # as email.parser.Parser feeds its FeedParser
_MEMO_LIMIT: Final = 512  # parsed header values kept per mail


def parse(raw: bytes) -> EmailMessage:
    """``raw`` parsed as ``policy.default`` does; defects are tolerated, it never raises."""
    try:
        message = _parse_fast(raw)
    except Exception:  # e.g. RecursionError on absurd nesting: the ordinary way decides
        message = None
    return message if message is not None else _parse_plain(raw)


Span = tuple[bytes, int, int]  # (the raw mail, start, end): a clean base64 body within it


def base64_payload(part: Message) -> tuple[bytes, Span] | None:
    """The decoded payload of a base64 part still held as raw bytes, when clean, and
    where its base64 text lies in the raw mail (so it need not be stored twice).

    Clean is what ``get_payload(decode=True)`` decodes without a defect: base64
    characters only (the run was matched as such), a length that is a multiple of 4
    and at most two ``=`` at the very end. Otherwise None: ask ``get_payload``.
    """
    source = part.__dict__.get("_source") if isinstance(part, _ParsedMessage) else None
    if source is None:
        return None
    raw, start, end = source
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    pads = 0
    pad = raw.find(b"=", start, end)
    if pad >= 0:  # only "=" or "==" at the very end, line breaks aside
        tail = raw[pad:end] if end - pad <= 6 else b""
        pads = tail.count(b"=")
        if tail.replace(b"\r", b"").replace(b"\n", b"") not in (b"=", b"=="):
            return None
    try:
        data = binascii.a2b_base64(memoryview(raw)[start:end])  # skips the line breaks
    except binascii.Error:
        return None
    # The data characters were a whole number of quanta with the padding: 4n, 4n+3 and
    # "=", or 4n+2 and "==" give 3n, 3n+2 and 3n+1 bytes. Anything else was a defect.
    return (data, (raw, start, end)) if (len(data) + pads) % 3 == 0 else None


class _ParsedMessage(EmailMessage):
    """An EmailMessage whose payload may still be a slice of the raw mail.

    ``email.message`` keeps the payload in ``_payload``; here that is a property which
    turns a pending slice (``_source``) into the text the parser would have stored,
    the first time anything reads it.
    """

    _source: tuple[bytes, int, int] | None = None
    _text: Any = None

    @property
    def _payload(self) -> Any:
        source = self._source
        if source is not None:
            raw, start, end = source
            self._text = str(memoryview(raw)[start:end], "ascii")
            self._source = None
        return self._text

    @_payload.setter
    def _payload(self, value: Any) -> None:
        self._source = None
        self._text = value

    def is_multipart(self) -> bool:
        return self._source is None and super().is_multipart()  # a pending slice is text


class _Registry(HeaderRegistry):
    """policy.default's header registry, making each header class once per mail."""

    def __init__(self, like: HeaderRegistry) -> None:
        super().__init__(like.base_class, like.default_class, use_default_map=False)
        self.registry.update(like.registry)
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_made": {}}  # made classes cannot be pickled; made again


class _Policy(EmailPolicy):
    """policy.default, keeping each parsed header value (header objects are immutable)."""

    _parsed: dict[tuple[str, str], Any] | None = None

    def header_fetch_parse(self, name: str, value: str) -> Any:
        parsed = self._parsed
        if parsed is None or hasattr(value, "name"):
            return super().header_fetch_parse(name, value)
        key = (name, value)
        header = parsed.get(key)
        if header is None:
            header = super().header_fetch_parse(name, value)
            if len(parsed) < _MEMO_LIMIT:
                parsed[key] = header
        return header

    def clone(self, **kw: Any) -> Any:
        kw.setdefault("_parsed", {})  # a clone may parse differently: its own memory
        return super().clone(**kw)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_parsed": {}}  # a copy parses again


def _new_policy() -> _Policy:
    registry = email_policy.default.header_factory
    assert isinstance(registry, HeaderRegistry)
    settings: dict[str, Any] = {"header_factory": _Registry(registry), "_parsed": {}}
    return _Policy(**settings)


def _parse_plain(raw: bytes) -> EmailMessage:
    parser = BytesParser(_class=EmailMessage, policy=email_policy.default)
    try:
        return parser.parsebytes(raw)
    except Exception:  # keep the headers at least
        try:
            return parser.parsebytes(raw, headersonly=True)
        except Exception:
            return EmailMessage(policy=email_policy.default)


class _Runs:
    """The base64 runs of one mail, their tokens, and how to put them back."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.spans: list[tuple[int, int, int]] = []  # (start, end of text, end with line break)
        nonce = b"QfaxgwRunQ"
        while nonce in raw:
            nonce += b"Q"
        self.nonce = nonce.decode("ascii")
        self.found = 0
        self.stray = False  # the nonce where no token of ours was

    def compress(self) -> str | None:
        """The mail as text with each run replaced by its token line; None if no run."""
        raw = self.raw
        pieces: list[str] = []
        at = 0
        for match in _RUN.finditer(raw):
            start, stop = match.span()
            ending = 2 if raw[stop - 2 : stop] == b"\r\n" else 1
            pieces.append(raw[at:start].decode("ascii", "surrogateescape"))
            pieces.append(f"{self.nonce}{len(self.spans):0{_INDEX_DIGITS}d}")
            pieces.append("\r\n" if ending == 2 else "\n")
            self.spans.append((start, stop - ending, stop))
            at = stop
        if not self.spans:
            return None
        pieces.append(raw[at:].decode("ascii", "surrogateescape"))
        return "".join(pieces)

    def restore(self, message: Message) -> bool:
        """Put every run back; False if any token was not where it was expected."""
        stack = [message]
        while stack:
            part = stack.pop()
            if not isinstance(part, _ParsedMessage):
                return False
            payload = part._payload
            if isinstance(payload, list):
                stack.extend(p for p in payload if isinstance(p, Message))
            elif isinstance(payload, str) and self.nonce in payload:
                self._restore_payload(part, payload)
            for attribute in ("preamble", "epilogue"):
                text = getattr(part, attribute)
                if isinstance(text, str) and self.nonce in text:
                    setattr(part, attribute, self._expand(text))
        return not self.stray and self.found == len(self.spans)

    def _restore_payload(self, part: _ParsedMessage, payload: str) -> None:
        head, _, rest = payload.partition(self.nonce)
        index = rest[:_INDEX_DIGITS]
        if not head and index.isdigit() and int(index) < len(self.spans):
            start, end, stop = self.spans[int(index)]
            tail = rest[_INDEX_DIGITS:]
            if tail in ("", self.raw[end:stop].decode("ascii")):
                self.found += 1
                part._source = (self.raw, start, end + len(tail))  # read on first use
                return
        part._payload = self._expand(payload)

    def _expand(self, text: str) -> str:
        pieces = text.split(self.nonce)
        out = [pieces[0]]
        for piece in pieces[1:]:
            index = piece[:_INDEX_DIGITS]
            if not index.isdigit() or int(index) >= len(self.spans):
                self.stray = True  # not one of ours: restore() says so
                return text
            start, end, _ = self.spans[int(index)]
            out.append(self.raw[start:end].decode("ascii"))
            out.append(piece[_INDEX_DIGITS:])
            self.found += 1
        return "".join(out)


def _parse_fast(raw: bytes) -> EmailMessage | None:
    runs = _Runs(raw)
    text = runs.compress()
    parser = FeedParser(_ParsedMessage, policy=_new_policy())
    if text is None:
        text = raw.decode("ascii", "surrogateescape")
    for at in range(0, len(text), _FEED_CHARS):
        parser.feed(text[at : at + _FEED_CHARS])
    message = parser.close()
    assert isinstance(message, _ParsedMessage)
    if runs.spans and not runs.restore(message):
        return None
    return message

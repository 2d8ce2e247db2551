"""HTML made safe to render: nothing remote, no scripts, the quoted reply cut, a heading on top.

Consumes: an HTML document (a mail's HTML body, or an attached HTML file) and an optional
``Heading``. Produces: UTF-8 HTML bytes for the converter (LibreOffice renders it to
PDF with its layout: tables keep their columns), or None when the HTML has no visible
text once cleaned.

What is removed before rendering, so that rendering never fetches or reads anything:
  * scripts, frames, objects, embeds, forms' actions, ``<link>``, ``<base>``, ``<meta>``
    refreshes, and every ``src``, ``srcset``, ``href``, ``background``, ``poster``,
    ``data``, ``action`` or ``formaction`` that is not ``data:`` (so remote images,
    ``cid:`` logos, ``file:`` and relative paths are gone; an image drops out, its
    ``alt`` text stays);
  * ``url(...)`` and ``@import`` in style sheets and ``style`` attributes;
  * what mail clients add below the sender's words: quoted replies (``<blockquote>``,
    Gmail's ``gmail_quote``, Thunderbird's ``moz-cite-prefix``, Outlook's reply header
    ``divRplyFwdMsg`` and all after it) and signatures (``gmail_signature``,
    ``moz-signature``).
The parser is libxml2's (lxml), linear in the input, as lenient as browsers.
"""

from __future__ import annotations

import html
import re
from typing import Final

import lxml.html
from lxml import etree

from gateway.core.textpdf import Heading

_DROPPED_TAGS: Final = (
    "script",
    "noscript",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "link",
    "base",
    "meta",
    "template",
    "audio",
    "video",
    "source",
    "track",
    "svg",
    "math",
    "blockquote",
)
_URL_ATTRIBUTES: Final = frozenset(
    {
        "src",
        "srcset",
        "href",
        "background",
        "poster",
        "data",
        "action",
        "formaction",
        "lowsrc",
        "dynsrc",
        "longdesc",
        "usemap",
        "cite",
        "xlink:href",
    }
)
_QUOTE_CLASSES: Final = re.compile(
    r"\b(gmail_quote|gmail_signature|moz-cite-prefix|moz-signature|yahoo_quoted)\b"
)
_CSS_URL: Final = re.compile(r"url\s*\([^)]*\)|@import[^;]*;?|expression\s*\(", re.IGNORECASE)


def printable_html(source: str, heading: Heading | None = None) -> bytes | None:
    """``source`` cleaned for rendering (see above), headed by ``heading``; None if empty."""
    try:
        document = lxml.html.document_fromstring(source)
    except (etree.ParserError, ValueError):
        return None
    _clean(document)
    body = document.find("body")
    if body is None:
        body = etree.SubElement(document, "body")
    if not "".join(body.itertext()).strip() and body.find(".//img") is None and body.find(".//table") is None:
        return None
    head = document.find("head")
    if head is None:
        head = etree.Element("head")
        document.insert(0, head)
    head.insert(0, etree.fromstring('<meta charset="utf-8"/>'))
    if heading is not None:
        body.insert(0, _heading(heading))
    rendered: bytes = lxml.html.tostring(document, encoding="utf-8", doctype="<!DOCTYPE html>")
    return rendered


def _clean(document: lxml.html.HtmlElement) -> None:
    for element in list(document.iter(etree.Comment, etree.ProcessingInstruction)):
        _drop(element)
    for element in list(document.iter(*_DROPPED_TAGS)):
        _drop(element)
    reply = document.find('.//*[@id="divRplyFwdMsg"]')
    if reply is not None:  # Outlook: the reply header, then the quoted mail, to the end
        _drop_from(reply)
    for element in list(document.iter()):
        if not isinstance(element.tag, str):
            continue
        if _QUOTE_CLASSES.search(element.get("class", "")):
            _drop(element)
            continue
        for name in list(element.attrib):
            value = element.attrib[name]
            lowered = name.lower()
            remote = lowered in _URL_ATTRIBUTES and not value.strip().lower().startswith("data:image/")
            if lowered.startswith("on") or remote:  # event handlers, and anything to fetch
                del element.attrib[name]
            elif lowered == "style":
                element.attrib[name] = _CSS_URL.sub("", value)
        if element.tag == "img" and "src" not in element.attrib:
            alt = element.get("alt", "")
            _replace_with_text(element, alt)
        elif element.tag == "style" and element.text:
            element.text = _CSS_URL.sub("", element.text)


def _drop(element: etree._Element) -> None:
    """Remove ``element`` and what it holds, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    _replace_with_text(element, "")


def _replace_with_text(element: etree._Element, text: str) -> None:
    parent = element.getparent()
    if parent is None:
        return
    kept = text + (element.tail or "")
    previous = element.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + kept
    else:
        parent.text = (parent.text or "") + kept
    parent.remove(element)


def _drop_from(element: etree._Element) -> None:
    """Remove ``element`` and everything after it in the document."""
    node: etree._Element | None = element
    while node is not None and node.tag != "body":
        parent = node.getparent()
        for following in list(node.itersiblings()):
            if parent is not None:
                parent.remove(following)
        node.tail = None
        next_node = parent
        if parent is not None and node is element:
            parent.remove(node)
        node = next_node


def _heading(heading: Heading) -> etree._Element:
    rows = "".join(
        f'<tr><th align="left" style="padding-right:1em">{label}:</th><td>{html.escape(value)}</td></tr>'
        for label, value in (("From", heading.sender), ("Date", heading.date), ("Subject", heading.subject))
        if value
    )
    return lxml.html.fragment_fromstring(f'<div><table border="0">{rows}</table><hr/></div>')

"""Whatever arrives, the documents core answers with documents or a DocumentError.

Two sources of odd mail: CPython's own email test corpus (Lib/test/test_email/data,
shipped with the interpreter's ``test`` package), and random MIME trees from
hypothesis: random nesting, types, transfer encodings, names, headers and payloads,
including real PDFs, images, TIFFs, winmail.dat and zips, cut or intact.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import quopri
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.documents import (
    DocumentError,
    Extraction,
    ExtractionLimits,
    extract_documents,
    parse_message,
    partial_key,
    reassemble_partials,
)
from gateway.core.tnef import TnefError, unpack_tnef
from tests import corpus

LIMITS = ExtractionLimits(max_image_pixels=4_000_000, conversion_timeout_s=5)


def _cpython_email_data() -> list[Path]:
    try:
        import test.test_email as email_tests  # the interpreter's own test package
    except ImportError:
        return []
    return sorted((Path(email_tests.__file__).parent / "data").iterdir())


def _check(raw: bytes) -> Extraction | DocumentError:
    """Extract, allowing only DocumentError; a result must be a sound fax."""
    try:
        result = extract_documents(parse_message(raw), LIMITS)
    except DocumentError as err:
        assert str(err).strip()
        return err
    assert result.documents
    assert result.pages == sum(d.pages for d in result.documents) >= 1
    for document in result.documents:
        assert document.document_type in ("PDF", "TXT")
        assert document.filename and document.pages >= 1 and document.content
    return result


@pytest.mark.skipif(not _cpython_email_data(), reason="CPython's test package is not installed")
@pytest.mark.parametrize("path", _cpython_email_data(), ids=lambda p: p.name)
def test_every_message_of_cpythons_email_corpus(path: Path) -> None:
    started = time.monotonic()
    _check(path.read_bytes())
    assert time.monotonic() - started < 2


# ---- random MIME trees ------------------------------------------------------------

SAMPLES = [
    corpus.make_pdf(1, "s"),
    corpus.make_pdf(2, "s")[:300],
    corpus.make_image("PNG", (20, 10), "RGBA"),
    corpus.make_image("JPEG", (20, 10)),
    corpus.make_image("GIF", (20, 10), "P"),
    corpus.make_tiff(2, size=(32, 32)),
    corpus.make_tnef([("a.pdf", corpus.make_pdf(1, "t")), ("b.zip", corpus.make_zip())]),
    corpus.make_tnef([("a.pdf", b"%PDF-1.4 garbage")])[:90],
    corpus.make_zip(),
    b"Hello, fax.\r\n-- \r\nsig\r\n",
    b'<html><body><img src="cid:c1">Hi</body></html>',
    b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    b"",
    b"\x00\xff" * 20,
]
LEAF_TYPES = [
    "text/plain",
    "text/html",
    "application/pdf",
    "application/octet-stream",
    "image/png",
    "image/jpeg",
    "image/tiff",
    "application/ms-tnef",
    "application/zip",
    "text/calendar",
    "message/partial; id=x; number=1",
    "message/external-body",
    "application/pkcs7-signature",
    "application/pkcs7-mime",
    "multipart/mixed",
    "x/y",
    "text/plain; charset=x-unknown",
    "text/plain; charset=utf-16",
    "",
]
MULTIPART_TYPES = ["mixed", "alternative", "related", "signed", "encrypted", "digest", "report", "x-odd"]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus", None]

names = st.one_of(
    st.none(),
    st.sampled_from(["a.pdf", "winmail.dat", "Ü ber.pdf", "C:\\x\\y.tif", "", "x" * 300]),
    st.text(max_size=20),
)


@st.composite
def leaves(draw: st.DrawFn) -> bytes:
    payload = draw(st.one_of(st.sampled_from(SAMPLES), st.binary(max_size=120)))
    ctype = draw(st.sampled_from(LEAF_TYPES))
    encoding = draw(st.sampled_from(ENCODINGS))
    name = draw(names)
    headers = []
    if ctype:
        headers.append(f"Content-Type: {ctype}")
    if name is not None:
        style = draw(st.sampled_from(["quoted", "2231", "2231-latin", "2047", "bad-charset"]))
        if style == "quoted":
            headers.append(f'Content-Disposition: attachment; filename="{name}"')
        elif style == "2231":
            quoted = "".join(f"%{b:02X}" for b in name.encode("utf-8", "surrogatepass"))
            headers.append(f"Content-Disposition: inline; filename*=utf-8''{quoted}")
        elif style == "2231-latin":
            quoted = "".join(f"%{b:02X}" for b in name.encode("latin-1", "replace"))
            headers.append(f"Content-Disposition: attachment; filename*0*=iso-8859-1''{quoted}")
        elif style == "2047":
            encoded = base64.b64encode(name.encode("utf-8", "surrogatepass")).decode()
            headers.append(f'Content-Type: application/pdf; name="=?utf-8?B?{encoded}?="')
        else:
            headers.append(f"Content-Disposition: attachment; filename*=x-nope''%FF{name}")
    if draw(st.booleans()):
        headers.append(f"Content-ID: <{draw(st.sampled_from(['c1', 'c2', '', '<<']))}>")
    if encoding is not None:
        headers.append(f"Content-Transfer-Encoding: {encoding}")
    if encoding == "base64":
        body = base64.encodebytes(payload)
    elif encoding == "quoted-printable":
        body = quopri.encodestring(payload)
    elif encoding == "x-uuencode":
        body = b"begin 644 f\n" + binascii.b2a_uu(payload[:45]) + b"`\nend\n"
    else:
        body = payload
    header = "\r\n".join(headers).encode("utf-8", "surrogateescape")
    return header + b"\r\n\r\n" + body


def multiparts(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        subtype = draw(st.sampled_from(MULTIPART_TYPES))
        parts = draw(children)
        boundary = f"b{draw(st.integers(0, 10**6))}".encode()
        closed = draw(st.booleans()) or not parts
        body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
        if closed:
            body += b"--" + boundary + b"--\r\n"
        header = f'Content-Type: multipart/{subtype}; boundary="{boundary.decode()}"'
        if draw(st.booleans()):
            header += '; start="<c1>"'
        return header.encode() + b"\r\n\r\n" + body

    return build()


def embedded(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return inner.map(lambda part: b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + part)


trees = st.recursive(
    leaves(),
    lambda inner: st.one_of(multiparts(st.lists(inner, max_size=4)), embedded(inner)),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, subject=st.text(max_size=30))
def test_random_mime_trees_give_documents_or_a_document_error(tree: bytes, subject: str) -> None:
    head = f"From: {corpus.FROM}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n".encode(
        "utf-8", "surrogateescape"
    )
    started = time.monotonic()
    _check(head + tree)
    assert time.monotonic() - started < 5


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=400))
def test_random_bytes_parse_and_extract_without_surprises(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=100, deadline=None)
@given(
    cut=st.integers(6, 400), flips=st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=6)
)
def test_damaged_winmail_dat_raises_only_tnef_error(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SAMPLES[6][:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    with contextlib.suppress(TnefError):
        unpack_tnef(bytes(data))


@settings(max_examples=100, deadline=None)
@given(
    pieces=st.lists(st.one_of(st.sampled_from(corpus.message_partial()), st.binary(max_size=80)), max_size=4)
)
def test_random_partial_pieces_raise_only_document_error(pieces: list[bytes]) -> None:
    for piece in pieces:
        partial_key(parse_message(piece))
    with contextlib.suppress(DocumentError):
        _check(reassemble_partials(pieces))

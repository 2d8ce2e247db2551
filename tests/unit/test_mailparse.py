"""mailparse gives the very tree ``BytesParser(policy=policy.default)`` gives.

Compared part by part: raw headers, payload text, preamble, epilogue, defects, default
type, unix-from, the bytes the generator writes back, and every decoded payload (a
base64 attachment decoded straight from the raw mail included). Mails: CPython's email
test corpus, the corpus of client styles, and random mails with base64 runs in odd
places (preamble, epilogue, header block, nested mails, delivery reports, LF and CRLF).
"""

from __future__ import annotations

import base64
import copy
import pickle
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.mailparse import base64_payload, parse
from tests import corpus


def _plain(raw: bytes) -> EmailMessage:
    return BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)


def _defects(part: Message) -> list[tuple[str, str]]:
    return [(type(d).__name__, str(d)) for d in part.defects]


def _decoded(part: Message) -> Any:
    try:
        return part.get_payload(decode=True)
    except Exception as err:  # compared as such
        return type(err).__name__


def _assert_same(ours: Message, theirs: Message) -> None:
    assert isinstance(ours, EmailMessage)
    assert ours._headers == theirs._headers  # type: ignore[attr-defined]
    assert ours.get_unixfrom() == theirs.get_unixfrom()
    assert (ours.preamble, ours.epilogue) == (theirs.preamble, theirs.epilogue)
    assert ours.get_default_type() == theirs.get_default_type()
    if not ours.is_multipart():
        kept = base64_payload(ours)  # before anything reads the payload
        decoded = _decoded(theirs)
        if kept is not None:
            assert kept[0] == decoded
        assert _decoded(ours) == decoded
    assert _defects(ours) == _defects(theirs)
    if ours.is_multipart():
        mine, other = ours.get_payload(), theirs.get_payload()
        assert isinstance(mine, list) and isinstance(other, list)
        assert len(mine) == len(other)
        for a, b in zip(mine, other, strict=True):
            _assert_same(a, b)
    else:
        assert ours.get_payload() == theirs.get_payload()


def _assert_parses_alike(raw: bytes) -> None:
    ours, theirs = parse(raw), _plain(raw)
    _assert_same(ours, theirs)
    try:
        expected: Any = theirs.as_bytes()
    except Exception as err:
        expected = type(err).__name__
    try:
        written: Any = ours.as_bytes()
    except Exception as err:
        written = type(err).__name__
    assert written == expected


def _cpython_email_data() -> list[Path]:
    try:
        import test.test_email as email_tests  # the interpreter's own test package
    except ImportError:
        return []
    return sorted((Path(email_tests.__file__).parent / "data").iterdir())


@pytest.mark.skipif(not _cpython_email_data(), reason="CPython's test package is not installed")
@pytest.mark.parametrize("path", _cpython_email_data(), ids=lambda p: p.name)
def test_cpythons_email_corpus_parses_alike(path: Path) -> None:
    _assert_parses_alike(path.read_bytes())


@pytest.mark.parametrize("build", corpus.WHOLE_MAILS, ids=lambda build: build.__name__)
def test_client_styles_parse_alike(build: Any) -> None:
    _assert_parses_alike(build())


def test_an_attachment_is_decoded_from_the_raw_mail_and_its_text_is_read_on_demand() -> None:
    raw = corpus.thunderbird_two_pdfs()
    message = parse(raw)
    pdfs = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert pdfs and all(p.__dict__.get("_source") for p in pdfs)  # nothing read yet
    kept = [base64_payload(p) for p in pdfs]
    assert all(k is not None and k[1][0] is raw and raw[k[1][1] : k[1][2]].startswith(b"JVBER") for k in kept)
    assert [k[0] for k in kept if k is not None] == [
        p.get_payload(decode=True) for p in _plain(raw).walk() if p.get_content_type() == "application/pdf"
    ]
    assert isinstance(pdfs[0].get_payload(), str) and not pdfs[0].__dict__.get("_source")


def test_a_parsed_mail_pickles_and_copies_like_any_other() -> None:
    raw = corpus.gmail_nested()
    message = parse(raw)
    assert [p.get_content_type() for p in message.walk()]  # headers parsed and kept
    for copied in (pickle.loads(pickle.dumps(message)), copy.deepcopy(message)):
        assert isinstance(copied, EmailMessage)
        assert copied.as_bytes() == _plain(raw).as_bytes()
        assert copied["Subject"] == message["Subject"]


# ---- random mails with base64 runs in odd places ----------------------------------------

_B64 = st.integers(0, 1200).map(lambda n: base64.encodebytes(bytes(i * 7 % 256 for i in range(n))))
_LINES = st.sampled_from(
    [
        b"plain text line",
        b"",
        b"--",
        b"From someone",
        b"Header: value",
        b" continued",
        b"QUJD",
        b"QUJD==",
        b"=",
        b"====",
        b"QU=JD",
        b"\xe9t\xe9",
    ]
)


@st.composite
def _body(draw: st.DrawFn, depth: int = 0) -> bytes:
    kind = draw(
        st.sampled_from(
            ["b64", "lines", "multipart", "rfc822", "delivery"] if depth < 3 else ["b64", "lines"]
        )
    )
    if kind == "b64":
        data = draw(_B64)
        cut = draw(st.integers(0, 3))  # characters short of a whole quantum, or no final newline
        if draw(st.booleans()) and len(data) > cut + 1:
            data = data[: len(data) - 1 - cut] + b"\n"
        elif cut:
            data = data[: len(data) - cut]
        odd = draw(st.sampled_from([b"", b"QUJD=\n", b"QU*D\n", b"==\n", b"=\n=\n", b"QUI=\n"]))
        return data + odd
    if kind == "lines":
        return b"\n".join(draw(st.lists(_LINES, max_size=6))) + draw(st.sampled_from([b"\n", b""]))
    if kind == "rfc822":
        return b"Subject: inner\nContent-Type: " + draw(_ctype) + b"\n\n" + draw(_body(depth + 1))
    if kind == "delivery":
        return b"Reporting-MTA: dns; x\n\n" + draw(_B64) + b"\nAction: failed\n"
    boundary = b"b" + str(depth).encode()
    parts = draw(st.lists(_part(depth + 1), min_size=0, max_size=3))
    out = draw(st.sampled_from([b"", b"preamble\n"])) + draw(st.sampled_from([b"", b"" + b"QUJD\n" * 9]))
    for part in parts:
        out += b"--" + boundary + b"\n" + part + b"\n"
    if draw(st.booleans()):
        out += b"--" + boundary + b"--\n"
    return out + draw(st.sampled_from([b"", b"epilogue\n", b"QUJDREVG\n" * 10, b"\n" + b"QUJD\n" * 8]))


_ctype = st.sampled_from(
    [
        b"text/plain",
        b"application/pdf",
        b"message/rfc822",
        b"message/delivery-status",
        b"multipart/mixed; boundary=b1",
    ]
)


@st.composite
def _part(draw: st.DrawFn, depth: int) -> bytes:
    if draw(st.booleans()):  # the usual attachment
        return b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + draw(_body(3))
    headers = b"Content-Type: " + draw(_ctype).replace(b"b1", b"b" + str(depth).encode()) + b"\n"
    if draw(st.booleans()):
        headers += (
            b"Content-Transfer-Encoding: " + draw(st.sampled_from([b"base64", b"7bit", b"BASE64"])) + b"\n"
        )
    separator = draw(st.sampled_from([b"\n", b""]))  # no blank line: the body starts at once
    return headers + separator + draw(_body(depth))


@settings(max_examples=300, deadline=None)
@given(
    top=st.sampled_from(
        [b"multipart/mixed; boundary=b0", b"application/pdf", b"message/rfc822", b"text/plain"]
    ),
    body=_body(),
    crlf=st.booleans(),
    cte=st.booleans(),
)
def test_random_mails_parse_alike(top: bytes, body: bytes, crlf: bool, cte: bool) -> None:
    head = b"From: a@example.com\nSubject: x\nContent-Type: " + top + b"\n"
    if cte:
        head += b"Content-Transfer-Encoding: base64\n"
    raw = head + b"\n" + body
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    _assert_parses_alike(raw)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(400, 1500),
    damage=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from([b"", b"=", b"==", b"*", b"\n", b" "])), max_size=3
    ),
    tail=st.sampled_from([b"", b"=", b"==", b"===", b"\n=", b"=\n=", b"A", b"AB", b"ABC"]),
    crlf=st.booleans(),
    close=st.booleans(),
)
def test_base64_attachments_decode_alike(
    size: int, damage: list[tuple[int, bytes]], tail: bytes, crlf: bool, close: bool
) -> None:
    text = bytearray(base64.encodebytes(bytes(i * 13 % 256 for i in range(size))))
    for at, what in damage:  # replace one character
        at %= len(text)
        text[at : at + 1] = what
    body = bytes(text).rstrip(b"\n") + tail + b"\n"
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"
        b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + body
    )
    raw += b"--x--\n" if close else b""
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    _assert_parses_alike(raw)

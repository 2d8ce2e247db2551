"""The DATA rules over bytes alone (``gateway.core.smtp_data``), no sockets: blocks cut
as a stream reader cuts them (at every ``.CRLF``, and anywhere a search gives up) give
what RFC 5321's DATA gives a line at a time."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.smtp_data import TOO_MUCH, MailData


def _model(stream: bytes, limit: int) -> bytes | str | None:
    lines, size, pos = [], 0, 0
    while True:
        crlf = stream.find(b"\r\n", pos)
        if crlf < 0:
            return None
        line, pos = stream[pos : crlf + 2], crlf + 2
        if line == b".\r\n":
            break
        size += len(line)
        lines.append(line[1:] if line.startswith(b".") else line)
    if limit and size > limit:
        return TOO_MUCH
    return b"".join(lines)


def _blocks(stream: bytes, cuts: list[int]) -> list[bytes]:
    """Cut after every ``.CRLF`` (where ``readuntil`` stops) and at the extra cuts, never
    inside a ``.CRLF`` (``readuntil`` gives up before a separator that may be coming)."""
    points = {0, len(stream)} | {c % (len(stream) + 1) for c in cuts}
    at = stream.find(b".\r\n")
    while at >= 0:
        points -= {at + 1, at + 2}
        points.add(at + 3)
        at = stream.find(b".\r\n", at + 1)
    ordered = sorted(points)
    return [stream[a:b] for a, b in itertools.pairwise(ordered) if b > a]


def _read(stream: bytes, cuts: list[int], limit: int) -> bytes | str | None:
    data = MailData(limit)
    for block in _blocks(stream, cuts):
        if data.feed(block):
            return data.result()
    return None


_LINES = st.lists(
    st.one_of(
        st.sampled_from([b"", b".", b"..", b".x", b"x.", b"\r", b"\n", b"\r.\r", b"\n.\n", b"a\rb\nc"]),
        st.binary(max_size=20).map(lambda b: b.replace(b"\r\n", b"")),
        st.sampled_from([998, 999, 5000]).map(lambda n: b"." + b"z" * n),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=_LINES,
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    limit=st.sampled_from([0, 30, 200, 3000]),
)
def test_blocks_cut_anywhere_give_what_the_line_by_line_rules_give(
    lines: list[bytes], cuts: list[int], limit: int
) -> None:
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\nQUIT\r\n"
    assert _read(stream, cuts, limit) == _model(stream, limit)


def test_the_mail_ends_only_at_crlf_dot_crlf_and_dots_are_unstuffed() -> None:
    data = MailData(0)
    assert not data.feed(b"a\n.\r\n")  # a bare LF before the dot is text
    assert not data.feed(b"..b\r")
    assert not data.feed(b"\n")  # the CR held back, then its LF
    assert data.feed(b".\r\n")
    assert data.result() == b"a\n.\r\n.b\r\n"


def test_an_empty_mail_and_the_size_limit() -> None:
    empty = MailData(0)
    assert empty.feed(b".\r\n") and empty.result() == b""
    big = MailData(10)
    assert not big.feed(b"0123456789\r\n")
    assert big.out is None  # dropped at once; the rest is drained
    assert big.feed(b"more\r\n.\r\n") and big.result() == TOO_MUCH

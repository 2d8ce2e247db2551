"""DATA read in blocks (``read_data``) says exactly what aiosmtpd's own line loop says,
except that lines of any length are taken.

Both read the same bytes, arriving in the same pieces, from a StreamReader with
aiosmtpd's limit; the reference is aiosmtpd 1.4.6's ``SMTP.smtp_DATA`` itself for
mails whose lines fit RFC 5321's 998 octets, and a plain line-by-line model of the same
rules (dot-unstuffing, the size limit) for any mail. They must agree on the mail
(dot-unstuffed), the refusal (too much data) and on what is left unread after
``CRLF . CRLF`` (the next command).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp.server import read_data


class _Writer:
    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.replies.append(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class _Keep:
    def __init__(self) -> None:
        self.content: bytes | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.content = envelope.original_content
        return "250 OK"


async def _feed(reader: asyncio.StreamReader, pieces: list[bytes]) -> None:
    for piece in pieces:
        reader.feed_data(piece)
        for _ in range(3):
            await asyncio.sleep(0)
    reader.feed_eof()


async def _aiosmtpd(pieces: list[bytes], limit: int) -> tuple[bytes | str, bytes]:
    loop = asyncio.get_running_loop()
    keep = _Keep()
    smtp: Any = SMTP(keep, data_size_limit=limit, hostname="test", loop=loop)
    reader = asyncio.StreamReader(limit=SMTP.line_length_limit, loop=loop)
    writer = _Writer()
    smtp._reader, smtp._writer, smtp.transport = reader, writer, object()
    smtp.session = Session(loop)
    smtp.session.host_name = "client"
    smtp.envelope = Envelope()
    smtp.envelope.rcpt_tos = ["fax@fax.local"]
    feeding = asyncio.create_task(_feed(reader, pieces))
    await smtp.smtp_DATA("")
    await feeding
    rest = await reader.read()
    replies = [r.decode().rstrip("\r\n") for r in writer.replies]
    assert replies[0].startswith("354 ")
    outcome = keep.content if replies[-1] == "250 OK" else replies[-1]
    assert outcome is not None
    return outcome, rest


async def _blocks(pieces: list[bytes], limit: int) -> tuple[bytes | str | None, bytes]:
    reader = asyncio.StreamReader(limit=SMTP.line_length_limit)
    feeding = asyncio.create_task(_feed(reader, pieces))
    outcome = await read_data(reader, limit)
    await feeding
    return outcome, await reader.read()


_SHORT = st.one_of(
    st.sampled_from([b"", b".", b"..", b".x", b"x.", b"\r", b"\n", b"\r.\r", b"\n.\n", b"a\rb\nc"]),
    st.binary(max_size=20).map(lambda b: b.replace(b"\r\n", b"")),
    st.sampled_from([997, 998]).map(lambda n: b"y" * n),
    st.sampled_from([996, 997]).map(lambda n: b"." + b"z" * n),
    st.sampled_from([996, 997]).map(lambda n: b"w" * n + b"\r"),
)
_LONG = st.one_of(
    st.sampled_from([999, 1000, 1001, 1002, 1003, 1500, 5000, 70_000]).map(lambda n: b"y" * n),
    st.sampled_from([998, 999, 1000, 1001, 1002, 5000]).map(lambda n: b"." + b"z" * n),
    st.sampled_from([998, 999, 1000, 1001, 4999]).map(lambda n: b"w" * n + b"\r"),
    st.sampled_from([1000, 3000]).map(lambda n: (b"ab\r.\n" * n)[:n]),
)


def _model(stream: bytes, limit: int) -> tuple[bytes | str | None, bytes]:
    """RFC 5321's DATA, a line at a time: what read_data must give for any line length."""
    lines, size, pos = [], 0, 0
    while True:
        crlf = stream.find(b"\r\n", pos)
        if crlf < 0:
            return None, b""
        line, pos = stream[pos : crlf + 2], crlf + 2
        if line == b".\r\n":
            break
        size += len(line)
        lines.append(line[1:] if line.startswith(b".") else line)
    if limit and size > limit:
        return "552 Error: Too much mail data", stream[pos:]
    return b"".join(lines), stream[pos:]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


_TAILS = st.sampled_from([b"", b"QUIT\r\n", b"MAIL FROM:<a@b>\r\n.\r\n"])
_CUTS = st.lists(st.integers(0, 100_000), max_size=12)
_LIMITS = st.sampled_from([0, 30, 200, 1500, 3000, 50_000, 200_000])


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_SHORT, max_size=30), tail=_TAILS, cuts=_CUTS, limit=_LIMITS)
def test_block_reading_agrees_with_aiosmtpd(
    lines: list[bytes], tail: bytes, cuts: list[int], limit: int
) -> None:
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\n" + tail
    pieces = _split(stream, cuts)

    async def both() -> None:
        ours = await _blocks(pieces, limit)
        assert ours == await _aiosmtpd(pieces, limit)
        assert ours == _model(stream, limit)

    asyncio.run(both())


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(_SHORT, _LONG), max_size=20), tail=_TAILS, cuts=_CUTS, limit=_LIMITS)
def test_lines_of_any_length_are_taken_and_only_the_size_is_bounded(
    lines: list[bytes], tail: bytes, cuts: list[int], limit: int
) -> None:
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\n" + tail
    pieces = _split(stream, cuts)

    async def ours() -> tuple[bytes | str | None, bytes]:
        return await _blocks(pieces, limit)

    assert asyncio.run(ours()) == _model(stream, limit)


def test_a_mail_of_one_line_of_megabytes_is_read_whole_and_bounded() -> None:
    body = b"Subject: scan\r\n\r\n" + b"QUJD" * 2_500_000 + b"\r\n"  # 10 MB of base64, one line
    stream = body + b".\r\nQUIT\r\n"
    pieces = [stream[i : i + 65_536] for i in range(0, len(stream), 65_536)]

    async def run(limit: int) -> tuple[bytes | str | None, bytes]:
        return await _blocks(pieces, limit)

    assert asyncio.run(run(20_000_000)) == (body, b"QUIT\r\n")
    assert asyncio.run(run(5_000_000)) == ("552 Error: Too much mail data", b"QUIT\r\n")


def test_a_big_mail_in_big_pieces_agrees_with_aiosmtpd() -> None:
    body = b"".join(
        b"%05d" % n + b"x.y" * 20 + b"\r\n" + (b".dot\r\n" if n % 997 == 0 else b"") for n in range(20_000)
    )
    stream = body + b".\r\nQUIT\r\n"
    pieces = [stream[i : i + 65_536] for i in range(0, len(stream), 65_536)]

    async def both() -> None:
        ours = await _blocks(pieces, 50_000_000)
        assert ours == await _aiosmtpd(pieces, 50_000_000)
        too_much = await _blocks(pieces, 1_000_000)
        assert too_much == await _aiosmtpd(pieces, 1_000_000)
        assert too_much == ("552 Error: Too much mail data", b"QUIT\r\n")

    asyncio.run(both())


def test_the_stream_ending_before_the_dot_line_is_no_mail() -> None:
    async def run() -> bytes | str | None:
        reader = asyncio.StreamReader(limit=SMTP.line_length_limit)
        reader.feed_data(b"Subject: cut\r\n\r\nhalf a mail\r\n")
        reader.feed_eof()
        return await read_data(reader, 0)

    assert asyncio.run(run()) is None

"""One mail's DATA octets, read in blocks: the end, dot-unstuffing and the size limit.

Pure: blocks of bytes in (as a stream reader hands them, cut anywhere), out the mail
dot-unstuffed, or the refusal once the whole mail is in. No sockets: the SMTP server's
``read_data`` reads the blocks (up to and including each ``.CRLF``) and feeds them here.

The rules are aiosmtpd 1.4.6's line loop byte for byte, but one: lines may be of any
length. RFC 5321 asks for at most 998 octets, but scanners and scripts send unwrapped
base64 and HTML, and Postfix takes them; only the whole mail is bounded.

- The mail ends only at ``CRLF . CRLF`` (a bare LF or CR around the dot is text); DATA
  starts at a line start, so a first line of ``.`` ends an empty mail.
- A leading dot is removed from every line (RFC 5321 4.5.2).
- Every octet before the final dot line counts toward ``size_limit`` (0: none); once
  over it, what was kept is dropped at once and the rest is only drained, and the result
  is aiosmtpd's ``552 Error: Too much mail data`` (the server words it as ``552 5.3.4``).
"""

from __future__ import annotations

import io
from typing import Final

DOT_LINE: Final = b".\r\n"
TOO_MUCH: Final = "552 Error: Too much mail data"


class MailData:
    """The DATA octets so far (without the final dot line), unstuffed into one buffer.

    ``feed`` each block as it comes; it says when the block ended the mail, then
    ``result()`` is the mail or the refusal. A block that ends the mail ends with
    ``.CRLF``; a block may also be cut anywhere, in the middle of a line too, but not
    inside a ``.CRLF`` (a stream reader's ``readuntil`` gives up before one that may be
    coming).
    ``line_start`` says whether the next octet starts a line (where a transparent dot is
    removed); a CR at the end of a block is held back until the next one says whether it
    begins a CRLF.
    """

    def __init__(self, size_limit: int | None) -> None:
        self.limit = size_limit or 0
        self.size = 0
        self.problem: str | None = None
        self.line_start = True
        self.held_cr = False
        self.before = b"\r\n"  # the two octets before the next block: DATA starts at a line start
        self.out: io.BytesIO | None = io.BytesIO()  # grows in place; getvalue() does not copy

    def feed(self, block: bytes) -> bool:
        """Take one block; True when it ended the mail (its ``CRLF . CRLF``)."""
        if block.endswith(DOT_LINE) and (self.before + block[-5:])[-5:-3] == b"\r\n":
            self._take(block[:-3])
            return True
        self._take(block)
        self.before = (self.before + block[-2:])[-2:]
        return False

    def _take(self, block: bytes) -> None:
        if self.problem is not None:
            return
        self.size += len(block)
        if self.limit and self.size > self.limit:
            self.problem = TOO_MUCH
            self.out = None  # drop what was kept at once, as aiosmtpd does
            return
        if self.held_cr:
            block = b"\r" + block
            self.held_cr = False
        end = len(block)
        if block.endswith(b"\r"):
            end -= 1
            self.held_cr = True
        if end == 0:
            return
        start = 1 if self.line_start and block.startswith(b".") else 0
        assert self.out is not None
        if block.find(b"\r\n.", start, end) >= 0:
            self.out.write(block[start:end].replace(b"\r\n.", b"\r\n"))
        else:
            self.out.write(memoryview(block)[start:end])
        self.line_start = block.endswith(b"\r\n", 0, end)

    def result(self) -> bytes | str:
        """The mail, dot-unstuffed, or the refusal (over the size limit)."""
        if self.problem is not None:
            return self.problem
        assert self.out is not None
        if self.held_cr:  # cannot happen after CRLF . CRLF; kept as sent all the same
            self.out.write(b"\r")
        content = self.out.getvalue()
        self.out = None
        return content

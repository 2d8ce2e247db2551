"""Log lines: client values escaped in the message, its arguments, the fields and tracebacks."""

from __future__ import annotations

import logging
import sys

from gateway.logs import EventFormatter, escape, event

FORMAT = "%(levelname)s %(name)s: %(message)s"


def _record(msg: str, *args: object, exc: bool = False, **fields: object) -> logging.LogRecord:
    exc_info = sys.exc_info() if exc else None
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.__dict__.update(event("refused", **fields))
    return record


def test_escape_keeps_text_of_any_script_and_escapes_what_is_not_printable() -> None:
    assert escape("Jürgen Müller 山田 <a@b.example>") == "Jürgen Müller 山田 <a@b.example>"
    assert escape("a\r\nb\tc\x1b[31m") == "a\\x0d\\x0ab\\x09c\\x1b[31m"
    assert (
        escape("x\u2028y\u2029z\x85\u202e\u200b\U000e0041")
        == "x\\u2028y\\u2029z\\x85\\u202e\\u200b\\U000e0041"
    )


def test_message_arguments_and_fields_are_escaped_and_quoted() -> None:
    formatter = EventFormatter(FORMAT)
    line = formatter.format(
        _record("refused: %s", "550 ev\r\nil", user='a "b"\nINFO fake', helo="h\x1bx", peer="1.2.3.4")
    )
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == (
        'WARNING gateway.test: refused: 550 ev\\x0d\\x0ail action=refused user="a \\"b\\"\\x0aINFO fake" '
        "helo=h\\x1bx peer=1.2.3.4"
    )


def test_a_traceback_cannot_start_a_line_of_its_own() -> None:
    formatter = EventFormatter(FORMAT)
    try:
        raise ValueError("bad header\nWARNING gateway.smtp: forged line")
    except ValueError:
        line = formatter.format(_record("SMTP session failed", exc=True, peer="1.2.3.4"))
    first, *rest = line.split("\n")
    assert first == "WARNING gateway.test: SMTP session failed action=refused peer=1.2.3.4"
    assert rest and all(part.startswith("  | ") for part in rest)
    assert "  | WARNING gateway.smtp: forged line" in rest


def test_the_record_is_left_as_it_was_for_other_handlers() -> None:
    record = _record("refused: %s", "a\nb")
    EventFormatter(FORMAT).format(record)
    assert record.getMessage() == "refused: a\nb"

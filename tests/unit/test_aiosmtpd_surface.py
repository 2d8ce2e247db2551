"""The parts of aiosmtpd that ``gateway.smtp.server.FaxSMTP`` (and the AUTH mechanisms)
override or call, private ones included, exactly as the pinned aiosmtpd has them.

pyproject.toml pins aiosmtpd to ``>=1.4.6,<1.5``. Before widening the pin, run this:
a member that is gone, renamed or called differently fails here, by name, instead of
as a session that hangs or a refusal that goes out in aiosmtpd's bare words.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiosmtpd
import aiosmtpd.smtp as smtp_module
import pytest
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from gateway.smtp.server import _REWRITES, MIN_AIOSMTPD, FaxSMTP


def _params(function: Any) -> list[str]:
    return [
        f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
        for p in inspect.signature(function).parameters.values()
    ]


def test_the_installed_aiosmtpd_is_within_the_pinned_range() -> None:
    version = tuple(int(p) for p in aiosmtpd.__version__.split(".")[:3])
    assert MIN_AIOSMTPD <= version < (1, 5), aiosmtpd.__version__


# SMTP method -> its parameters, as FaxSMTP overrides or calls it
_METHODS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "error"],
    "_timeout_cb": ["self"],
    "_reset_timeout": ["self", "duration=None"],
    "_set_post_data_state": ["self"],
    "_call_handler_hook": ["self", "command", "args"],
    "_cb_client_connected": ["self", "reader", "writer"],
    "push": ["self", "status"],
    "smtp_DATA": ["self", "arg"],
    "check_helo_needed": ["self", "helo='HELO'"],
    "check_auth_needed": ["self", "caller_method"],
    "challenge_auth": ["self", "challenge", "encode_to_b64=True", "log_client_response=False"],
}


@pytest.mark.parametrize("name", sorted(_METHODS))
def test_each_smtp_method_the_gateway_overrides_or_calls_keeps_its_signature(name: str) -> None:
    method = getattr(SMTP, name, None)
    assert method is not None, f"aiosmtpd's SMTP has no {name} any more"
    assert _params(method) == _METHODS[name], f"SMTP.{name} changed its signature"


def test_the_overrides_are_coroutines_where_aiosmtpd_awaits_them() -> None:
    for name in ("push", "smtp_DATA", "check_helo_needed", "check_auth_needed", "_call_handler_hook"):
        assert inspect.iscoroutinefunction(getattr(SMTP, name)), name
        if name in FaxSMTP.__dict__:
            assert inspect.iscoroutinefunction(getattr(FaxSMTP, name)), name
    for name in ("_timeout_cb", "connection_made", "connection_lost"):
        assert not inspect.iscoroutinefunction(getattr(SMTP, name)), name


def test_the_keywords_faxsmtp_passes_to_smtp_are_still_taken() -> None:
    taken = inspect.signature(SMTP.__init__).parameters
    for keyword in (
        "data_size_limit",
        "hostname",
        "ident",
        "timeout",
        "tls_context",
        "auth_require_tls",
        "command_call_limit",
        "enable_SMTPUTF8",
        "loop",
    ):
        assert keyword in taken, keyword
        assert taken[keyword].kind is inspect.Parameter.KEYWORD_ONLY, keyword


async def test_the_instance_attributes_the_gateway_reads_are_set_by_smtp() -> None:
    server = SMTP(object(), loop=asyncio.get_running_loop())
    for name in (
        "_original_transport",
        "_tls_protocol",
        "_timeout_handle",
        "_decode_data",
        "_handle_hooks",
        "enable_SMTPUTF8",
        "require_starttls",
        "event_handler",
        "data_size_limit",
        "session",
        "envelope",
        "transport",
    ):
        assert hasattr(server, name), f"aiosmtpd's SMTP no longer sets {name}"
    assert isinstance(server._handle_hooks, dict)
    assert SMTP.line_length_limit == 1001  # read_data's searches are capped by it
    connected = inspect.getsource(SMTP._cb_client_connected)
    assert "self._reader = reader" in connected and "self._writer = writer" in connected


def test_faxsmtp_data_still_mirrors_aiosmtpd_smtp_data() -> None:
    """FaxSMTP._data is aiosmtpd's smtp_DATA with the mail read in blocks: its steps must
    still be aiosmtpd's."""
    source = inspect.getsource(SMTP.smtp_DATA)
    for step in (
        "await self.check_helo_needed()",
        'await self.check_auth_needed("DATA")',
        "'503 Error: need RCPT command'",
        "'501 Syntax: DATA'",
        "self.envelope.original_content",
        '"DATA" in self._handle_hooks',
        "await self._call_handler_hook('DATA')",
        "self._set_post_data_state()",
    ):
        assert step in source, f"smtp_DATA changed: {step}"


def test_the_refusals_the_server_rewords_are_still_aiosmtpd_s_words() -> None:
    source = inspect.getsource(smtp_module)
    for prefix in _REWRITES:
        words = prefix.split(" ", 1)[1]
        assert words in source, f"aiosmtpd no longer says {prefix!r}"


def test_the_session_envelope_and_auth_fields_the_handler_uses() -> None:
    session = Session(asyncio.new_event_loop())
    try:
        for name in ("peer", "host_name", "auth_data", "authenticated"):
            assert hasattr(session, name), name
    finally:
        session.loop.close()
    envelope = Envelope()
    for name in ("mail_from", "mail_options", "rcpt_tos", "rcpt_options", "content", "original_content"):
        assert hasattr(envelope, name), name
    result = AuthResult(success=False, handled=False, message="535", auth_data=None)
    assert (result.success, result.handled, result.message) == (False, False, "535")
    assert MISSING is smtp_module.MISSING

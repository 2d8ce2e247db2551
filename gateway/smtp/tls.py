"""The SMTP server's TLS context: certificate and key from files, a minimum version.

Used for STARTTLS on the main listener and for the implicit-TLS listener
(``smtp.implicit_tls_listen``, port 465 style). Settings: ``smtp.tls_cert_file``
(PEM chain; may hold the key too), ``smtp.tls_key_file``, ``smtp.tls_min_version``
("1.2" by default). Lowering it to "1.0" or "1.1" is for old scanners only: it also
lowers OpenSSL's security level so their old cipher suites can still be agreed.

A certificate that cannot be loaded is a ``ConfigError`` naming the file, never a
traceback; the key's contents are never shown.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

from gateway.settings import ConfigError, SmtpSettings

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def server_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    """The context for STARTTLS and implicit TLS, or None when no certificate is configured."""
    if not settings.tls_cert_file:
        return None
    for key, path in (("tls_cert_file", settings.tls_cert_file), ("tls_key_file", settings.tls_key_file)):
        if path and not Path(path).is_file():
            raise ConfigError(f"smtp.{key}: {path} does not exist or is not a file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated; an administrator chose them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = _VERSIONS[settings.tls_min_version]
    if settings.tls_min_version in ("1.0", "1.1"):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None, password=_no_password)
    except _EncryptedKey:
        raise ConfigError(
            f"smtp.tls_key_file: the private key of {settings.tls_key_file or settings.tls_cert_file} is "
            "encrypted; store it without a passphrase (readable by the gateway's user only)"
        ) from None
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or type(err).__name__
        raise ConfigError(
            f"smtp.tls_cert_file / smtp.tls_key_file: cannot load the certificate "
            f"{settings.tls_cert_file} with its key ({reason}); both must be PEM files and match"
        ) from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    """An encrypted key cannot be used unattended: fail instead of prompting on the terminal."""
    raise _EncryptedKey


def describe(settings: SmtpSettings, users: int) -> tuple[int, list[str]]:
    """For ``fax-gateway check``: (exit status, sentences) about TLS and who can sign in."""
    try:
        context = server_context(settings)
    except ConfigError as err:
        return 2, [f"smtp: {err}"]
    if context is None:
        line = "smtp: no TLS certificate, so no STARTTLS and no SMTP AUTH: only trusted_networks can fax"
        if users:
            line += f" (the {users} [[users]] cannot sign in)"
        return 0, [line]
    lines = [
        f"smtp: STARTTLS offered (TLS {settings.tls_min_version} or later); {users} [[users]] may sign in"
    ]
    if settings.implicit_tls_listen:
        lines.append(f"smtp: implicit TLS on {settings.implicit_tls_listen}")
    if settings.require_tls:
        lines.append("smtp: clients outside trusted_networks must use STARTTLS")
    return 0, lines

"""Mail in: the SMTP server (the only aiosmtpd user), its handler, TLS and AUTH, sending
limits, and the reader processes that turn a mail into documents.

Imported by ``gateway.app`` (and ``check``, for ``smtp.tls``); never by another stage.
What it accepts goes to the store; it calls no worker and no other outside system.
"""

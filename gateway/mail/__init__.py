"""Mail out: the SMTP relay (the only aiosmtplib client) and the Maildir sink.

Imported by the workers that send mail (report, deliver, partials), by ``gateway.app``
and by ``check`` (``RelaySender.probe``); it imports only settings and the core.
"""

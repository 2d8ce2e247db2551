"""The HTTP side of ``serve``: ``/healthz``, ``/readyz``, ``/metrics``, eFax's webhook.

Imported only by ``gateway.app``, which hands it an ``HttpContext`` (context.py): the
store and a few callables. It imports no worker, no SMTP module and not the app.
"""

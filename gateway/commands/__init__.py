"""The one-shot commands besides ``serve``: ``check``, ``queue``, ``send``, ``hash-password``.

Imported only by ``gateway.cli``. They use the packages they work with (store, efax,
mail, ``smtp.tls`` to describe the listener), never ``gateway.app``.
"""

"""The workers: one module per job kind (dispatch, track, report, receive, deliver,
partials, purge), sharing the claim-handle-repeat loop of ``base``.

Imported only by ``gateway.app``. They talk to each other through the store, never by
import; each calls the core and the adapters its job needs (efax, mail).
"""

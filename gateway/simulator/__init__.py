"""The eFax API simulator: a real HTTP server speaking the eFax Enterprise API.

Written from efax-api.md alone; it shares no code with ``gateway.efax``. Modules:
``config`` (settings), ``state`` (all in-memory state and its operations),
``faxes`` (records and their clock-driven states), ``validation`` (POST /faxes
bodies), ``views`` (wire JSON), ``listing`` (sent/received lists), ``documents``
(page counts, generated PDF/TIFF), ``faults`` (injected faults, request log
edge), ``webhooks`` (signed notifications), ``app`` (eFax endpoints),
``control`` (``/_sim/`` endpoints), ``server`` (uvicorn). See docs/simulator.md.

Imported by tests, benchmarks and ``gateway.app`` (the built-in stand-in when no App ID
is configured); it never imports ``gateway.efax`` (import-linter contract).
"""

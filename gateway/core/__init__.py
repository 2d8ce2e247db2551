"""The pure core: MIME to documents, fax numbers, sending policy, retry and tracking
schedules, state names, report wording. Values in, values out (``now`` is a parameter).

Anyone may import it; it imports no I/O library, no ``gateway.settings`` and nothing of
the gateway outside itself (import-linter: "core is pure").
"""

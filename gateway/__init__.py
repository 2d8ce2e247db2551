"""fax-gateway: mail in, faxes out through the eFax Enterprise API, received faxes mailed.

``cli`` is the entry point (``fax-gateway``); ``app`` wires every stage for ``serve``.
The packages and who may import what are written down as import-linter contracts in
pyproject.toml (``uv run lint-imports``); each package's docstring says its part.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FAXGW_ variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("FAXGW_"):
            monkeypatch.delenv(name)
    yield

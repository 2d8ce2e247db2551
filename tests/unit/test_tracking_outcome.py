"""What the gateway tells the sender after one status read (gateway.core.tracking, pure).

"Delivered" only when eFax said COMPLETE(D) and gave no failure code.
"""

from __future__ import annotations

import pytest

from gateway.core.tracking import FaxStatus, status_after_read
from gateway.efax.models import FaxState


@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        (FaxState.DELIVERED, None, FaxStatus.DELIVERED),
        (FaxState.DELIVERED, "E41", FaxStatus.FAILED),
        (FaxState.DELIVERED, "7", FaxStatus.FAILED),
        (FaxState.FAILED, "E41", FaxStatus.FAILED),
        (FaxState.IN_PROGRESS, None, FaxStatus.SENDING),
        (FaxState.CANCELLED, "E45", FaxStatus.CANCELLED),
        (FaxState.UNKNOWN, None, None),
    ],
)
def test_the_gateway_says_delivered_only_without_a_failure_code(
    state: FaxState, code: str | None, expected: FaxStatus | None
) -> None:
    assert status_after_read(state, code) is expected

"""One mail transaction's state, kept on aiosmtpd's envelope from MAIL FROM to the reply.

Consumes: what MAIL (the mailboxes the sender may use), RCPT (the numbers accepted,
those deferred over ``smtp.max_recipients``) and DATA (the split mail it completed)
learn. Produces: ``transaction(envelope)``, the same ``Transaction`` for every hook of
one mail; aiosmtpd makes a new envelope after each mail and on ``RSET``, so the state
goes with it. Touches: nothing else. Settings: none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiosmtpd.smtp import Envelope

from gateway.core.addressing import FaxNumber
from gateway.settings import Mailbox


@dataclass
class Transaction:
    """What one mail transaction has learned so far (kept on the envelope)."""

    mailboxes: list[Mailbox] = field(default_factory=list)
    recipients: list[tuple[str, FaxNumber]] = field(default_factory=list)  # (address, number)
    deferred: list[FaxNumber] = field(default_factory=list)  # 452 4.5.3: over smtp.max_recipients
    partial: tuple[str, str] | None = None  # (sender key, id) when this DATA completed a split mail


def transaction(envelope: Envelope) -> Transaction:
    state = getattr(envelope, "faxgw", None)
    if state is None:
        state = Transaction()
        envelope.faxgw = state  # type: ignore[attr-defined]
    return state

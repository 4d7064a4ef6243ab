"""What every channel's sender reports for one message, and the error that stops a send."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jingzhun.errors import JingzhunError


@dataclass
class Outcome:
    """What happened to one message."""

    user_id: str
    state: str  # sent | failed | queued (not attempted: the sender stopped)
    reason: str | None
    answer: str | None
    tries: int
    sent_at: datetime | None
    hard_bounce: bool = False
    to: str | None = None


class Unreachable(JingzhunError):
    """The server (SMTP, the webhook gateway) cannot be reached or refuses the login:
    nothing more can be sent; the rest stays queued for the next run."""

    http_status = 502


__all__ = ["Outcome", "Unreachable"]

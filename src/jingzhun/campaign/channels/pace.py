"""One rate limit shared by a sender's worker threads (email sessions, webhook requests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Gives each caller the next slot ``1 / rate_per_second`` after the previous one and
    waits for it, so all workers together stay under the rate.

    Parameters
    ----------
    rate_per_second : float
        Slots per second, above 0.
    sleep : callable
        How to wait (tests pass one that does not).
    """

    def __init__(self, rate_per_second: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._gap = 1.0 / rate_per_second
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        """Wait for this caller's slot."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._gap
        if slot > now:
            self._sleep(slot - now)


__all__ = ["Pacer"]

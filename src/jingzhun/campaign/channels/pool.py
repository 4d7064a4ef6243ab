"""A sender's worker threads: one queue, one session per worker, kept across batches.

The email and webhook senders send the same way: ``connections`` threads, each with its own
session (an SMTP connection, an HTTP keep-alive connection), take messages from one queue.
The threads and their sessions live until :meth:`Workers.close`, so the delivery loop can
hand over the next chunk while the last is still going out and no chunk pays for new
threads or new connections. When a message finds the server unreachable, the workers stop:
every message not yet taken, in this batch or a later one, comes back ``queued`` (not
attempted) and the batch carries the error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from jingzhun.campaign.channels.outcome import Outcome, Unreachable

S = TypeVar("S")  # a worker's session
M = TypeVar("M")  # a message as the sender's deliver function takes it


class Batch:
    """The outcomes of one submitted batch, complete when :meth:`result` returns."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Outcome] = []
        self.error: Unreachable | None = None
        self._crash: BaseException | None = None
        self._left = size
        self._lock = threading.Lock()
        self._done = threading.Event()
        if size == 0:
            self._done.set()

    def _add(self, outcome: Outcome | None, *, error: Unreachable | None = None,
             crash: BaseException | None = None) -> None:  # fmt: skip
        with self._lock:
            if outcome is not None:
                self.outcomes.append(outcome)
            if error is not None and self.error is None:
                self.error = error
            if crash is not None and self._crash is None:
                self._crash = crash
            self._left -= 1
            if self._left == 0:
                self._done.set()

    def result(self) -> tuple[list[Outcome], Unreachable | None]:
        """Wait for every message's outcome; the error that stopped the workers, if it
        touched this batch.

        Raises
        ------
        Exception
            What a deliver function raised other than :class:`Unreachable` (a defect): the
            messages it concerned have no outcome and stay ``sending`` for the next run.
        """
        self._done.wait()
        if self._crash is not None:
            raise self._crash
        return self.outcomes, self.error


class Workers(Generic[S, M]):
    """``size`` threads delivering ``(user_id, message)`` pairs.

    Parameters
    ----------
    size : int
        Threads (and sessions).
    name : str
        The threads' name prefix.
    open_session, close_session : callable
        Make a worker's session (before its first message) and end it (at :meth:`close`).
    deliver : callable
        ``deliver(session, message) -> Outcome``; raises :class:`Unreachable` when nothing
        more can be sent.
    not_attempted : str
        The reason given to messages left queued once the workers stopped.
    """

    def __init__(
        self,
        size: int,
        name: str,
        *,
        open_session: Callable[[], S],
        close_session: Callable[[S], None],
        deliver: Callable[[S, M], Outcome],
        not_attempted: str,
    ) -> None:
        self._open, self._close, self._deliver = open_session, close_session, deliver
        self._not_attempted = not_attempted
        self._work: queue.SimpleQueue[tuple[Batch, str, M] | None] = queue.SimpleQueue()
        self._stopped: Unreachable | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for t in self._threads:
            t.start()

    def submit(self, messages: Sequence[tuple[str, M]]) -> Batch:
        """Queue ``messages`` (user id, message); their outcomes come in the batch."""
        batch = Batch(len(messages))
        for user_id, m in messages:
            self._work.put((batch, user_id, m))
        return batch

    def close(self) -> None:
        """Let the workers finish what is queued, then end their sessions and threads."""
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        session: Any = None
        opened = False
        try:
            while (item := self._work.get()) is not None:
                batch, user_id, m = item
                if self._stopped is not None:
                    batch._add(self._queued(user_id, self._not_attempted), error=self._stopped)
                    continue
                if not opened:
                    session, opened = self._open(), True
                try:
                    outcome = self._deliver(session, m)
                except Unreachable as exc:
                    self._stopped = self._stopped or exc
                    batch._add(self._queued(user_id, str(exc)), error=exc)
                except BaseException as exc:  # a defect: surfaced by Batch.result
                    batch._add(None, crash=exc)
                else:
                    batch._add(outcome)
        finally:
            if opened:
                self._close(session)

    @staticmethod
    def _queued(user_id: str, reason: str) -> Outcome:
        return Outcome(user_id, "queued", reason, None, 0, None)


class PooledSender(Generic[S, M]):
    """What both senders share: the workers, started on the first batch, and the ways to
    hand batches to them."""

    _workers: Workers[S, M] | None = None

    def _start(self) -> Workers[S, M]:
        raise NotImplementedError

    def _prepare(self, messages: Sequence[Any]) -> list[tuple[str, M]]:
        """(user id, message as ``deliver`` takes it) for each message, all before the first
        is sent; a sender that refuses a message raises here."""
        return [(m.user_id, m) for m in messages]

    def submit(self, messages: Sequence[Any]) -> Batch:
        """Hand ``messages`` to the workers (started on first use) and return at once."""
        prepared = self._prepare(messages)
        if self._workers is None:
            self._workers = self._start()
        return self._workers.submit(prepared)

    def send_partial(self, messages: Sequence[Any]) -> tuple[list[Outcome], Unreachable | None]:
        """Send ``messages`` and wait: every message's outcome (``queued`` for those not
        attempted once the server was gone), and that error. Workers this call started end
        with it."""
        own = self._workers is None
        try:
            return self.submit(messages).result()
        finally:
            if own:
                self.close()

    def send(self, messages: Sequence[Any]) -> list[Outcome]:
        """Like :meth:`send_partial`, raising the error after the outcomes are known."""
        outcomes, error = self.send_partial(messages)
        if error is not None:
            raise error
        return outcomes

    def close(self) -> None:
        """End the workers and their sessions (idempotent)."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()


__all__ = ["Batch", "PooledSender", "Workers"]

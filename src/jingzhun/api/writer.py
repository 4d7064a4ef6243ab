"""The one writer: every tracking request's messages go into the store through it.

DuckDB lets one process write a file, and each ingest batch has a fixed cost (a dozen
statements, about a tenth of a second) that dwarfs a request's hundred messages. So requests
do not write: they hand their messages to this writer and wait. The writer takes everything
waiting (up to ``batch_messages``), lingers ``linger_ms`` for more when little is waiting,
ingests it all as one batch through :meth:`jingzhun.ingest.facade.Ingest.messages` — the
Segment mapping, validator and quarantine every archive goes through — and answers each
request with the counts of its own lines. Readers use their own connections and see a batch
only once it has committed, whole.

:meth:`Writer.stop` refuses new work, writes everything accepted, then returns: a SIGTERM
loses nothing a client was told was accepted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from jingzhun.errors import ConflictError
from jingzhun.ingest.pipeline import BatchResult

log = logging.getLogger("jingzhun.server")

#: Writes one batch: JSON Lines in, the batch and its counts by line out.
IngestFn = Callable[[bytes], tuple[BatchResult, pa.Table]]


@dataclass(frozen=True)
class Accepted:
    """What became of one request's messages (event rows, as file ingest counts them)."""

    batch_id: str
    messages: int
    rows: int
    inserted: int
    duplicates: int
    quarantined: int
    skipped: int


class QueueFull(ConflictError):
    """More messages wait than ``[server] queue_messages`` allows (HTTP 503)."""

    http_status = 503


class ShuttingDown(ConflictError):
    """The server is stopping and takes no more messages (HTTP 503)."""

    http_status = 503


@dataclass
class _Request:
    lines: list[bytes]
    future: Future[Any]
    task: Callable[[], Any] | None = None  # a write of another kind, run alone


#: Committed batches waiting for the after-batch hook before the writer waits for it.
_AHEAD = 2


class Writer:
    """A thread that writes queued messages in batches.

    Parameters
    ----------
    ingest : callable
        Writes one batch (the server passes the writer workspace's ``ingest.messages``).
    batch_messages, linger_ms, queue_messages
        See :class:`jingzhun.config.ServerSettings`.
    on_batch : callable, optional
        Called after each batch commits and before its requests are answered, with the
        batch (real-time profiles and metrics hook in here), in a thread of its own and in
        commit order: while it folds one batch (Python, holding the GIL), the writer already
        writes the next (DuckDB, mostly not), so the two use both cores. It is at most
        ``_AHEAD`` batches behind; then the writer waits for it.
    """

    def __init__(
        self,
        ingest: IngestFn,
        *,
        batch_messages: int = 20_000,
        linger_ms: float = 20,
        queue_messages: int = 200_000,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self._ingest = ingest
        self._batch = batch_messages
        self._linger = linger_ms / 1000
        self._limit = queue_messages
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._waiting = 0  # messages queued and not yet written
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self._after: queue.Queue[tuple[BatchResult, list[_Request], list[Accepted]] | None] = (
            queue.Queue(maxsize=_AHEAD)
        )
        self._after_thread = threading.Thread(
            target=self._answer_loop, name="jingzhun-after-batch", daemon=True
        )
        self._after_thread.start()
        self._thread = threading.Thread(target=self._loop, name="jingzhun-writer", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Messages accepted and not yet written."""
        return self._waiting

    def submit(self, lines: list[bytes]) -> Future[Accepted]:
        """Queue one request's messages (one JSON object per item, no line breaks)."""
        future: Future[Accepted] = Future()
        with self._lock:
            if self._closed:
                raise ShuttingDown(
                    "the server is shutting down", hint="send the messages again in a moment"
                )
            if self._waiting + len(lines) > self._limit:
                raise QueueFull(
                    f"{self._waiting:,} messages are waiting to be written "
                    f"(the limit is {self._limit:,})",
                    hint="retry after a second, or raise [server] queue_messages",
                )
            self._waiting += len(lines)
        self._queue.put(_Request(lines, future))
        return future

    def submit_task(self, task: Callable[[], Any]) -> Future[Any]:
        """Run ``task`` in the writer thread, between batches (users and items sent to the
        API, key changes): the one writer does every write the server makes."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down", hint="try again in a moment")
        self._queue.put(_Request([], future, task))
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Take no more messages, write every one accepted, and end the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():  # every batch handed over: answer them, then end
            self._after.put(None)
            self._after_thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        held: _Request | None = None  # a task met while gathering a batch: next in line
        while not stopping:
            first = held if held is not None else self._queue.get()
            held = None
            if first is None:
                break
            if first.task is not None:
                self._run_task(first)
                continue
            requests = [first]
            size = len(first.lines)
            deadline = time.monotonic() + self._linger
            while size < self._batch:
                try:
                    # Everything already waiting is taken at once; when little is, linger a
                    # moment for more, so a steady stream becomes few large batches.
                    wait = deadline - time.monotonic()
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if item.task is not None:
                    held = item
                    break
                requests.append(item)
                size += len(item.lines)
            self._write(requests)
        if held is not None:
            self._run_task(held)
        # Stopping: whatever was queued before the sentinel was taken above; anything that
        # raced in after it is written too.
        rest: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                continue
            if item.task is not None:
                self._run_task(item)
            else:
                rest.append(item)
        if rest:
            self._write(rest)

    def _run_task(self, request: _Request) -> None:
        try:
            request.future.set_result(request.task())  # type: ignore[misc]
        except BaseException as exc:
            request.future.set_exception(exc)

    def _write(self, requests: list[_Request]) -> None:
        lines = [line for r in requests for line in r.lines]
        try:
            result, counts = self._ingest(b"\n".join(lines) + b"\n")
        except BaseException as exc:  # every waiting request learns of it
            log.exception("writing a batch of %d messages failed", len(lines))
            for r in requests:
                r.future.set_exception(exc)
            self._done(len(lines))
            return
        self.batches += 1
        answers = _per_request(result.batch_id, [len(r.lines) for r in requests], counts)
        self._done(len(lines))
        self._after.put((result, requests, answers))

    def _answer_loop(self) -> None:
        """Run the hook on each committed batch, in order, then answer its requests."""
        while True:
            item = self._after.get()
            if item is None:
                return
            result, requests, answers = item
            if self._on_batch is not None:
                # Before the answers: a client told its events are in reads them back in its
                # user's live profile.
                try:
                    self._on_batch(result)
                except Exception:  # a hook must never lose the batch it follows
                    log.exception("after-batch hook failed")
            for r, answer in zip(requests, answers, strict=True):
                r.future.set_result(answer)

    def _done(self, n: int) -> None:
        with self._lock:
            self._waiting -= n


def _per_request(batch_id: str, sizes: list[int], counts: pa.Table) -> list[Accepted]:
    """Split the batch's counts by line among the requests whose lines they are."""
    ends = np.cumsum(sizes)
    n = len(sizes)
    totals = {
        c: np.zeros(n, dtype=np.int64) for c in ("rows", "inserted", "quarantined", "skipped")
    }
    if counts.num_rows:
        # Lines are numbered from 1 in the order the requests were joined.
        owner = np.searchsorted(ends, counts["line"].to_numpy() - 1, side="right")
        for c, acc in totals.items():
            np.add.at(acc, owner, counts[c].to_numpy())
    return [
        Accepted(
            batch_id=batch_id,
            messages=sizes[i],
            rows=int(totals["rows"][i]),
            inserted=int(totals["inserted"][i]),
            duplicates=int(
                totals["rows"][i]
                - totals["inserted"][i]
                - totals["quarantined"][i]
                - totals["skipped"][i]
            ),
            quarantined=int(totals["quarantined"][i]),
            skipped=int(totals["skipped"][i]),
        )
        for i in range(n)
    ]

"""The server's writer: batches coalesce, the after-batch hook runs in commit order before a
batch's requests are answered, and the writer writes the next batch while the hook still
folds the previous one. The ingest here is a stand-in that records what it was given (the
real one is tested through the server in test_tracking.py and test_realtime.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pyarrow as pa
import pytest

from jingzhun.api.writer import Accepted, Writer
from jingzhun.ingest.pipeline import BatchResult


class FakeIngest:
    """Writes nothing; numbers each batch and counts every line as one inserted row."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.started = threading.Event()

    def __call__(self, data: bytes) -> tuple[BatchResult, pa.Table]:
        lines = data.rstrip(b"\n").split(b"\n")
        self.batches.append(lines)
        self.started.set()
        result = BatchResult(f"b{len(self.batches)}", "events", ["api"])
        n = len(lines)
        counts = pa.table(
            {
                "line": list(range(1, n + 1)),
                "rows": [1] * n,
                "inserted": [1] * n,
                "quarantined": [0] * n,
                "skipped": [0] * n,
            }
        )
        return result, counts


def test_the_hook_runs_in_commit_order_before_the_answers_while_the_next_batch_is_written() -> None:
    ingest = FakeIngest()
    release = threading.Event()
    hooked: list[str] = []
    second_written_during_first_hook = threading.Event()

    def hook(result: BatchResult) -> None:
        if result.batch_id == "b1":
            # Held until the writer has written the second batch: the writer does not wait.
            assert release.wait(10)
            if len(ingest.batches) >= 2:
                second_written_during_first_hook.set()
        hooked.append(result.batch_id)

    writer = Writer(ingest, linger_ms=0, on_batch=hook)
    try:
        first = writer.submit([b'{"n":1}', b'{"n":2}'])
        assert ingest.started.wait(10)
        second = writer.submit([b'{"n":3}'])
        deadline = time.monotonic() + 10
        while len(ingest.batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(ingest.batches) == 2  # written while the first batch's hook still runs
        assert not first.done() and not second.done()  # nobody answered before their hook
        release.set()
        a1, a2 = first.result(10), second.result(10)
    finally:
        release.set()
        writer.stop(10)
    assert second_written_during_first_hook.is_set()
    assert hooked == ["b1", "b2"]
    assert (a1.batch_id, a1.messages, a1.inserted) == ("b1", 2, 2)
    assert (a2.batch_id, a2.messages, a2.inserted) == ("b2", 1, 1)


def test_stop_answers_every_accepted_request_after_its_hook() -> None:
    ingest = FakeIngest()
    hooked: list[str] = []
    writer = Writer(ingest, linger_ms=50, on_batch=lambda r: hooked.append(r.batch_id))
    futures: list[Future[Accepted]] = [writer.submit([b'{"n":%d}' % i]) for i in range(20)]
    writer.stop(10)
    answers = [f.result(0) for f in futures]  # all answered by the time stop returns
    assert sum(a.inserted for a in answers) == 20
    assert sorted({a.batch_id for a in answers}) == sorted(hooked)


def test_a_failing_hook_loses_no_answer() -> None:
    ingest = FakeIngest()

    def hook(result: BatchResult) -> None:
        raise RuntimeError("the live fold broke")

    writer = Writer(ingest, linger_ms=0, on_batch=hook)
    try:
        answer = writer.submit([b'{"n":1}']).result(10)
    finally:
        writer.stop(10)
    assert answer.inserted == 1


def test_a_failing_write_fails_each_of_its_requests() -> None:
    def broken(data: bytes) -> tuple[BatchResult, pa.Table]:
        raise OSError("disk full")

    writer = Writer(broken, linger_ms=0)
    try:
        with pytest.raises(OSError, match="disk full"):
            writer.submit([b'{"n":1}']).result(10)
        assert writer.depth == 0  # not counted as waiting any more
    finally:
        writer.stop(10)

"""A sender's workers: sessions kept across batches, a stop that reaches every later batch,
a defect that surfaces instead of hanging, a message that cannot be written failing alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from jingzhun.campaign.channels.email import Outgoing, SmtpSender
from jingzhun.campaign.channels.outcome import Outcome, Unreachable
from jingzhun.campaign.channels.pool import Workers
from jingzhun.campaign.content import Rendered
from tests.campaign.conftest import Sink, free_port, settings_for


class CountingSink(Sink):
    """The conftest sink, counting the SMTP sessions opened and said goodbye to."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0
        self.quits = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.quits += 1
        return "221 Bye"


@pytest.fixture
def sink() -> Iterator[tuple[CountingSink, int]]:
    handler = CountingSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def message(i: int, to: str | None = None) -> Outgoing:
    return Outgoing(
        f"u{i}",
        to or f"u{i}@shop.example",
        f"<c.{i}@shop.example>",
        Rendered("a", "Hi", "hello\n", None),
        f"https://t.shop.example/t/u/c?u=u{i}&s=x",
    )


def test_workers_keep_their_sessions_across_batches_and_quit_at_close(
    sink: tuple[CountingSink, int],
) -> None:
    handler, port = sink
    sender = SmtpSender(settings_for(port, connections=3).email)
    batches = [sender.submit([message(b * 20 + i) for i in range(20)]) for b in range(5)]
    outcomes = [o for batch in batches for o in batch.result()[0]]
    sender.close()
    assert sorted(o.user_id for o in outcomes if o.state == "sent") == sorted(
        f"u{i}" for i in range(100)
    )
    assert len(handler.messages) == 100
    assert 1 <= handler.sessions <= 3, "one session per worker, not one per batch"
    assert handler.quits == handler.sessions


def test_once_the_server_is_gone_every_later_batch_comes_back_queued() -> None:
    sender = SmtpSender(settings_for(free_port(), connections=2, retries=0).email)
    first = sender.submit([message(i) for i in range(5)])
    second = sender.submit([message(i) for i in range(5, 9)])
    out1, err1 = first.result()
    out2, err2 = second.result()
    sender.close()
    assert isinstance(err1, Unreachable) and isinstance(err2, Unreachable)
    assert "[email]" in str(err1) and "cannot reach the SMTP server" in str(err1)
    assert [o.state for o in out1 + out2] == ["queued"] * 9
    assert sorted(o.user_id for o in out2) == [f"u{i}" for i in range(5, 9)]
    assert all(o.tries == 0 for o in out1 + out2)


def test_a_defect_in_deliver_surfaces_from_result_and_other_batches_finish() -> None:
    def deliver(session: object, m: str) -> Outcome:
        if m == "boom":
            raise RuntimeError("a bug")
        time.sleep(0.001)
        return Outcome(m, "sent", None, "250", 1, None)

    workers: Workers[object, str] = Workers(
        2,
        "test",
        open_session=object,
        close_session=lambda s: None,
        deliver=deliver,
        not_attempted="not attempted",
    )
    bad = workers.submit([("a", "a"), ("boom", "boom"), ("b", "b")])
    good = workers.submit([("c", "c"), ("d", "d")])
    done = threading.Event()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            bad.result()
        except RuntimeError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    assert done.wait(10), "result() hung on a batch whose deliver raised"
    assert [str(e) for e in errors] == ["a bug"]
    assert sorted(o.user_id for o in good.result()[0]) == ["c", "d"]
    workers.close()


def test_a_message_that_cannot_be_written_fails_alone(sink: tuple[CountingSink, int]) -> None:
    handler, port = sink
    sender = SmtpSender(settings_for(port, connections=2).email)
    bad = message(1, to="u1@shop.example\r\nBcc: everyone@shop.example")
    outcomes, error = sender.send_partial([message(0), bad, message(2)])
    by_user = {o.user_id: o for o in outcomes}
    assert error is None
    assert by_user["u0"].state == by_user["u2"].state == "sent"
    assert by_user["u1"].state == "failed" and by_user["u1"].tries == 0
    assert "cannot write the message" in (by_user["u1"].reason or "")
    assert not by_user["u1"].hard_bounce
    assert sorted(r for rcpts, _ in handler.messages for r in rcpts) == [
        "u0@shop.example",
        "u2@shop.example",
    ]

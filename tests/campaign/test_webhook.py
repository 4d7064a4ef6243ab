"""The webhook channel against a real HTTP receiver on 127.0.0.1.

The receiver (``http.server.ThreadingHTTPServer`` speaking HTTP/1.1, so connections are kept
alive) records every request, checks its signature with :func:`verify`, and answers 200 unless
told to answer 500 some number of times for a user, 400 for a user, or to hold the answer past
the client's timeout for a user some number of times, or to close the connection after
answering a user without announcing it (as a gateway's idle timeout does).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jingzhun.campaign.channels.email import Outcome, Unreachable
from jingzhun.campaign.channels.webhook import (
    WebhookOutgoing,
    WebhookSender,
    content,
    sign,
    verify,
)
from jingzhun.campaign.content import Rendered
from jingzhun.errors import InputError
from tests.campaign.conftest import free_port

SECRET = b"test-secret-0123456789abcdef"


@dataclass
class Request:
    """One request as the receiver saw it."""

    user_id: str
    headers: dict[str, str]
    body: bytes
    valid: bool
    client_port: int

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and how it answers (per user_id in the body)."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # user -> 500s left
    reject: set[str] = field(default_factory=set)  # 400 always
    slow: dict[str, int] = field(default_factory=dict)  # user -> held answers left
    drop_after: set[str] = field(default_factory=set)  # close the connection unannounced
    hold_seconds: float = 5.0  # longer than the senders' timeouts in these tests
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/send?channel=sms"

    def by_user(self) -> dict[str, list[Request]]:
        out: dict[str, list[Request]] = {}
        with self.lock:
            for r in self.requests:
                out.setdefault(r.user_id, []).append(r)
        return out

    def answer(self, user_id: str) -> tuple[int, bool]:
        """(status, hold) for the next request of ``user_id``."""
        with self.lock:
            if user_id in self.reject:
                return 400, False
            if self.fail.get(user_id, 0):
                self.fail[user_id] -= 1
                return 500, False
            if self.slow.get(user_id, 0):
                self.slow[user_id] -= 1
                return 200, True
        return 200, False


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            valid = verify(
                SECRET,
                headers.get("x-jingzhun-timestamp", ""),
                body,
                headers.get("x-jingzhun-signature", ""),
            )
            user_id = json.loads(body)["user_id"]
            with receiver.lock:
                receiver.requests.append(
                    Request(user_id, headers, body, valid, self.client_address[1])
                )
            status, hold = receiver.answer(user_id)
            if hold:  # past the client's timeout; released at the end of the test
                receiver.released.wait(receiver.hold_seconds)
            reply = json.dumps({"ok": status == 200, "id": f"gw-{user_id}"}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the client gave up on a held answer
                self.close_connection = True
            if user_id in receiver.drop_after:  # as an idle timeout would, without saying so
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(rec))
    rec.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="receiver", daemon=True
    )
    thread.start()
    try:
        yield rec
    finally:
        rec.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


def message(user_id: str, text: str | None = None, variant: str = "a") -> WebhookOutgoing:
    return WebhookOutgoing(
        user_id=user_id,
        campaign="spring",
        message_id=f"<spring.{user_id}@shop.example>",
        rendered=Rendered(variant, None, text or f"你好 {user_id}, 新品上架\n", None),
    )


@pytest.fixture
def sender_for() -> Callable[..., WebhookSender]:
    def _make(url: str, **kw: object) -> WebhookSender:
        options: dict = {
            "retry_base_seconds": 0.001,
            "rate_per_second": 100000,
            "sleep": lambda s: None,
            **kw,
        }
        return WebhookSender(url, SECRET, **options)

    return _make


def by_user(outcomes: list[Outcome]) -> dict[str, Outcome]:
    out = {o.user_id: o for o in outcomes}
    assert len(out) == len(outcomes)
    return out


# -- signatures -------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = '{"content":"你好"}'.encode()
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"


def test_verify_refuses_tampering_and_old_or_future_timestamps() -> None:
    body = b'{"user_id":"u1","content":"hi"}'
    sig = sign(SECRET, "1700000000", body)
    assert verify(SECRET, "1700000000", body, sig, now=1700000000 + 299)
    assert not verify(SECRET, "1700000000", body.replace(b"hi", b"ho"), sig, now=1700000000)
    assert not verify(SECRET, "1700000001", body, sig, now=1700000000)  # timestamp changed
    assert not verify(b"other-secret", "1700000000", body, sig, now=1700000000)
    assert not verify(SECRET, "1700000000", body, sig, now=1700000000 + 301)  # too old
    assert not verify(SECRET, "1700000000", body, sig, now=1700000000 - 301)  # from the future
    assert verify(SECRET, "1700000000", body, sig, now=1700000000 + 1000, tolerance=1000)
    assert not verify(SECRET, "soon", body, sig, now=1700000000)
    assert not verify(SECRET, "1700000000", body, sig.replace("sha256=", ""), now=1700000000)
    assert not verify(SECRET, "1700000000", body, "sha256=ü", now=1700000000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"template": "promo_7", "params": {"name": "李"}}\n',
            {"template": "promo_7", "params": {"name": "李"}},
        ),
        ("Hello Li", "Hello Li"),
        ("[1, 2]", "[1, 2]"),  # JSON, but not an object
        ("{not json", "{not json"),
        ('{"n": NaN}', '{"n": NaN}'),  # not JSON either
    ],
)
def test_content_is_the_object_a_text_holds_or_the_text(text: str, expected: object) -> None:
    assert content(text) == expected


# -- delivery ---------------------------------------------------------------------------------


def test_every_message_arrives_once_signed_with_its_json_body(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    payload = '{"template": "promo_7", "params": {"name": "李"}}'
    messages = [message(f"u{i}") for i in range(7)] + [message("u7", payload, variant="b")]
    sender = sender_for(receiver.url, connections=2)
    sender.check()
    outcomes, error = sender.send_partial(messages)

    assert error is None
    results = by_user(outcomes)
    assert {o.state for o in outcomes} == {"sent"}
    assert all(o.tries == 1 and o.sent_at is not None for o in outcomes)
    assert results["u3"].answer.startswith("200 ") and "gw-u3" in results["u3"].answer
    got = receiver.by_user()
    assert sorted(got) == sorted(m.user_id for m in messages)
    for m in messages:
        (request,) = got[m.user_id]
        assert request.valid
        h = request.headers
        assert h["content-type"] == "application/json"
        assert h["user-agent"].startswith("jingzhun/")
        assert h["idempotency-key"] == m.message_id
        assert h["x-jingzhun-signature"].startswith("sha256=")
        assert request.json() == {
            "campaign": "spring",
            "user_id": m.user_id,
            "message_id": m.message_id,
            "variant": m.rendered.variant,
            "content": json.loads(payload) if m.user_id == "u7" else m.rendered.text,
        }
    assert "新品上架".encode() in got["u0"][0].body  # UTF-8, not \u escapes
    # two workers, each keeping its connection alive
    assert len({r.client_port for r in receiver.requests}) <= 2


def test_a_server_error_is_retried_with_backoff_then_sent(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    receiver.fail["u1"] = 2
    waits: list[float] = []
    sender = sender_for(receiver.url, connections=1, retry_base_seconds=1.0, sleep=waits.append)
    outcomes, error = sender.send_partial([message("u0"), message("u1"), message("u2")])

    assert error is None
    results = by_user(outcomes)
    assert results["u1"].state == "sent" and results["u1"].tries == 3
    assert results["u0"].tries == results["u2"].tries == 1
    assert [w for w in waits if w >= 0.5] == [1.0, 2.0]  # pacing waits are microseconds
    tries = receiver.by_user()["u1"]
    assert len(tries) == 3 and all(r.valid for r in tries)
    assert {r.headers["idempotency-key"] for r in tries} == {"<spring.u1@shop.example>"}
    assert len({r.body for r in tries}) == 1


def test_a_connection_the_gateway_closed_is_opened_again_within_the_try(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    receiver.drop_after.update({"u0", "u2"})
    sender = sender_for(receiver.url, connections=1)
    outcomes, error = sender.send_partial([message(f"u{i}") for i in range(4)])

    assert error is None
    assert [(o.state, o.tries) for o in outcomes] == [("sent", 1)] * 4
    assert {u: len(r) for u, r in receiver.by_user().items()} == {f"u{i}": 1 for i in range(4)}
    assert len({r.client_port for r in receiver.requests}) == 3


def test_a_server_error_that_lasts_fails_after_the_retries(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    receiver.fail["u1"] = 10
    outcomes, error = sender_for(receiver.url, retries=2).send_partial([message("u1")])

    assert error is None
    (o,) = outcomes
    assert (o.state, o.tries) == ("failed", 3)
    assert o.reason.startswith("temporary failure after 3 tries: 500")
    assert len(receiver.by_user()["u1"]) == 3


def test_a_client_error_fails_at_once(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    receiver.reject.add("u1")
    outcomes, error = sender_for(receiver.url).send_partial([message("u0"), message("u1")])

    assert error is None
    results = by_user(outcomes)
    assert (results["u1"].state, results["u1"].tries) == ("failed", 1)
    assert results["u1"].reason.startswith("rejected: 400")
    assert results["u0"].state == "sent"
    assert len(receiver.by_user()["u1"]) == 1


def test_a_timeout_is_retried(receiver: Receiver, sender_for: Callable[..., WebhookSender]) -> None:
    receiver.slow["u1"] = 1
    sender = sender_for(receiver.url, timeout_seconds=0.2, connections=1)
    outcomes, error = sender.send_partial([message("u0"), message("u1"), message("u2")])

    assert error is None
    results = by_user(outcomes)
    assert {o.state for o in outcomes} == {"sent"}
    assert results["u1"].tries == 2
    assert len(receiver.by_user()["u1"]) == 2


def test_a_timeout_that_lasts_fails_as_temporary(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    receiver.slow["u1"] = 10
    sender = sender_for(receiver.url, timeout_seconds=0.2, retries=1)
    (o,) = sender.send_partial([message("u1")])[0]
    assert (o.state, o.tries) == ("failed", 2)
    assert o.reason.startswith("temporary failure after 2 tries: no answer within 0.2s")


def test_an_unreachable_endpoint_stops_the_send_and_keeps_everything_queued(
    sender_for: Callable[..., WebhookSender],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    sender = sender_for(url, retries=2, connections=2)
    with pytest.raises(Unreachable, match=r"\[webhook\] url") as caught:
        sender.check()
    assert "check [webhook] url" in str(caught.value)

    messages = [message(f"u{i}") for i in range(5)]
    outcomes, error = sender.send_partial(messages)
    assert isinstance(error, Unreachable) and "[webhook] url" in str(error)
    assert sorted(o.user_id for o in outcomes) == [m.user_id for m in messages]
    assert {o.state for o in outcomes} == {"queued"}
    with pytest.raises(Unreachable):
        sender.send(messages)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://gw.example/hook",
        "file:///etc/passwd",
        "gw.example/hook",
        "http:///nohost",
        "https://u:p@gw.example/",
    ],
)
def test_only_http_and_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(InputError, match=r"\[webhook\] url"):
        WebhookSender(url, SECRET)


def test_an_empty_secret_and_a_bad_message_id_are_refused(
    receiver: Receiver, sender_for: Callable[..., WebhookSender]
) -> None:
    with pytest.raises(InputError, match=r"\[webhook\] secret"):
        WebhookSender(receiver.url, b"")
    bad = WebhookOutgoing("u1", "spring", "id\r\nX-Evil: 1", Rendered("a", None, "hi", None))
    with pytest.raises(InputError, match="message_id"):
        sender_for(receiver.url).send_partial([message("u0"), bad])
    assert receiver.requests == []  # refused before the first POST

"""A webhook campaign end to end: the delivery loop, a real receiver on 127.0.0.1 that checks
every signature, a gateway that fails and recovers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jingzhun.campaign.channels.webhook import verify
from jingzhun.config import Settings
from jingzhun.errors import InputError
from jingzhun.workspace import Workspace

SECRET = "a-long-shared-secret-for-the-gateway"


class Gateway:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.failures = 0  # answer 500 to the next N requests
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    SECRET.encode(), self.headers["X-Jingzhun-Timestamp"], body,
                    self.headers["X-Jingzhun-Signature"],
                )  # fmt: skip
                with gateway.lock:
                    fail = gateway.failures > 0
                    gateway.failures -= int(fail)
                    if ok and not fail:
                        gateway.received.append(
                            {**json.loads(body), "key": self.headers["Idempotency-Key"]}
                        )
                self.send_response(401 if not ok else 500 if fail else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    try:
        yield g
    finally:
        g.stop()


def test_each_member_is_posted_once_signed_and_retried_through_500s(
    open_ws: Callable[..., Workspace], gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINGZHUN_WEBHOOK_SECRET", SECRET)
    settings = Settings.model_validate(
        {"webhook": {"url": gateway.url, "retry_base_seconds": 0.01, "retries": 5}}
    )
    ws = open_ws(settings)
    ws.campaigns.create(
        {
            "name": "push",
            "channel": "webhook",
            "audience": {"where": "frequency >= 3"},
            "variants": [
                {
                    "name": "a",
                    "body": '{"title": "Hi {{ first_name }}", "items": {{ recommendations|map(attribute="item_id")|list|tojson }}}',
                }
            ],
        }
    )
    gateway.failures = 3  # the gateway's first answers are 500s
    result = ws.campaigns.send("push")
    treated = {
        u for (u,) in ws.store.rows("SELECT user_id FROM campaign_members WHERE arm = 'treatment'")
    }
    assert result.counts["sent"] == len(treated) > 20 and result.counts["failed"] == 0
    assert sorted(r["user_id"] for r in gateway.received) == sorted(treated)
    first = gateway.received[0]
    assert first["campaign"] == "push" and first["variant"] == "a"
    assert isinstance(first["content"], dict) and first["content"]["title"].startswith("Hi")
    keys = dict(ws.store.rows("SELECT user_id, message_id FROM deliveries WHERE state = 'sent'"))
    assert all(r["key"] == keys[r["user_id"]] == r["message_id"] for r in gateway.received)
    assert ws.store.scalar("SELECT max(tries) FROM deliveries WHERE campaign = 'push'") > 1
    again = ws.campaigns.send("push")
    assert again.attempted == 0 and len(gateway.received) == len(treated)


def test_a_webhook_campaign_needs_its_url_and_secret(
    open_ws: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JINGZHUN_WEBHOOK_SECRET", raising=False)
    spec = {"name": "push", "channel": "webhook", "variants": [{"name": "a", "body": "hi"}]}
    ws = open_ws(Settings())
    ws.campaigns.create(spec)
    with pytest.raises(InputError, match=r"\[webhook\] url is not set"):
        ws.campaigns.send("push")
    ws.settings = Settings.model_validate({"webhook": {"url": "http://127.0.0.1:9/x"}})
    with pytest.raises(InputError, match=r"\$JINGZHUN_WEBHOOK_SECRET, which is not set"):
        ws.campaigns.send("push")
    assert ws.store.count("deliveries") == 0

"""The Segment HTTP Tracking API against the real server: the official SDK as a client, every
way a key is sent, per-request counts from coalesced batches, and bad input refused whole."""

from __future__ import annotations

import base64
import gzip
import json
import threading

import httpx
import pytest

from jingzhun.ingest.read import contacts


def _count(served, sql: str, params: list | None = None):
    ws = served.app.state.jingzhun.readers.get()
    return ws.store.scalar(sql, params)


def _track(i: int, **extra: object) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"u{i % 7}",
        "messageId": f"m-{i}",
        "timestamp": "2026-11-01T10:00:00Z",
        "properties": {"product_id": f"p{i % 13}", "price": 9.5},
        **extra,
    }


def test_official_segment_sdk_sends_unchanged(server) -> None:
    from segment.analytics.client import Client

    served = server()
    client = Client(write_key=served.keys["ingest"], host=served.url, sync_mode=True, max_retries=0)
    client.identify("u1", {"email": "ann@example.com", "city": "Hangzhou", "plan": "gold"})
    client.track("u1", "Product Viewed", {"product_id": "p1", "price": 12.0})
    client.track(
        "u1",
        "Order Completed",
        {
            "order_id": "o-1",
            "revenue": 30.0,
            "products": [
                {"product_id": "p1", "price": 12.0, "quantity": 1},
                {"product_id": "p2", "price": 9.0, "quantity": 2},
            ],
        },
    )
    client.track(anonymous_id="anon-9", event="Video Played", properties={"length": 3})
    client.alias("anon-9", "u1")
    client.flush()
    events = dict(
        served.app.state.jingzhun.readers.get().store.rows(
            "SELECT event, count(*) FROM events GROUP BY ALL"
        )
    )
    assert events["product_viewed"] == 1
    assert events["order_completed"] == 2  # one order line per product
    assert events["video_played"] == 1  # a custom event, kept
    assert _count(served, "SELECT count(*) FROM events WHERE custom") == 1
    lines = served.app.state.jingzhun.readers.get().store.rows(
        "SELECT item_id, revenue, order_id FROM events WHERE event = 'order_completed' ORDER BY item_id"
    )
    assert [(r[0], r[2]) for r in lines] == [("p1", "o-1"), ("p2", "o-1")]
    assert sum(r[1] for r in lines) == pytest.approx(30.0)
    # identify: traits to users, email to pii only
    assert _count(served, "SELECT attributes->>'plan' FROM users WHERE user_id = 'u1'") == "gold"
    store = served.app.state.jingzhun.readers.get().store
    assert contacts(store, ["u1"], ["email"])["email"].tolist() == ["ann@example.com"]
    assert (
        _count(served, "SELECT count(*) FROM events WHERE properties::VARCHAR LIKE '%ann@%'") == 0
    )
    # alias links the anonymous id
    assert _count(served, "SELECT user_id FROM identities WHERE anonymous_id = 'anon-9'") == "u1"
    # the write key is never stored
    key = served.keys["ingest"]
    assert (
        _count(
            served,
            "SELECT count(*) FROM events WHERE properties::VARCHAR LIKE ?",
            [f"%{key[-12:]}%"],
        )
        == 0
    )


def test_batch_answers_its_own_counts(server) -> None:
    served = server()
    c = served.client("ingest")
    msgs = [_track(i) for i in range(5)]
    msgs.append(_track(5, timestamp="not a time"))  # quarantined
    msgs.append(_track(0))  # a redelivery: duplicate
    r = c.post("/v1/batch", json={"batch": msgs, "context": {"library": {"name": "x"}}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert (body["messages"], body["inserted"], body["quarantined"], body["duplicates"]) == (
        7,
        5,
        1,
        1,
    )
    reason = _count(served, "SELECT reason FROM quarantine WHERE batch_id = ?", [body["batch_id"]])
    assert "timestamp" in reason or "ts" in reason
    # batch-level context is merged into each message
    raw = served.app.state.jingzhun.readers.get().store.rows(
        "SELECT count(*) FROM events WHERE batch_id = ?", [body["batch_id"]]
    )
    assert raw[0][0] == 5


@pytest.mark.parametrize("how", ["bearer", "basic", "writeKey"])
def test_key_sent_three_ways(server, how: str) -> None:
    served = server()
    key = served.keys["ingest"]
    headers, payload = {}, _track(1)
    if how == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    elif how == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    else:
        payload["writeKey"] = key
    r = httpx.post(f"{served.url}/v1/track", json=payload, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1


def test_keys_and_scopes(server) -> None:
    served = server()
    r = httpx.post(f"{served.url}/v1/track", json=_track(1))
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "WWW-Authenticate" in r.headers
    assert "apikey create" in r.json()["detail"]
    r = httpx.post(
        f"{served.url}/v1/track",
        json=_track(1),
        headers={"Authorization": "Bearer jz_ingest_deadbeef_nope"},
    )
    assert r.status_code == 401
    r = served.client("read").post("/v1/track", json=_track(1))
    assert r.status_code == 403 and "ingest" in r.json()["detail"]
    assert served.client("admin").post("/v1/track", json=_track(1)).status_code == 200
    r = httpx.post(f"{served.url}/v1/track", json=_track(1), headers={"Authorization": "Digest x"})
    assert r.status_code == 401


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1,2]", 400, "not a JSON object"),
    (b"\xff\xfe", 400, "UTF-8"),
    (json.dumps({"batch": "x"}).encode(), 400, "batch"),
    (json.dumps({"batch": []}).encode(), 400, "empty"),
    (json.dumps({"batch": [_track(1), 5]}).encode(), 400, "batch[1] is not a JSON object"),
    (
        json.dumps({"batch": [_track(1), {**_track(2), "event": ""}]}).encode(),
        400,
        "batch[1].event",
    ),
    (json.dumps({"batch": [{**_track(2), "type": "purchase"}]}).encode(), 400, "batch[0].type"),
    (
        json.dumps({"batch": [{k: v for k, v in _track(2).items() if k != "userId"}]}).encode(),
        400,
        "userId or an anonymousId",
    ),
    (json.dumps({"batch": [{"type": "alias", "userId": "u1"}]}).encode(), 400, "previousId"),
    (json.dumps({"batch": [_track(1)], "context": 3}).encode(), 400, "context"),
    (b"[" * 100000 + b"]" * 100000, 400, "JSON"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD)
def test_bad_bodies_refused_whole(server, body: bytes, status: int, words: str) -> None:
    served = server()
    c = served.client("ingest")
    r = c.post("/v1/batch", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
    assert _count(served, "SELECT count(*) FROM events") == 0
    assert _count(served, "SELECT count(*) FROM quarantine") == 0


def test_size_limits(server) -> None:
    served = server()
    c = served.client("ingest")
    big = _track(1, properties={"blob": "x" * 40_000})
    r = c.post("/v1/track", json=big)
    assert r.status_code == 413 and "32 KB" in r.json()["detail"]
    many = {"batch": [_track(i, properties={"pad": "y" * 2000}) for i in range(300)]}
    r = c.post("/v1/batch", json=many)
    assert r.status_code == 413 and "500 KB" in r.json()["detail"]

    # chunked, without Content-Length
    def chunks():
        yield b'{"batch": ['
        for i in range(400):
            yield json.dumps(_track(i, properties={"pad": "z" * 2000})).encode() + b","
        yield json.dumps(_track(999)).encode() + b"]}"

    r = c.post("/v1/batch", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # a gzip bomb is stopped at the limit once unzipped
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    r = c.post(
        "/v1/batch",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert _count(served, "SELECT count(*) FROM events") == 0


def test_gzip_body(server) -> None:
    served = server()
    body = gzip.compress(json.dumps({"batch": [_track(i) for i in range(10)]}).encode())
    r = served.client("ingest").post(
        "/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 10


def test_concurrent_requests_coalesce_and_each_gets_its_counts(server) -> None:
    served = server()
    answers: list[dict] = []
    lock = threading.Lock()

    def send(t: int) -> None:
        with httpx.Client(
            base_url=served.url,
            headers={"Authorization": f"Bearer {served.keys['ingest']}"},
            timeout=60,
        ) as c:
            for r_ in range(10):
                base = (t * 10 + r_) * 100
                r = c.post("/v1/batch", json={"batch": [_track(base + i) for i in range(100)]})
                assert r.status_code == 200, r.text
                with lock:
                    answers.append(r.json())

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 80
    assert all(a["inserted"] == 100 and a["duplicates"] == 0 for a in answers)
    assert _count(served, "SELECT count(*) FROM events") == 8000
    batches = {a["batch_id"] for a in answers}
    assert len(batches) < 80  # requests shared batches
    assert served.app.state.jingzhun.writer.batches == len(batches)


def test_metrics_and_health(server) -> None:
    served = server()
    served.client("ingest").post("/v1/batch", json={"batch": [_track(i) for i in range(3)]})
    assert httpx.get(f"{served.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{served.url}/readyz").json()["status"] == "ready"
    text = httpx.get(f"{served.url}/metrics").text
    assert 'jingzhun_events_total{outcome="inserted"} 3.0' in text
    assert 'jingzhun_http_requests_total{method="POST",route="/v1/batch",status="200"} 1.0' in text
    assert "jingzhun_write_queue_messages" in text

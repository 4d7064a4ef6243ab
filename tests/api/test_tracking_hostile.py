"""Hostile values inside well-formed tracking messages: each is quarantined or refused with a
reason, never a 500, and nothing else in the request is lost."""

from __future__ import annotations

import json

import pytest

GOOD = {
    "type": "track",
    "event": "Product Viewed",
    "userId": "u1",
    "messageId": "good-1",
    "timestamp": "2026-11-01T10:00:00Z",
    "properties": {"product_id": "p1"},
}

HOSTILE = [
    {"userId": "u\x00x"},
    {"userId": "x" * 5000},
    {"messageId": "m" * 5000},
    {"event": "E" * 5000},
    {"event": "'; DROP TABLE events; --"},
    {"userId": "'); DELETE FROM users; --"},
    {"timestamp": "2026-13-45T99:00:00Z"},
    {"timestamp": "9999-12-31T23:59:59Z"},
    {"timestamp": 1e308},
    {"properties": {"product_id": {"nested": [1, 2]}}},
    {"properties": {"price": "NaN", "product_id": "p"}},
    {"properties": {"price": -5, "product_id": "p"}},
    {"properties": {"product_id": "p\u202e\u0000"}},
    {"properties": [1, 2, 3]},
    {"properties": {"products": "not a list", "order_id": "o"}, "event": "Order Completed"},
    {
        "properties": {"products": [None, 3, {"product_id": None}], "order_id": "o"},
        "event": "Order Completed",
    },
    {"context": {"traits": {"email": "x" * 10000}}},
    {"userId": 12345},
    {"anonymousId": ["a"], "userId": None},
    {"sentAt": "yesterday"},
]


@pytest.mark.parametrize("change", HOSTILE, ids=[json.dumps(h)[:40] for h in HOSTILE])
def test_hostile_message_is_counted_never_500(server, change: dict) -> None:
    served = server()
    bad = {**GOOD, "messageId": "bad-1", **change}
    r = served.client("ingest").post("/v1/batch", json={"batch": [GOOD, bad]})
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code != 200:
        assert r.headers["content-type"].startswith("application/problem+json")
        return
    body = r.json()
    assert (
        body["rows"]
        == body["inserted"] + body["duplicates"] + body["quarantined"] + body["skipped"]
    )
    ws = served.app.state.jingzhun.readers.get()
    assert ws.store.scalar("SELECT count(*) FROM events WHERE event_id = 'good-1'") == 1
    assert ws.store.scalar("SELECT count(*) FROM users") >= 0  # the tables are all still there

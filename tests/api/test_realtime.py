"""Real time through the server: an accepted event is in the user's live traits when the
request is answered, and a full build afterwards computes the same values."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jingzhun.workspace import Workspace

COMPARED = (
    "events",
    "frequency",
    "monetary",
    "refunded",
    "aov",
    "order_lines",
    "units",
    "recency_days",
    "n_product_viewed",
    "n_product_added",
)


@pytest.fixture
def built(shop, tmp_path: Path) -> Path:
    db = tmp_path / "shop.duckdb"
    with Workspace.open(db) as ws:
        ws.ingest.files("users", [shop.file("users")])
        ws.ingest.files("items", [shop.file("items")])
        ws.ingest.files("events", [shop.file("events")])
        ws.profiles.build()
        ws.recs.train("itemknn")
    return db


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def test_event_shows_in_live_traits_and_a_rebuild_agrees(server, built: Path) -> None:
    served = server(built)
    read, ingest, admin = served.client("read"), served.client("ingest"), served.client("admin")
    ws = served.app.state.jingzhun.readers.get()
    users = [
        r[0]
        for r in ws.store.rows(
            "SELECT user_id FROM profiles WHERE frequency > 0 ORDER BY user_id LIMIT 3"
        )
    ]
    items = [r[0] for r in ws.store.rows("SELECT item_id FROM items ORDER BY item_id LIMIT 5")]
    before = {u: read.get(f"/v1/users/{u}").json() for u in users}
    for u in users:
        assert before[u]["live"]["events"] == before[u]["traits"]["events"]
    u = users[0]
    batch = [
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": u,
            "messageId": "rt-1",
            "timestamp": _now(),
            "properties": {"product_id": items[0], "price": 10},
        },
        {
            "type": "track",
            "event": "Order Completed",
            "userId": u,
            "messageId": "rt-2",
            "timestamp": _now(),
            "properties": {
                "order_id": "rt-o1",
                "products": [
                    {"product_id": items[1], "price": 10.0, "quantity": 2},
                    {"product_id": items[2], "price": 5.0, "quantity": 1},
                ],
            },
        },
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "brand-new-7",
            "messageId": "rt-3",
            "timestamp": _now(),
            "properties": {"product_id": items[3]},
        },
    ]
    assert ingest.post("/v1/batch", json={"batch": batch}).status_code == 200
    after = read.get(f"/v1/users/{u}").json()
    # answered means in: the live traits already hold the batch (no waiting, no polling)
    live = after["live"]
    assert live["events"] == before[u]["live"]["events"] + 3
    assert live["frequency"] == before[u]["live"]["frequency"] + 1
    assert live["monetary"] == pytest.approx(before[u]["live"]["monetary"] + 25.0)
    assert live["recency_days"] == 0
    assert items[2] in live["last_items"] or items[1] in live["last_items"]
    # a user with no profile yet: live traits only
    new = read.get("/v1/users/brand-new-7").json()
    assert new["traits"] == {} and new["live"]["events"] == 1
    assert read.get("/v1/users/never-seen-9").status_code == 404
    # the next full build computes the same values
    as_of = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    r = admin.post(
        "/v1/jobs", json={"kind": "profile_build", "params": {"as_of": as_of.isoformat()}}
    )
    job_id = r.json()["job_id"]
    for _ in range(600):
        job = admin.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
    live_state = served.app.state.jingzhun.live
    for user in [*users, "brand-new-7"]:
        rebuilt = read.get(f"/v1/users/{user}").json()["traits"]
        incremental = live_state.get(user, as_of=as_of)
        for name in COMPARED:
            if rebuilt.get(name) is None:
                assert incremental.get(name) is None, (user, name)
            else:
                assert incremental[name] == pytest.approx(rebuilt[name], rel=1e-9), (user, name)


def test_recommendations_follow_fresh_events(server, built: Path) -> None:
    served = server(built)
    read, ingest = served.client("read"), served.client("ingest")
    ws = served.app.state.jingzhun.readers.get()
    items = [
        r[0]
        for r in ws.store.rows(
            "SELECT item_id FROM events WHERE item_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 40"
        )
    ]
    cold = read.get("/v1/users/visitor-1/recommendations", params={"k": 10}).json()
    views = [
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "visitor-1",
            "messageId": f"v-{i}",
            "timestamp": _now(),
            "properties": {"product_id": item},
        }
        for i, item in enumerate(items[30:34])
    ]
    assert ingest.post("/v1/batch", json={"batch": views}).status_code == 200
    warm = read.get("/v1/users/visitor-1/recommendations", params={"k": 10}).json()
    ids = lambda body: [x["item_id"] for x in body["items"]]  # noqa: E731
    assert ids(cold) != ids(warm)
    # Scored from the live interactions, the route answers what the facade's history query
    # over the store gives: for the new visitor, and for a held user whose new event was
    # folded into what the server holds (not read again).
    assert warm["items"] == ws.recs.for_user("visitor-1", 10).to_dict()["items"]
    buyer = ws.store.rows(
        "SELECT user_id FROM events WHERE event = 'order_completed' GROUP BY 1 "
        "ORDER BY count(*) DESC, 1 LIMIT 1"
    )[0][0]
    before = read.get(f"/v1/users/{buyer}/recommendations", params={"k": 10}).json()
    assert before["items"] == ws.recs.for_user(buyer, 10).to_dict()["items"]
    assert buyer in served.app.state.jingzhun.live
    more = [{**v, "userId": buyer, "messageId": f"b-{i}"} for i, v in enumerate(views)]
    assert ingest.post("/v1/batch", json={"batch": more}).status_code == 200
    after = read.get(f"/v1/users/{buyer}/recommendations", params={"k": 10}).json()
    assert after["items"] == ws.recs.for_user(buyer, 10).to_dict()["items"]
    assert after["items"] != before["items"]


def _live_users(served) -> float:
    text = served.client(None).get("/metrics").text
    return float(
        next(
            line.split()[1] for line in text.splitlines() if line.startswith("jingzhun_live_users ")
        )
    )


def _most_recently_active(ws: Workspace, n: int) -> list[str]:
    """The ``n`` users whose latest stitched event is newest (as the warm-up orders them)."""
    return [
        r[0]
        for r in ws.store.rows(
            "SELECT coalesce(e.user_id, i.user_id) AS u FROM events e LEFT JOIN identities i "
            "ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id WHERE NOT e.custom "
            "GROUP BY 1 HAVING u IS NOT NULL ORDER BY max(e.ts) DESC, 1 LIMIT ?",
            [n],
        )
    ]


def _wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_warm_up_holds_the_active_users_then_known_users_without_events(
    server, built: Path
) -> None:
    with Workspace.open(built) as ws:
        ws.ingest.files(
            "users", ["-"], format="jsonl", stdin=io.BytesIO(b'{"user_id": "quiet-1"}\n')
        )
        active = ws.store.scalar(
            "SELECT count(DISTINCT coalesce(e.user_id, i.user_id)) FROM events e "
            "LEFT JOIN identities i ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id "
            "WHERE NOT e.custom"
        )
        known = ws.store.scalar(
            "SELECT count(*) FROM (SELECT user_id FROM users UNION "
            "SELECT coalesce(e.user_id, i.user_id) FROM events e LEFT JOIN identities i "
            "ON e.user_id IS NULL AND i.anonymous_id = e.anonymous_id WHERE NOT e.custom) "
            "WHERE user_id IS NOT NULL"
        )
        latest = _most_recently_active(ws, 5)
    assert known > active
    served = server(built)
    assert _wait_for(lambda: _live_users(served) == known), _live_users(served)
    live = served.app.state.jingzhun.live
    assert "quiet-1" in live and all(u in live for u in latest)
    # A user without events is held too: their list is the cold start, with no query.
    body = served.client("read").get("/v1/users/quiet-1/recommendations").json()
    assert body["cold_start"] is True and body["items"]


def test_with_little_room_the_warm_up_keeps_the_most_recently_active(server, built: Path) -> None:
    with Workspace.open(built) as ws:
        settings = ws.settings.model_copy(
            update={"server": ws.settings.server.model_copy(update={"live_users": 5})}
        )
        latest = _most_recently_active(ws, 5)
    served = server(built, settings=settings)
    assert _wait_for(lambda: _live_users(served) == 5)
    live = served.app.state.jingzhun.live
    time.sleep(0.5)  # the warm-up is over: nothing more comes in
    assert len(live) == 5 and all(u in live for u in latest)

"""Keys managed over the API, and jobs running in the server while tracking and reads go on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from jingzhun.workspace import Workspace
from tests.api.conftest import wait_job


def test_keys_over_the_api(server) -> None:
    served = server()
    admin = served.client("admin")
    r = admin.post("/v1/keys", json={"name": "shop-web", "scope": "ingest"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert key.startswith("jz_ingest_")
    listed = admin.get("/v1/keys").json()["items"]
    assert "shop-web" in {k["name"] for k in listed}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    track = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "u1",
        "properties": {"product_id": "p"},
    }
    assert (
        httpx.post(
            f"{served.url}/v1/track", json=track, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )
    assert admin.delete("/v1/keys/shop-web").json()["active"] is False
    # revoked on this server at once
    r = httpx.post(f"{served.url}/v1/track", json=track, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    # bad input: named, never a 500
    r = admin.post("/v1/keys", json={"name": "a b;drop", "scope": "ingest"})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    r = admin.post("/v1/keys", json={"name": "x", "scope": "root"})
    assert r.status_code == 422 and "scope" in r.json()["detail"]
    assert admin.delete("/v1/keys/nobody").status_code == 404
    assert admin.post("/v1/keys", json={"name": "test-read", "scope": "read"}).status_code == 409
    # only admin keys manage keys
    assert served.client("read").get("/v1/keys").status_code == 403
    assert (
        served.client("ingest").post("/v1/keys", json={"name": "x", "scope": "admin"}).status_code
        == 403
    )


def test_key_use_is_recorded_by_the_writer(server) -> None:
    served = server()
    served.client("read").get("/v1/models")
    deadline = time.monotonic() + 10
    ws = served.app.state.jingzhun.readers.get()
    while time.monotonic() < deadline:
        if (
            ws.store.scalar("SELECT last_used_at FROM api_keys WHERE name = 'test-read'")
            is not None
        ):
            break
        time.sleep(0.05)
    else:
        pytest.fail("last_used_at was never written")


def test_rate_limit_answers_429_with_retry_after(server, tmp_path: Path) -> None:
    from jingzhun.config import Settings

    settings = Settings()
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"rate_per_second": 0.01, "rate_burst": 3})
        }
    )
    served = server(settings=settings)
    c = served.client("read")
    codes = [c.get("/v1/models").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = c.get("/v1/models")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "test-read" in r.json()["detail"]
    # another key has its own bucket
    assert served.client("admin").get("/v1/models").status_code == 200


BAD_JOBS = [
    ({"kind": "rm_rf"}, "not a job"),
    ({"kind": "segment_run", "params": {"kk": 3}}, "params.kk"),
    ({"kind": "segment_run", "params": {"method": "magic"}}, "params.method"),
    ({"kind": "recommend_batch", "params": {"k": 0}}, "params.k"),
    ({"kind": "profile_build", "params": {"as_of": "yesterday-ish"}}, "params.as_of"),
    ({"kind": "predict_train", "params": "x"}, "params"),
    ({}, "kind"),
]


@pytest.mark.parametrize(("body", "words"), BAD_JOBS)
def test_bad_jobs_are_422_naming_the_field(server, body: dict, words: str) -> None:
    served = server()
    r = served.client("admin").post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
    assert served.client("admin").get("/v1/jobs").json()["items"] == []


def test_jobs_need_admin(server) -> None:
    served = server()
    assert served.client("read").post("/v1/jobs", json={"kind": "profile_build"}).status_code == 403
    assert served.client(None).get("/v1/jobs").status_code == 401
    assert served.client("admin").get("/v1/jobs/j-nope").status_code == 404


def _shop_store(shop, db: Path) -> Path:
    """A store holding the simulated shop's users, items and events."""
    with Workspace.open(db) as ws:
        for kind in ("users", "items", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
    return db


def test_job_runs_while_tracking_and_reads_go_on(server, shop, tmp_path: Path) -> None:
    db = _shop_store(shop, tmp_path / "shop.duckdb")
    served = server(db)
    admin = served.client("admin")
    stop = threading.Event()
    errors: list[str] = []
    sent = [0]

    def track() -> None:
        c = served.client("ingest")
        i = 0
        while not stop.is_set():
            batch = [
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": f"live-{i % 9}",
                    "messageId": f"live-{i}-{j}",
                    "properties": {"product_id": "p1"},
                }
                for j in range(50)
            ]
            r = c.post("/v1/batch", json={"batch": batch})
            if r.status_code != 200:
                errors.append(r.text)
            sent[0] += 50
            i += 1

    def read() -> None:
        c = served.client("read")
        while not stop.is_set():
            r = c.get("/v1/models")
            if r.status_code != 200:
                errors.append(r.text)

    workers = [
        threading.Thread(target=track),
        threading.Thread(target=read),
        threading.Thread(target=read),
    ]
    for w in workers:
        w.start()
    try:
        r = admin.post("/v1/jobs", json={"kind": "profile_build"})
        assert r.status_code == 202
        job = wait_job(admin, r.json()["job_id"])
        r = admin.post("/v1/jobs", json={"kind": "recommend_train", "params": {"model": "pop"}})
        trained = wait_job(admin, r.json()["job_id"])
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert job["state"] == "succeeded", job
    assert job["result"]["users"] > 1000
    assert trained["state"] == "succeeded", trained
    assert not errors, errors[:3]
    assert sent[0] > 0
    ws = served.app.state.jingzhun.readers.get()
    assert ws.store.scalar("SELECT count(*) FROM events WHERE event_id LIKE 'live-%'") == sent[0]
    models = served.client("read").get("/v1/models").json()
    assert any(m.get("kind") == "recommender" and m.get("active") for m in models["items"])
    text = httpx.get(f"{served.url}/metrics").text
    assert 'jingzhun_job_duration_seconds_count{kind="profile_build",state="succeeded"} 1.0' in text
    # The new model is served at once: the job's hook reloaded it before "succeeded" showed.
    some = ws.store.scalar("SELECT user_id FROM profiles ORDER BY user_id LIMIT 1")
    recs = served.client("read").get(f"/v1/users/{some}/recommendations").json()
    assert recs["model"] == trained["result"]["model_id"]


def test_a_job_reports_its_progress(server, shop, tmp_path: Path) -> None:
    db = _shop_store(shop, tmp_path / "store.duckdb")
    with Workspace.open(db) as ws:
        ws.recs.train("pop")
    served = server(db)
    admin = served.client("admin")
    r = admin.post("/v1/jobs", json={"kind": "recommend_batch", "params": {"k": 5}})
    assert r.status_code == 202 and r.json()["progress"] is None  # queued: nothing yet
    job = wait_job(admin, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    users = served.app.state.jingzhun.readers.get().store.scalar(
        "SELECT count(DISTINCT user_id) FROM recommendations"
    )
    assert job["progress"]["done"] == job["progress"]["total"] >= users > 0

"""The REST read routes against the real server: the same numbers as the facades, keys and
scopes, 404s that say what to do, cursor pages that walk every row once, and bad parameters
answered 422 naming the field (never 500); users and items sent in batches.

The simulated shop is ingested, profiled, segmented (rfm and k-means), given recommenders and
propensity scores once per module; one server answers the read tests over a copy of that
store, and each write test starts its own over a fresh copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jingzhun.ingest.quarantine import Selection
from jingzhun.ingest.read import contacts
from jingzhun.workspace import Workspace
from tests.api.conftest import Served, start

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def base(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("read_routes") / "base.duckdb"
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        ws.profiles.build()
        ws.segments.run("rfm")
        ws.segments.run("kmeans", k=3, name="value", stability_resamples=0)
        ws.recs.train("popularity")
        ws.recs.train("itemknn")  # the active one: item neighbours for similar and context
        ws.predict.train("propensity", models=["logistic"])
        ws.predict.score("propensity")
    return db


@pytest.fixture(scope="module")
def ws(base: Path) -> Iterator[Workspace]:
    """The facades over the base store: what the server must answer."""
    with Workspace.open(base, read_only=True) as w:
        yield w


@pytest.fixture(scope="module")
def served(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("read_server") / "store.duckdb"
    shutil.copyfile(base, db)
    s = start(db)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(served: Served) -> httpx.Client:
    return served.client("read")


@pytest.fixture(scope="module")
def busiest(ws: Workspace) -> str:
    """A profiled user with many events (and a list of recommendations to compare)."""
    return ws.sql(
        "SELECT e.user_id FROM events e JOIN profiles p USING (user_id) "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )["user_id"][0]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status
    return body


def rfc3339(value: datetime | str) -> str:
    """A stored (naive UTC) time as the API writes it: RFC 3339, UTC, six fraction digits."""
    if isinstance(value, str):  # a facade's to_dict() text: '2026-12-06 10:17:13.222933'
        value = datetime.fromisoformat(value)
    assert value.tzinfo is None, value
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(value: Any) -> Any:
    """A facade's value as the API sends it (datetimes as RFC 3339 UTC text)."""
    return json.loads(json.dumps(value, default=rfc3339))


def iso(text: str | None) -> str | None:
    return None if text is None else rfc3339(text)


# -- users --------------------------------------------------------------------------------------


def test_user_is_the_facades_view(api: httpx.Client, ws: Workspace, busiest: str) -> None:
    body = api.get(f"/v1/users/{busiest}").json()
    profile = ws.profiles.user(busiest, events=0)
    assert body["user_id"] == busiest
    assert body["tags"] == profile.tags
    assert body["anonymous_ids"] == profile.anonymous_ids
    traits = profile.to_dict()["traits"]
    assert body["traits"].keys() == traits.keys()
    for name in ("recency_days", "frequency", "monetary", "aov"):
        assert body["traits"][name] == pytest.approx(traits[name])
    for name in ("as_of", "first_seen", "last_seen", "last_order_at"):
        assert body["traits"][name] == iso(traits[name])
    assert {s["name"] for s in body["segments"]} == {"rfm", "value"}
    assert body["segments"] == [s.to_dict() for s in ws.segments.of_user(busiest)]
    scores = ws.predict.of_user(busiest)
    assert [s["score"] for s in body["scores"]] == ["propensity"]
    assert body["scores"][0]["value"] == pytest.approx(float(scores["value"][0]))
    assert body["scores"][0]["percentile"] == pytest.approx(float(scores["percentile"][0]))
    assert body["scores"][0]["reasons"] == scores["reasons"][0]


def test_user_segment_names_in_chinese(api: httpx.Client, ws: Workspace, busiest: str) -> None:
    zh = api.get(f"/v1/users/{busiest}", params={"lang": "zh"}).json()["segments"]
    assert zh == [s.to_dict() for s in ws.segments.of_user(busiest, lang="zh")]
    rfm = next(s for s in zh if s["name"] == "rfm")
    assert rfm["label"] and all(ord(c) > 127 or not c.isalpha() for c in rfm["label"])


def test_unknown_user_is_a_404_that_says_how_to_find_users(api: httpx.Client) -> None:
    body = problem(api.get("/v1/users/nobody-42"), 404)
    assert "'nobody-42'" in body["detail"]
    assert "POST /v1/users" in body["detail"] and "userId" in body["detail"]
    body = problem(api.get("/v1/users/nobody-42/events"), 404)
    assert "'nobody-42'" in body["detail"]


# -- the timeline -------------------------------------------------------------------------------


def test_timeline_pages_walk_every_event_once(
    api: httpx.Client, ws: Workspace, busiest: str
) -> None:
    expected = ws.ingest.timeline(busiest, limit=100_000)
    assert len(expected) > 20
    seen: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = api.get(f"/v1/users/{busiest}/events", params=params).json()
        assert len(page["items"]) <= 7
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == -(-len(expected) // 7)
    assert [e["event_id"] for e in seen] == [e["event_id"] for e in expected]
    assert len({e["event_id"] for e in seen}) == len(expected)
    stamps = [e["ts"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    first = expected[0]
    assert seen[0]["revenue"] == first["revenue"] and seen[0]["event"] == first["event"]


def test_timeline_of_exactly_one_page_has_no_next_cursor(
    api: httpx.Client, ws: Workspace, busiest: str
) -> None:
    n = len(ws.ingest.timeline(busiest, limit=100_000))
    page = api.get(f"/v1/users/{busiest}/events", params={"limit": min(n, 1000)}).json()
    assert len(page["items"]) == n and page["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "e30", "WyJtb2RlbHMiLCIyMDI2LTAxLTAxIiwieCJd", "x" * 3000, "WyJldmVudHMiLDEsMl0"],
)
def test_bad_cursor_is_a_422_naming_cursor(api: httpx.Client, busiest: str, cursor: str) -> None:
    body = problem(api.get(f"/v1/users/{busiest}/events", params={"cursor": cursor}), 422)
    assert body["detail"].startswith("cursor")


# -- recommendations ----------------------------------------------------------------------------


def test_recommendations_are_the_facades(api: httpx.Client, ws: Workspace, busiest: str) -> None:
    body = api.get(f"/v1/users/{busiest}/recommendations", params={"k": 5}).json()
    expected = ws.recs.for_user(busiest, 5)
    assert body["model"] == expected.model and body["cold_start"] is False
    assert body["items"] == expected.items
    assert all(i["explanation"] for i in body["items"])
    zh = api.get(f"/v1/users/{busiest}/recommendations", params={"k": 5, "lang": "zh"}).json()
    assert [i["item_id"] for i in zh["items"]] == [i["item_id"] for i in body["items"]]
    assert zh["items"] == ws.recs.for_user(busiest, 5, lang="zh").items
    assert zh["items"][0]["explanation"] != body["items"][0]["explanation"]


def test_unknown_user_gets_cold_start_not_an_error(api: httpx.Client, ws: Workspace) -> None:
    r = api.get("/v1/users/brand-new-visitor/recommendations", params={"k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is True and body["known_to_model"] is False
    assert len(body["items"]) == 4
    assert body["items"] == ws.recs.for_user("brand-new-visitor", 4).items


def test_context_items_change_the_recommendations(
    api: httpx.Client, ws: Workspace, busiest: str
) -> None:
    plain_list = api.get(f"/v1/users/{busiest}/recommendations", params={"k": 8}).json()
    items = ws.sql("SELECT item_id FROM items ORDER BY item_id LIMIT 2")["item_id"].tolist()
    context = ",".join(items)
    body = api.get(
        f"/v1/users/{busiest}/recommendations", params={"k": 8, "context": context}
    ).json()
    assert body["context"] == items and body["unknown_items"] == []
    assert [i["item_id"] for i in body["items"]] != [i["item_id"] for i in plain_list["items"]]
    assert not set(items) & {i["item_id"] for i in body["items"]}  # not what they look at
    assert body["items"] == ws.recs.in_context(items, 8, user_id=busiest).items
    # An unknown context item is reported and does not count.
    odd = api.get(
        f"/v1/users/{busiest}/recommendations",
        params={"k": 8, "context": f"{context},no-such-item"},
    ).json()
    assert odd["unknown_items"] == ["no-such-item"]
    assert [i["item_id"] for i in odd["items"]] == [i["item_id"] for i in body["items"]]


def test_context_lists_blend_the_users_history(
    api: httpx.Client, ws: Workspace, busiest: str
) -> None:
    # The same context for two users with different histories: lists of their own, leaving
    # out what each bought; a user without history gets the context's list.
    other = ws.sql(
        "SELECT e.user_id FROM events e JOIN profiles p USING (user_id) WHERE e.user_id <> ? "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        [busiest],
    )["user_id"][0]
    context = ws.sql(
        "SELECT item_id FROM events WHERE item_id IS NOT NULL GROUP BY 1 "
        "ORDER BY count(*) DESC, 1 LIMIT 2"
    )["item_id"].tolist()
    lists = {}
    for user in (busiest, other, "no-history-visitor"):
        body = api.get(
            f"/v1/users/{user}/recommendations", params={"k": 10, "context": ",".join(context)}
        ).json()
        lists[user] = [i["item_id"] for i in body["items"]]
        assert len(lists[user]) == 10 and not set(context) & set(lists[user])
        assert body["cold_start"] is False
    assert lists[busiest] != lists[other]
    bought = set(
        ws.sql(
            "SELECT DISTINCT item_id FROM events WHERE user_id = ? AND event = 'order_completed'",
            [busiest],
        )["item_id"]
    )
    assert bought and not bought & set(lists[busiest])
    alone = ws.recs.in_context(context, 10, user_id="no-history-visitor").items
    assert lists["no-history-visitor"] == [i["item_id"] for i in alone]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"k": 0}, "query.k"),
        ({"k": 101}, "query.k"),
        ({"k": "ten"}, "query.k"),
        ({"lang": "fr"}, "query.lang"),
        ({"context": ",".join(f"i{n}" for n in range(51))}, "context"),
        ({"context": "x" * 300}, "context"),
    ],
)
def test_bad_recommendation_params_are_422_naming_the_field(
    api: httpx.Client, busiest: str, params: dict[str, Any], field: str
) -> None:
    body = problem(api.get(f"/v1/users/{busiest}/recommendations", params=params), 422)
    assert body["detail"].startswith(field)


# -- items --------------------------------------------------------------------------------------


def test_similar_items_are_the_models_neighbours(api: httpx.Client, ws: Workspace) -> None:
    item = ws.sql(
        "SELECT item_id FROM events WHERE item_id IN (SELECT item_id FROM items) "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )["item_id"][0]
    body = api.get(f"/v1/items/{item}/similar", params={"k": 6}).json()
    expected = ws.recs.similar(item, 6)
    assert body["known_to_model"] is True and body["model"] == expected.model
    assert body["items"] == expected.items and len(body["items"]) == 6
    assert item not in {i["item_id"] for i in body["items"]}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_unknown_item_is_a_404(api: httpx.Client) -> None:
    body = problem(api.get("/v1/items/no-such-sku/similar"), 404)
    assert "'no-such-sku'" in body["detail"]
    problem(api.get("/v1/items/x/similar", params={"k": 1000}), 422)


# -- segments -----------------------------------------------------------------------------------


def test_segment_runs_with_quality_and_sizes(api: httpx.Client, ws: Workspace) -> None:
    body = api.get("/v1/segments").json()
    runs = ws.segments.list()
    assert [r["run_id"] for r in body["items"]] == runs["run_id"].tolist()
    assert body["next_cursor"] is None
    value = next(r for r in body["items"] if r["name"] == "value")
    info = ws.segments.get(value["run_id"])
    assert value["method"] == "kmeans" and value["segments"] == 3
    assert value["silhouette"] == pytest.approx(info.metrics["silhouette"])
    assert sum(s["users"] for s in value["sizes"]) == value["users"] == info.users
    assert [s["label"] for s in value["sizes"]] == [p["label"] for p in info.portraits]
    # One run a page walks them all.
    seen, cursor = [], None
    while True:
        page = api.get(
            "/v1/segments", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        seen += [r["run_id"] for r in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == runs["run_id"].tolist()


def test_segment_portraits_in_both_languages(api: httpx.Client, ws: Workspace) -> None:
    body = api.get("/v1/segments/value").json()
    info = ws.segments.get("value")
    assert body["run_id"] == info.run_id and body["metrics"] == plain(info.metrics)
    assert [p["segment"] for p in body["portraits"]] == [p["segment"] for p in info.portraits]
    assert [p["users"] for p in body["portraits"]] == [p["users"] for p in info.portraits]
    assert body["portraits"][0]["traits"] == plain(info.portraits[0]["traits"])
    zh = api.get("/v1/segments/rfm", params={"lang": "zh"}).json()
    assert {p["label"] for p in zh["portraits"]} <= {
        "重要价值客户", "忠诚客户", "潜在忠诚客户", "新客户", "有潜力客户", "需要关注",
        "即将沉睡", "有流失风险", "不能流失的客户", "休眠客户", "已流失客户", "尚未下单",
    }  # fmt: skip
    assert [p["label"] for p in zh["portraits"]] == [
        p["label"] for p in ws.segments.get("rfm", lang="zh").portraits
    ]


def test_unknown_segment_is_a_404_naming_the_known_ones(api: httpx.Client) -> None:
    body = problem(api.get("/v1/segments/nope"), 404)
    assert "'nope'" in body["detail"] and "value" in body["detail"]
    problem(api.get("/v1/segments/value", params={"lang": "de"}), 422)


# -- models -------------------------------------------------------------------------------------


def test_models_are_the_registrys(api: httpx.Client, ws: Workspace) -> None:
    body = api.get("/v1/models").json()
    records = ws.models.list()
    assert [m["model_id"] for m in body["items"]] == [r.model_id for r in records]
    first = records[0].to_dict(full=False)
    assert body["items"][0] == first | {
        "as_of": iso(first["as_of"]),
        "created_at": iso(first["created_at"]),
    }
    recs = api.get("/v1/models", params={"kind": "recommender"}).json()["items"]
    assert [m["method"] for m in recs] == ["itemknn", "popularity"]
    assert [m["active"] for m in recs] == [True, False]
    seen, cursor = [], None
    while True:
        page = api.get("/v1/models", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [m["model_id"] for m in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.model_id for r in records]


def test_unknown_model_kind_is_a_422_naming_kind(api: httpx.Client) -> None:
    body = problem(api.get("/v1/models", params={"kind": "horoscope"}), 422)
    assert body["detail"].startswith("kind") and "recommender" in body["detail"]


# -- quarantine ---------------------------------------------------------------------------------


def test_quarantine_pages_and_reasons(api: httpx.Client, ws: Workspace) -> None:
    expected = ws.ingest.quarantine.rows(limit=None)
    assert len(expected) > 100
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/quarantine", params=params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["quarantine_id"] for r in seen] == expected["quarantine_id"].tolist()
    assert seen[0]["reason"] == expected["reason"][0]
    assert seen[0]["raw"] == json.loads(expected["raw"][0])
    reasons = ws.ingest.quarantine.reasons()
    assert page["reasons"] == reasons.to_dict("records")


def test_quarantine_filters(api: httpx.Client, ws: Workspace) -> None:
    users = ws.ingest.quarantine.rows(Selection(reason="birth_year"), limit=None)
    page = api.get("/v1/quarantine", params={"reason": "birth_year"}).json()
    assert [r["quarantine_id"] for r in page["items"]] == users["quarantine_id"].tolist()
    assert {r["kind"] for r in page["reasons"]} == {"users"}
    batch = users["batch_id"][0]
    page = api.get("/v1/quarantine", params={"batch": batch, "limit": 1000}).json()
    assert {r["batch_id"] for r in page["items"]} == {batch}
    body = problem(api.get("/v1/quarantine", params={"batch": "b-nope"}), 404)
    assert "'b-nope'" in body["detail"]
    body = problem(api.get("/v1/quarantine", params={"limit": 0}), 422)
    assert body["detail"].startswith("query.limit")


# -- keys, scopes and never a 500 ---------------------------------------------------------------

READS = [
    "/v1/users/{user}",
    "/v1/users/{user}/events",
    "/v1/users/{user}/recommendations",
    "/v1/items/{item}/similar",
    "/v1/segments",
    "/v1/segments/value",
    "/v1/models",
    "/v1/quarantine",
]


@pytest.fixture(scope="module")
def routes(ws: Workspace, busiest: str) -> list[str]:
    item = ws.sql("SELECT min(item_id) AS i FROM items")["i"][0]
    return [r.format(user=busiest, item=item) for r in READS]


def test_read_routes_need_a_read_or_admin_key(served: Served, routes: list[str]) -> None:
    nobody, ingest, admin = served.client(None), served.client("ingest"), served.client("admin")
    for path in routes:
        problem(nobody.get(path), 401)
        body = problem(ingest.get(path), 403)
        assert "'read'" in body["detail"]
        assert admin.get(path).status_code == 200, path


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=1e99",
        "k=NaN",
        "cursor=",
        "cursor=%00",
        "lang=",
        "context=,,,",
        "kind=%FF",
        "batch=%27%3B--",
        "reason=%25",
        "limit=99999999999999999999999",
    ],
)
def test_odd_queries_are_never_a_500(api: httpx.Client, routes: list[str], query: str) -> None:
    for path in routes:
        r = api.get(f"{path}?{query}")
        assert r.status_code < 500, (path, query, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(PROBLEM)


# -- users and items sent in batches ------------------------------------------------------------


@pytest.fixture
def fresh(server, base: Path, tmp_path: Path) -> Served:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(base, db)
    return server(db)


def test_post_users_ingests_them_and_quarantines_bad_rows(fresh: Served) -> None:
    c = fresh.client("ingest")
    r = c.post(
        "/v1/users",
        json={
            "users": [
                {"user_id": "api-u1", "city": "杭州", "email": "a@example.com", "plan": "gold"},
                {"user_id": "api-u2", "birth_year": 1800},
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["kind"], body["rows_read"], body["inserted"], body["quarantined"]) == (
        "users",
        2,
        1,
        1,
    )
    ws = fresh.app.state.jingzhun.readers.get()
    assert ws.store.rows(
        "SELECT city, attributes->>'plan' FROM users WHERE user_id = 'api-u1'"
    ) == [("杭州", "gold")]
    assert contacts(ws.store, ["api-u1"], ["email"])["email"].tolist() == ["a@example.com"]
    read = fresh.client("read")
    page = read.get("/v1/quarantine", params={"batch": body["batch_id"]}).json()
    assert [r["raw"]["user_id"] for r in page["items"]] == ["api-u2"]
    # Known now, so their timeline is empty rather than a 404; no profile until a build.
    events = read.get("/v1/users/api-u1/events")
    assert events.status_code == 200 and events.json() == {"items": [], "next_cursor": None}
    body = problem(read.get("/v1/users/api-u1"), 404)
    assert "profile_build" in body["detail"]


def test_post_items_then_similar_knows_them_but_the_model_does_not(fresh: Served) -> None:
    c = fresh.client("admin")
    ws = fresh.app.state.jingzhun.readers.get()
    known = ws.store.scalar("SELECT item_id FROM events WHERE item_id IS NOT NULL LIMIT 1")
    shown = c.get(f"/v1/items/{known}/similar").json()["items"][0]  # the model is loaded now
    renamed = {"item_id": shown["item_id"], "title": "改名 Renamed", "price": 3}
    r = c.post("/v1/items", json={"items": [{"item_id": "sku-api-1", "title": "Tea", "price": 9}]})
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    assert c.post("/v1/items", json={"items": [renamed]}).json()["updated"] == 1
    # The server reloaded its catalog: the new title is served at once.
    again = c.get(f"/v1/items/{known}/similar").json()["items"]
    assert {i["item_id"]: i["title"] for i in again}[shown["item_id"]] == "改名 Renamed"
    body = c.get("/v1/items/sku-api-1/similar").json()
    assert body == {
        "item_id": "sku-api-1",
        "model": body["model"],
        "known_to_model": False,
        "items": [],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"users": [{"city": "x"}]}, "body.users[0].user_id"),
        ({"users": [{"user_id": ""}]}, "body.users[0].user_id"),
        ({"users": []}, "body.users"),
        ({"people": []}, "body.users"),
        ({"users": [{"user_id": "a", "gender": {"x": 1}}]}, "body.users[0].gender"),
    ],
)
def test_bad_user_batches_are_422_naming_the_field(
    fresh: Served, body: dict[str, Any], field: str
) -> None:
    r = fresh.client("ingest").post("/v1/users", json=body)
    assert problem(r, 422)["detail"].startswith(field)


def test_writes_need_an_ingest_or_admin_key(fresh: Served) -> None:
    one = {"users": [{"user_id": "k1"}]}
    problem(fresh.client(None).post("/v1/users", json=one), 401)
    problem(fresh.client("read").post("/v1/users", json=one), 403)
    problem(fresh.client("read").post("/v1/items", json={"items": [{"item_id": "i"}]}), 403)


def test_concurrent_reads_answer_as_one_at_a_time(
    served: Served, ws: Workspace, busiest: str
) -> None:
    """Requests in parallel threads each read through their own thread's reader."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [
        f"/v1/users/{busiest}/recommendations?k=5",
        f"/v1/users/{busiest}/events?limit=20",
        f"/v1/users/{busiest}",
        "/v1/segments/value",
    ] * 12
    clients = [served.client("read") for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda ip: clients[ip[0] % 8].get(ip[1]), enumerate(paths)))
    assert [a.status_code for a in answers] == [200] * len(paths)
    by_path: dict[str, set[str]] = {}
    for path, a in zip(paths, answers, strict=True):
        body = a.json()
        if isinstance(body.get("live"), dict):
            body["live"].pop("as_of")  # live traits are evaluated at the moment of asking
        by_path.setdefault(path, set()).add(json.dumps(body, sort_keys=True))
    assert all(len(texts) == 1 for texts in by_path.values())  # the same answer every time


def test_every_read_route_is_documented(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    for path in [*READS, "/v1/users", "/v1/items"]:
        templated = path.replace("{user}", "{user_id}").replace("{item}", "{item_id}")
        templated = templated.replace("/segments/value", "/segments/{name}")
        for method, op in spec["paths"][templated].items():
            assert op["summary"], (method, templated)
            assert "application/json" in op["responses"]["200"]["content"], (method, templated)

"""The recommend stage's read functions: a hand-written batch read back exactly (overview,
reasons, cold start, top items, examples, lists, titles), and a batch the stage wrote itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.recommend import read
from jingzhun.workspace import Workspace

CREATED = datetime(2024, 3, 10, 12)
ITEMS = (
    "item_id,title,category,price\n"
    "i1,Red cup,home,10\ni2,Blue pot,home,40\ni3,,home,5\ni4,Unshown,home,7\n"
)
#: user, rank, item, score, reason: u1 and u3 mix purchases with other reasons, u2 is cold
#: start (popular and segment items only), u4 has purchase reasons only.
BATCH = [
    ("u1", 1, "i1", 0.9, "bought:i2"),
    ("u1", 2, "i2", 0.8, "viewed:i1"),
    ("u1", 3, "i3", 0.7, "popular"),
    ("u2", 1, "i1", 0.5, "popular"),
    ("u2", 2, "i3", 0.4, "segment:2"),
    ("u3", 1, "i2", 0.6, "bought:i1"),
    ("u3", 2, "i1", 0.5, "interest:home"),
    ("u4", 1, "i1", 0.3, "bought:i3"),
    ("u4", 2, "i2", 0.2, "bought:i1"),
]


@pytest.fixture(scope="module")
def batch_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A catalog and the hand-written batch of model hybrid-1 (the tests only read it)."""
    folder = tmp_path_factory.mktemp("recommend_read")
    with Workspace.open(folder / "store.duckdb") as ws:
        path = folder / "items.csv"
        path.write_text(ITEMS, encoding="utf-8")
        assert ws.ingest("items", [path]).quarantined == 0
        ws.store.con.executemany(
            "INSERT INTO recommendations VALUES (?, ?, ?, ?, 'hybrid-1', ?, ?)",
            [[u, r, i, s, why, CREATED] for u, r, i, s, why in BATCH],
        )
        yield ws


def test_without_a_batch(ws: Workspace) -> None:
    assert read.batch_overview(ws.store) is None
    assert read.cold_start_share(ws.store) == 0.0
    assert read.reason_counts(ws.store).empty
    assert read.example_users(ws.store) == []
    assert read.user_recommendations(ws.store, "u1").empty


def test_batch_overview(batch_ws: Workspace) -> None:
    b = read.batch_overview(batch_ws.store)
    assert b == read.BatchOverview(
        model="hybrid-1", users=4, items_shown=3, catalog_items=4, rows=9, created_at=CREATED
    )
    assert b.coverage == 0.75
    assert b.to_dict()["created_at"] == "2024-03-10 12:00:00"


def test_reason_counts_and_cold_start_share(batch_ws: Workspace) -> None:
    assert read.reason_counts(batch_ws.store).to_dict("records") == [
        {"kind": "bought", "n": 4},
        {"kind": "popular", "n": 2},
        {"kind": "interest", "n": 1},
        {"kind": "segment", "n": 1},
        {"kind": "viewed", "n": 1},
    ]
    assert read.cold_start_share(batch_ws.store) == 0.25  # u2 of four users


def test_top_items_with_titles(batch_ws: Workspace) -> None:
    top = read.top_items(batch_ws.store)
    assert top["item_id"].tolist() == ["i1", "i2", "i3"]
    assert top["n"].tolist() == [4, 3, 2]
    assert top["title"].tolist()[:2] == ["Red cup", "Blue pot"]
    assert pd.isna(top["title"].iloc[2])  # i3 has no title
    assert read.top_items(batch_ws.store, limit=1)["item_id"].tolist() == ["i1"]
    with pytest.raises(InputError, match="limit must be"):
        read.top_items(batch_ws.store, limit=0)


def test_example_users_mix_purchases_with_other_reasons(batch_ws: Workspace) -> None:
    users = read.example_users(batch_ws.store)
    assert sorted(users) == ["u1", "u3"]
    assert read.example_users(batch_ws.store) == users  # a fixed order
    assert read.example_users(batch_ws.store, limit=1) == users[:1]


def test_lists_of_some_users(batch_ws: Workspace) -> None:
    top = read.lists(batch_ws.store, ["u3", "u1", "nobody"], max_rank=1)
    assert list(top.columns) == [
        "user_id",
        "rank",
        "item_id",
        "title",
        "category",
        "price",
        "score",
        "reason",
        "model",
        "created_at",
    ]
    assert top[["user_id", "rank", "item_id", "reason"]].to_dict("records") == [
        {"user_id": "u1", "rank": 1, "item_id": "i1", "reason": "bought:i2"},
        {"user_id": "u3", "rank": 1, "item_id": "i2", "reason": "bought:i1"},
    ]
    whole = read.lists(batch_ws.store, ["u1", "u3"])
    assert whole["rank"].tolist() == [1, 2, 3, 1, 2]
    assert read.lists(batch_ws.store, []).empty
    with pytest.raises(InputError, match="max_rank must be"):
        read.lists(batch_ws.store, ["u1"], max_rank=0)


def test_user_recommendations_is_one_users_list_best_first(batch_ws: Workspace) -> None:
    recs = read.user_recommendations(batch_ws.store, "u1")
    assert recs["rank"].tolist() == [1, 2, 3]
    assert recs["item_id"].tolist() == ["i1", "i2", "i3"]
    assert recs["score"].tolist() == [0.9, 0.8, 0.7]
    assert recs["reason"].tolist() == ["bought:i2", "viewed:i1", "popular"]
    assert recs["title"].tolist()[:2] == ["Red cup", "Blue pot"]
    assert set(recs["model"]) == {"hybrid-1"}
    assert (recs["created_at"] == CREATED).all()
    assert "user_id" not in recs
    assert read.user_recommendations(batch_ws.store, "nobody").empty


def test_titles(batch_ws: Workspace) -> None:
    assert read.titles(batch_ws.store) == {
        "i1": "Red cup",
        "i2": "Blue pot",
        "i3": "",
        "i4": "Unshown",
    }
    assert read.titles(batch_ws.store, ["i2", "i3", "unknown"]) == {"i2": "Blue pot", "i3": ""}
    assert read.titles(batch_ws.store, []) == {}


EVENTS = """event_id,event,user_id,order_id,item_id,quantity,price,revenue,ts
e1,order_completed,u1,o1,i1,1,10,10,2024-03-01 10:00:00
e2,order_completed,u2,o2,i1,1,10,10,2024-03-02 10:00:00
e3,order_completed,u2,o3,i2,1,40,40,2024-03-03 10:00:00
e4,product_viewed,u3,,i3,,,,2024-03-04 10:00:00
"""


def test_a_batch_the_stage_wrote(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "store.duckdb") as ws:
        for kind, text in (("items", ITEMS), ("events", EVENTS)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == 0
        trained = ws.recommend_train("popularity")
        rows = ws.recommend_batch(2)
        b = read.batch_overview(ws.store)
        assert b is not None
        assert (b.model, b.users, b.rows, b.catalog_items) == (trained.model_id, 3, rows, 4)
        for user in ("u1", "u2", "u3"):
            recs = read.user_recommendations(ws.store, user)
            assert recs["rank"].tolist() == list(range(1, len(recs) + 1))
            assert recs["score"].is_monotonic_decreasing
        assert read.reason_counts(ws.store)["n"].sum() == rows


def test_catalog_items_by_id(batch_ws: Workspace) -> None:
    found = read.catalog_items(batch_ws.store, ["i2", "i3", "unknown", "i2"])
    assert found == {
        "i2": {"title": "Blue pot", "category": "home", "brand": None, "price": 40.0},
        "i3": {"title": None, "category": "home", "brand": None, "price": 5.0},
    }
    assert read.catalog_items(batch_ws.store, []) == {}
    assert batch_ws.recs.items(["i1"])["i1"]["title"] == "Red cup"


#: Item events over two weeks: i1 seen by three visitors (one twice, one a device) in the last
#: week, i2 by two, i3 by one and i4 only long before; a page view has no item.
POPULAR = """event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,ts
p1,product_viewed,u1,,,i1,,,,2024-03-10 10:00:00
p2,product_added,u1,,,i1,,,,2024-03-10 10:05:00
p3,product_viewed,,d9,,i1,,,,2024-03-11 10:00:00
p4,order_completed,u2,,o1,i1,1,10,10,2024-03-12 10:00:00
p5,product_viewed,u2,,,i2,,,,2024-03-12 11:00:00
p6,product_viewed,u3,,,i2,,,,2024-03-13 11:00:00
p7,product_viewed,u3,,,i3,,,,2024-03-14 11:00:00
p8,product_viewed,u1,,,i4,,,,2024-02-01 11:00:00
p9,product_viewed,u2,,,i4,,,,2024-02-01 11:00:00
p10,product_viewed,u3,,,i4,,,,2024-02-01 11:00:00
p11,product_viewed,u4,,,i4,,,,2024-02-01 11:00:00
p12,page_viewed,u4,,,,,,,2024-03-14 12:00:00
"""


def test_popular_items_are_the_most_visited_lately(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "store.duckdb") as ws:
        assert read.popular_items(ws.store).empty
        for kind, text in (("items", ITEMS), ("events", POPULAR)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == 0
        top = read.popular_items(ws.store, days=7)
        assert list(top["item_id"]) == ["i1", "i2", "i3"]
        assert list(top["visitors"]) == [3, 2, 1], "a visitor counts once; a device too"
        assert list(top["title"].iloc[:2]) == ["Red cup", "Blue pot"] and pd.isna(top["title"][2])
        assert set(top["category"]) == {"home"}
        assert list(read.popular_items(ws.store, days=60)["item_id"]) == ["i4", "i1", "i2", "i3"]
        assert list(ws.recs.popular(1, days=7)["item_id"]) == ["i1"]
        with pytest.raises(InputError, match="limit"):
            read.popular_items(ws.store, limit=0)
        with pytest.raises(InputError, match="days"):
            read.popular_items(ws.store, days=0)

"""The collect stage's read functions on a small hand-made shop: the store summary, orders and
revenue, daily activity and sales, the channel mix, the latest batches and order values."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.ingest import read
from jingzhun.store import TABLES, latest_schema_version
from jingzhun.workspace import Workspace

DAY1, DAY2 = pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")

ITEMS = "item_id,title,category,price\ni1,Red cup,home,10\ni2,Blue pot,home,40\n"
USERS = "user_id,created_at\nu1,2024-01-01\nu2,2024-02-01\n"
# Orders: o1 (18 + 40) on 1 March, o2 (40) on 2 March. Device d1 signs up as u2; d9 never does.
# e12's time is not a time: it is quarantined.
EVENTS = """event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts
e01,page_viewed,u1,,,,,,,web,2024-03-01 10:00:00
e02,product_viewed,u1,,,i1,,,,web,2024-03-01 10:01:00
e03,product_added,u1,,,i1,,,,web,2024-03-01 10:02:00
e04,checkout_started,u1,,,,,,,web,2024-03-01 10:03:00
e05,order_completed,u1,,o1,i1,2,10,18,web,2024-03-01 10:04:00
e06,order_completed,u1,,o1,i2,1,40,,web,2024-03-01 10:04:00
e07,page_viewed,,d1,,,,,,,2024-03-02 09:00:00
e08,page_viewed,,d1,,,,,,app,2024-03-02 09:05:00
e09,signed_up,u2,d1,,,,,,app,2024-03-02 09:10:00
e10,order_completed,u2,,o2,i2,1,40,40,app,2024-03-02 11:00:00
e11,page_viewed,,d9,,,,,,web,2024-03-02 12:00:00
e12,page_viewed,u1,,,,,,,web,not a time
"""


@pytest.fixture(scope="module")
def shop_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The shop ingested in three batches: items, users, events (the tests only read it)."""
    folder = tmp_path_factory.mktemp("ingest_read")
    with Workspace.open(folder / "store.duckdb") as ws:
        for kind, text, bad in (("items", ITEMS, 0), ("users", USERS, 0), ("events", EVENTS, 1)):
            path = folder / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == bad
        yield ws


def test_summary_counts_tables_identity_and_quarantine(shop_ws: Workspace) -> None:
    s = read.summary(shop_ws.store)
    assert s["store"] == str(shop_ws.path)
    assert s["schema_version"] == latest_schema_version()
    assert list(s["tables"]) == list(TABLES)
    assert {k: s["tables"][k] for k in ("events", "users", "items", "identities")} == {
        "events": 11,
        "users": 2,
        "items": 2,
        "identities": 1,
    }
    assert s["tables"]["ingest_batches"] == 3 and s["tables"]["quarantine"] == 1
    assert (s["events_from"], s["events_to"]) == ("2024-03-01 10:00:00", "2024-03-02 12:00:00")
    assert s["events_by_type"] == {
        "page_viewed": 4,
        "order_completed": 3,
        "checkout_started": 1,
        "product_added": 1,
        "product_viewed": 1,
        "signed_up": 1,
    }
    assert list(s["events_by_type"]) == [  # most first, ties by name
        "page_viewed",
        "order_completed",
        "checkout_started",
        "product_added",
        "product_viewed",
        "signed_up",
    ]
    assert s["known_users_with_anonymous_history"] == 1  # u2
    assert s["anonymous_events"] == 3  # e07, e08 (d1) and e11 (d9)
    assert s["anonymous_events_stitched"] == 2  # d1's
    assert s["quarantine_open"] == 1


def test_summary_of_an_empty_store(ws: Workspace) -> None:
    s = read.summary(ws.store)
    assert set(s["tables"].values()) == {0}
    assert (s["events_from"], s["events_to"], s["events_by_type"]) == (None, None, {})
    assert s["anonymous_events"] == s["quarantine_open"] == 0
    assert read.order_totals(ws.store).to_dict() == {"orders": 0, "revenue": 0.0, "refunded": 0.0}
    assert read.daily_events(ws.store).empty and read.daily_sales(ws.store).empty
    assert read.recent_batches(ws.store).empty
    assert len(read.order_values(ws.store)) == 0


def test_order_totals_count_orders_not_lines(shop_ws: Workspace) -> None:
    totals = read.order_totals(shop_ws.store)
    # e06 has no revenue: quantity x price = 40
    assert totals == read.OrderTotals(orders=2, revenue=98.0)


def test_daily_events_count_the_funnel_per_day(shop_ws: Workspace) -> None:
    daily = read.daily_events(shop_ws.store)
    got = {(r.day, r.event): r.n for r in daily.itertuples()}
    assert got == {
        (DAY1, "page_viewed"): 1,
        (DAY1, "product_viewed"): 1,
        (DAY1, "product_added"): 1,
        (DAY1, "checkout_started"): 1,
        (DAY1, "order_completed"): 2,
        (DAY2, "page_viewed"): 3,
        (DAY2, "order_completed"): 1,
    }  # signed_up is not a funnel event
    assert daily["day"].is_monotonic_increasing
    only = read.daily_events(shop_ws.store, ["signed_up", "no_such_event"])
    assert only[["event", "n"]].to_dict("records") == [{"event": "signed_up", "n": 1}]


def test_daily_sales_and_order_values(shop_ws: Workspace) -> None:
    sales = read.daily_sales(shop_ws.store)
    assert [(r.day, r.orders, r.revenue) for r in sales.itertuples()] == [
        (DAY1, 1, 58.0),
        (DAY2, 1, 40.0),
    ]
    assert sorted(read.order_values(shop_ws.store).tolist()) == [40.0, 58.0]


def test_channel_mix_counts_page_views(shop_ws: Workspace) -> None:
    mix = read.channel_mix(shop_ws.store)
    assert mix.to_dict("records") == [
        {"channel": "web", "n": 2},
        {"channel": "app", "n": 1},
        {"channel": "–", "n": 1},  # e07 came without a channel
    ]


def test_recent_batches_newest_first(shop_ws: Workspace) -> None:
    batches = read.recent_batches(shop_ws.store)
    assert batches["kind"].tolist() == ["events", "users", "items"]
    events = batches.iloc[0]
    assert events["sources"].endswith("events.csv")
    assert (events["rows_read"], events["inserted"], events["duplicates"]) == (12, 11, 0)
    assert events["quarantined"] == 1
    assert (batches["seconds"] >= 0).all()
    assert read.recent_batches(shop_ws.store, limit=2)["kind"].tolist() == ["events", "users"]
    with pytest.raises(InputError, match="limit must be"):
        read.recent_batches(shop_ws.store, limit=0)

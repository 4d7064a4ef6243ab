"""The profile stage's read functions on a small hand-made shop: overview figures, RFM segments,
customers, affinity shares, tags, one user's profile (also by a linked device), the profiles
frame and its export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile import read
from jingzhun.workspace import Workspace

AS_OF = datetime(2024, 3, 10)

ITEMS = "item_id,category,brand,price\ni1,beauty,Lumi,10\ni2,beauty,Aura,40\ni3,home,Casa,100\n"
USERS = "user_id,created_at\nu1,2024-01-01\nu2,2024-02-01\nu3,2024-02-15\n"
# u1: orders o1 (18 + 100) and o2 (40) before AS_OF, o4 after it; u2 (first seen as device d2):
# order o3 (90); u3: no events at all.
EVENTS = """event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts
c01,product_viewed,u1,,,i1,,,,web,2024-03-01 10:00:00
c02,product_viewed,u1,,,i3,,,,app,2024-03-02 10:00:00
c03,order_completed,u1,,o1,i1,2,10,18,app,2024-03-02 11:00:00
c04,order_completed,u1,,o1,i3,1,100,100,app,2024-03-02 11:00:00
c06,product_viewed,u1,,,i2,,,,web,2024-03-08 08:00:00
c05,order_completed,u1,,o2,i2,1,40,40,web,2024-03-08 09:00:00
c07,page_viewed,u1,,,,,,,web,2024-03-09 12:00:00
c08,page_viewed,,d2,,,,,,web,2024-03-03 09:00:00
c09,signed_up,u2,d2,,,,,,app,2024-03-03 09:30:00
c10,product_viewed,u2,,,i3,,,,app,2024-03-04 10:00:00
c11,order_completed,u2,,o3,i3,1,100,90,app,2024-03-04 10:30:00
c12,product_added,u2,,,i1,,,,app,2024-03-09 20:00:00
c13,order_completed,u1,,o4,i2,1,40,40,web,2024-03-12 09:00:00
"""


@pytest.fixture(scope="module")
def shop_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The shop ingested and profiled as of AS_OF (the tests only read it)."""
    folder = tmp_path_factory.mktemp("profile_read")
    with Workspace.open(folder / "store.duckdb") as ws:
        for kind, text in (("items", ITEMS), ("users", USERS), ("events", EVENTS)):
            path = folder / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == 0
        ws.profile_build(AS_OF)
        yield ws


def test_without_profiles_nothing_is_read(ws: Workspace) -> None:
    assert read.has_profiles(ws.store) is False
    for fn in (read.overview, read.customers, read.affinity_shares, read.profile_scores):
        with pytest.raises(NotFoundError, match="no profiles yet"):
            fn(ws.store)
    with pytest.raises(NotFoundError, match="no profiles yet"):
        read.user_profile(ws.store, "u1")
    assert read.rfm_segment_counts(ws.store).empty
    assert read.tag_counts(ws.store).empty


def test_overview_counts_users_customers_and_repeat_customers(shop_ws: Workspace) -> None:
    o = read.overview(shop_ws.store)
    assert read.has_profiles(shop_ws.store) is True
    assert (o.users, o.customers, o.repeat_customers) == (3, 2, 1)
    assert o.as_of == AS_OF
    # last orders 2024-03-08 09:00 (u1) and 2024-03-04 10:30 (u2): 1 and 5 whole days
    assert o.median_recency_days == 3.0
    assert o.mean_aov == pytest.approx((158 / 2 + 90) / 2)
    assert o.to_dict()["as_of"] == "2024-03-10 00:00:00"


def test_customers_are_the_users_with_an_order(shop_ws: Workspace) -> None:
    c = read.customers(shop_ws.store).sort_values("monetary").reset_index(drop=True)
    assert list(c.columns) == ["recency_days", "frequency", "monetary", "score"]
    assert c["frequency"].tolist() == [1, 2]  # o4 lies after AS_OF
    assert c["monetary"].tolist() == [90.0, 158.0]
    assert c["recency_days"].tolist() == [5, 1]


def test_rfm_segment_counts_agree_with_the_tags(shop_ws: Workspace) -> None:
    seg = read.rfm_segment_counts(shop_ws.store)
    assert seg.to_dict("records") == [
        {"segment": "Champions", "users": 1},
        {"segment": "Lost", "users": 1},
    ]
    u1 = read.user_profile(shop_ws.store, "u1")["tags"]["rfm_segment"]
    u2 = read.user_profile(shop_ws.store, "u2")["tags"]["rfm_segment"]
    assert (u1, u2) == ("Champions", "Lost")
    tags = read.tag_counts(shop_ws.store)
    rfm = tags[tags["tag"] == "rfm_segment"].set_index("value")["users"].to_dict()
    assert rfm == {"Champions": 1, "Lost": 1}


def test_affinity_shares_are_the_users_mean_category_affinity(shop_ws: Workspace) -> None:
    shares = read.affinity_shares(shop_ws.store)
    assert shares["share"].is_monotonic_increasing
    assert shares["share"].sum() == pytest.approx(1.0)
    maps = {
        u: read.user_profile(shop_ws.store, u)["traits"]["category_affinity"]
        for u in ("u1", "u2", "u3")
    }
    assert not maps.pop("u3")  # no events, no affinity
    expected = pd.DataFrame(list(maps.values())).fillna(0.0).mean()
    got = shares.set_index("category")["share"]
    assert sorted(got.index) == ["beauty", "home"]
    for category, share in got.items():
        assert share == pytest.approx(expected[category])


def test_profile_scores_are_one_per_profile(shop_ws: Workspace) -> None:
    scores = read.profile_scores(shop_ws.store)
    frame = read.profiles_frame(shop_ws.store, ["user_id", "score"])
    assert sorted(scores.tolist()) == sorted(frame["score"].tolist())
    assert frame.set_index("user_id")["score"]["u1"] == pytest.approx(1.0)  # the top customer
    assert frame.set_index("user_id")["score"]["u3"] == 0.0


def test_tag_counts_count_users_per_value(shop_ws: Workspace) -> None:
    tags = read.tag_counts(shop_ws.store)
    assert list(tags.columns) == ["tag", "value", "source", "users", "computed_at"]
    expected = (
        shop_ws.sql("SELECT tag, value, source FROM tags")
        .value_counts()
        .rename("users")
        .reset_index()
    )
    merged = tags.merge(expected, on=["tag", "value", "source"], suffixes=("", "_expected"))
    assert len(merged) == len(tags) == len(expected)
    assert (merged["users"] == merged["users_expected"]).all()
    assert tags["source"].is_monotonic_increasing


def test_user_profile_by_device_is_the_owner_with_its_anonymous_history(
    shop_ws: Workspace,
) -> None:
    p = read.user_profile(shop_ws.store, "d2", events=10)
    assert p["user_id"] == "u2"
    assert p["anonymous_ids"] == ["d2"]
    assert p["traits"]["frequency"] == 1 and p["traits"]["monetary"] == 90.0
    assert p["traits"]["category_affinity"].keys() == {"beauty", "home"}  # a map: a dict
    assert p["traits"]["email_open_rate"] is None  # NaN becomes None
    events = [(e["ts"], e["event"]) for e in p["last_events"]]
    assert events == [
        (datetime(2024, 3, 9, 20), "product_added"),
        (datetime(2024, 3, 4, 10, 30), "order_completed"),
        (datetime(2024, 3, 4, 10), "product_viewed"),
        (datetime(2024, 3, 3, 9, 30), "signed_up"),
        (datetime(2024, 3, 3, 9), "page_viewed"),  # as d2, before signing up
    ]
    assert p["last_events"][1]["order_id"] == "o3" and p["last_events"][1]["revenue"] == 90.0
    assert len(read.user_profile(shop_ws.store, "u2", events=2)["last_events"]) == 2
    assert read.user_profile(shop_ws.store, "u2", events=0)["last_events"] == []
    json.dumps(p, default=str)  # plain values throughout


def test_user_profile_errors_name_the_id_and_the_parameter(shop_ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="no profile for user 'nobody'"):
        read.user_profile(shop_ws.store, "nobody")
    with pytest.raises(InputError, match="--events"):
        read.user_profile(shop_ws.store, "u1", events=-1)


def test_profiles_frame_selects_columns_in_order(shop_ws: Workspace) -> None:
    frame = read.profiles_frame(shop_ws.store, ["monetary", "user_id"])
    assert list(frame.columns) == ["monetary", "user_id"]
    assert frame["user_id"].tolist() == ["u1", "u2", "u3"]
    assert frame["monetary"].tolist() == [158.0, 90.0, 0.0]
    whole = read.profiles_frame(shop_ws.store)
    assert list(whole.columns) == list(shop_ws.store.columns("profiles"))
    with pytest.raises(InputError, match="not a usable column"):
        read.profiles_frame(shop_ws.store, ["bad\x00name"])


def test_export_profiles_to_parquet_and_csv(shop_ws: Workspace, tmp_path: Path) -> None:
    whole = read.profiles_frame(shop_ws.store)
    assert read.export_profiles(shop_ws.store, tmp_path / "p.parquet") == 3
    back = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert back["user_id"].tolist() == ["u1", "u2", "u3"]
    assert back["monetary"].tolist() == whole["monetary"].tolist()

    assert read.export_profiles(shop_ws.store, tmp_path / "out" / "p.csv") == 3
    with open(tmp_path / "out" / "p.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["user_id"] for r in rows] == ["u1", "u2", "u3"]
    assert list(rows[0]) == list(whole.columns)
    # lists and maps as JSON text
    assert json.loads(rows[1]["top_categories"]) == ["home", "beauty"]
    assert json.loads(rows[1]["category_affinity"]).keys() == {"beauty", "home"}

    with pytest.raises(InputError, match=r"--out .*unknown extension \.txt"):
        read.export_profiles(shop_ws.store, tmp_path / "p.txt")
    with pytest.raises(InputError, match="--out"):
        read.export_profiles(shop_ws.store, shop_ws.path)


def test_find_users_by_the_beginning_of_their_id(shop_ws: Workspace) -> None:
    found = read.find_users(shop_ws.store, "u")
    assert list(found["user_id"]) == ["u1", "u2", "u3"]
    assert list(found.columns) == [
        "user_id", "frequency", "monetary", "last_seen", "days_since_seen", "rfm_segment",
    ]  # fmt: skip
    assert list(read.find_users(shop_ws.store, "u2")["user_id"]) == ["u2"]
    assert list(read.find_users(shop_ws.store, "", limit=2)["user_id"]) == ["u1", "u2"]
    # the biggest spenders first; a user without orders last
    assert list(read.find_users(shop_ws.store, by="monetary")["user_id"]) == ["u1", "u2", "u3"]
    assert read.find_users(shop_ws.store, "u1")["monetary"].iloc[0] == 158.0
    # wildcards are characters, not patterns; hostile text is only a value
    for nothing in ("%", "_1", "u%", "'; DROP TABLE profiles; --", "x" * 10_000):
        assert read.find_users(shop_ws.store, nothing).empty
    with pytest.raises(InputError, match="limit"):
        read.find_users(shop_ws.store, "u", limit=0)
    with pytest.raises(InputError, match="by"):
        read.find_users(shop_ws.store, "u", by="score; DROP")
    assert list(shop_ws.profiles.search("u", limit=1)["user_id"]) == ["u1"]


def test_find_users_needs_profiles(ws: Workspace) -> None:
    with pytest.raises(NotFoundError, match="no profiles yet"):
        read.find_users(ws.store, "u")


def test_user_activity_counts_events_per_week_with_the_devices(shop_ws: Workspace) -> None:
    activity = read.user_activity(shop_ws.store, "u2")
    rows = [(str(r.week.date()), r.event, int(r.n)) for r in activity.itertuples()]
    assert rows == [
        ("2024-02-26", "page_viewed", 1),  # Sunday 3 March, as device d2, before signing up
        ("2024-02-26", "signed_up", 1),
        ("2024-03-04", "order_completed", 1),  # from Monday 4 March
        ("2024-03-04", "product_added", 1),
        ("2024-03-04", "product_viewed", 1),
    ]
    # every event is counted once, including those after the profile's as_of
    assert read.user_activity(shop_ws.store, "u1")["n"].sum() == 8
    assert read.user_activity(shop_ws.store, "u3").empty
    assert shop_ws.profiles.user_activity("nobody").empty

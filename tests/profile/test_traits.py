"""Every built-in trait, dbt style: hand-made input rows -> hand-computed expected rows.

The fixture is a small shop as of Monday 2024-03-11 00:00 UTC:

* ``u1`` (signed up 2024-01-01): an anonymous visit on device ``d1`` (2024-02-29, a leap day)
  that an ``identify`` row links later; two orders (three lines, one discounted, one without a
  revenue), views, a cart add, a checkout, emails, and an order after ``as_of`` that must not
  count;
* ``u2`` (signed up 2024-03-05): anonymous history on device ``d2`` before its ``signed_up``
  row and an anonymous page view after it, two cart adds, one discounted order, a removal;
  ties in channel and hour that the most recent value breaks;
* ``u3`` signed up before ``as_of`` without any event; ``u4`` signed up after it;
* device ``d9`` is never linked.

Settings: half-life 10 days, ``last_items`` 3, score weights recency -2, monetary 1,
view_to_cart 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jingzhun.config import ProfileSettings, Settings
from jingzhun.profile import traits as tr
from jingzhun.store import Store
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

AS_OF = datetime(2024, 3, 11)
HALF_LIFE = 10.0
WEIGHT = {"product_viewed": 1, "product_added": 3, "checkout_started": 3, "order_completed": 5}

ITEMS = """item_id,title,category,brand,price
i1,Lip balm,beauty,Lumi,10
i2,Serum,beauty,Lumi,30
i3,Perfume,beauty,Aura,50
i4,Lamp,home,Casa,100
i5,Chair,home,Casa,200
i6,Yo-yo,toys,Fun,5
"""

USERS = """user_id,created_at
u1,2024-01-01 00:00:00
u2,2024-03-05 08:00:00
u3,2024-02-01 00:00:00
u4,2024-04-01 00:00:00
"""

EVENTS = """event_id,event,user_id,anonymous_id,order_id,item_id,quantity,price,revenue,channel,ts
e19,page_viewed,,d1,,,,,,web,2024-02-29 23:30:00
e01,page_viewed,u1,,,,,,,app,2024-03-01 10:00:00
e02,product_viewed,u1,,,i1,,,,app,2024-03-01 10:05:00
e03,product_added,u1,,,i1,,,,app,2024-03-01 10:10:00
e04,checkout_started,u1,,,i1,,,,app,2024-03-01 10:15:00
e05,order_completed,u1,,o1,i1,2,10,20,app,2024-03-01 10:20:00
e06,order_completed,u1,,o1,i4,1,100,80,app,2024-03-01 10:20:00
e18,identify,u1,d1,,,,,,web,2024-03-06 19:59:00
e07,page_viewed,u1,,,,,,,web,2024-03-06 20:00:00
e08,product_viewed,u1,,,i5,,,,web,2024-03-06 20:01:00
e17,product_viewed,u1,,,i1,,,,web,2024-03-06 20:10:00
e09,order_completed,u1,,o2,i2,1,30,,web,2024-03-06 20:30:00
e10,message_sent,u1,,,,,,,email,2024-03-07 08:00:00
e11,email_delivered,u1,,,,,,,email,2024-03-07 08:00:05
e12,email_opened,u1,,,,,,,email,2024-03-07 09:00:00
e13,email_clicked,u1,,,,,,,email,2024-03-07 09:01:00
e15,message_sent,u1,,,,,,,email,2024-03-08 08:00:00
e14,order_completed,u1,,o9,i3,1,50,50,app,2024-03-12 09:00:00
e20,page_viewed,,d2,,,,,,web,2024-03-03 12:00:00
e21,product_viewed,,d2,,i3,,,,web,2024-03-03 12:05:00
e22,signed_up,u2,d2,,,,,,app,2024-03-05 08:00:00
e23,product_added,u2,,,i3,,,,app,2024-03-05 08:10:00
e24,product_added,u2,,,i6,,,,app,2024-03-05 08:12:00
e25,order_completed,u2,,o3,i3,1,50,45,app,2024-03-05 08:20:00
e26,page_viewed,,d2,,,,,,web,2024-03-09 12:00:00
e27,product_removed,u2,,,i6,,,,web,2024-03-09 12:05:00
e30,page_viewed,,d9,,,,,,web,2024-03-02 10:00:00
e40,page_viewed,u4,,,,,,,web,2024-04-02 10:00:00
"""


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decay(at: str) -> float:
    """alpha = 0.5 ** (age in days / half-life), age measured to as_of."""
    age_days = (AS_OF - ts(at)).total_seconds() / 86_400
    return 0.5 ** (age_days / HALF_LIFE)


def affinity(interactions: list[tuple[str, str, str]]) -> dict[str, float]:
    """A(u) from (event, category, ts) rows, normalised to sum to 1."""
    raw: dict[str, float] = {}
    for event, category, at in interactions:
        raw[category] = raw.get(category, 0.0) + WEIGHT[event] * decay(at)
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


U1_AFFINITY = affinity(
    [
        ("product_viewed", "beauty", "2024-03-01 10:05:00"),
        ("product_added", "beauty", "2024-03-01 10:10:00"),
        ("checkout_started", "beauty", "2024-03-01 10:15:00"),
        ("order_completed", "beauty", "2024-03-01 10:20:00"),
        ("order_completed", "home", "2024-03-01 10:20:00"),
        ("product_viewed", "home", "2024-03-06 20:01:00"),
        ("product_viewed", "beauty", "2024-03-06 20:10:00"),
        ("order_completed", "beauty", "2024-03-06 20:30:00"),
    ]
)
U2_AFFINITY = affinity(
    [
        ("product_viewed", "beauty", "2024-03-03 12:05:00"),  # anonymous, stitched
        ("product_added", "beauty", "2024-03-05 08:10:00"),
        ("product_added", "toys", "2024-03-05 08:12:00"),
        ("order_completed", "beauty", "2024-03-05 08:20:00"),
        # product_removed has no interaction weight
    ]
)

ZERO_COUNTS = {f"n_{name}": 0 for name in sorted(tr._COUNT_EVENTS)}

EXPECTED: dict[str, dict[str, Any]] = {
    "u1": {
        "user_id": "u1",
        "as_of": AS_OF,
        "created_at": ts("2024-01-01 00:00:00"),
        "first_seen": ts("2024-02-29 23:30:00"),  # the anonymous visit, linked before as_of
        "last_seen": ts("2024-03-08 08:00:00"),
        "active_days": 5,  # 02-29, 03-01, 03-06, 03-07, 03-08
        "events": 17,
        "frequency": 2,  # o1 (two lines), o2; o9 is after as_of
        "monetary": 130.0,  # 20 + 80 + 30 (revenue absent: quantity x price)
        "refunded": 0.0,
        "refund_rate": 0.0,
        "order_lines": 3,
        "units": 4.0,
        "first_order_at": ts("2024-03-01 10:20:00"),
        "last_order_at": ts("2024-03-06 20:30:00"),
        "discount_share": 1 / 3,  # only the lamp, 80 < 1 x 100
        "price_percentile": (0.0 + 0.0 + 0.5) / 3,  # i1 0 and i2 0.5 in beauty, i4 0 in home
        "distinct_items": 4,  # i1, i4, i5, i2
        "sessions": 3,
        **ZERO_COUNTS,
        "n_page_viewed": 3,
        "n_product_viewed": 3,
        "n_product_added": 1,
        "n_checkout_started": 1,
        "n_order_completed": 3,
        "n_identify": 1,
        "n_message_sent": 2,
        "n_email_delivered": 1,
        "n_email_opened": 1,
        "n_email_clicked": 1,
        "recency_days": 4,  # 2024-03-06 20:30 -> 03-11 00:00 is 4 days 3.5 hours
        "tenure_days": 70,  # from created_at: 31 + 29 + 10
        "days_since_seen": 2,  # 2 days 16 hours
        "aov": 65.0,
        "view_to_cart": 1 / 3,
        "cart_to_purchase": 1.0,  # 3 lines per cart add, capped
        "email_open_rate": 0.5,  # 1 opened / max(1 delivered, 2 sent)
        "category_affinity": U1_AFFINITY,
        "top_categories": ["beauty", "home"],
        "top_brands": ["Lumi", "Casa"],  # 1+3+3+5+1+5 = 18 against 5+1 = 6
        "preferred_channel": "web",  # app 6, web 6: web is the more recent
        "preferred_weekday": 4,  # Friday: 6 on 03-01 + 1 on 03-08
        "preferred_hour": 10,
        "last_items": ["i2", "i1", "i5"],  # i4 (03-01 10:20) is 4th, beyond last_items = 3
        # recency: u1 best of 2 -> 1; monetary: top of 3 -> 1; view_to_cart 1/3 < 2 -> 0
        "score": (2 * 1.0 + 1 * 1.0 + 1 * 0.0) / 4,
    },
    "u2": {
        "user_id": "u2",
        "as_of": AS_OF,
        "created_at": ts("2024-03-05 08:00:00"),
        "first_seen": ts("2024-03-03 12:00:00"),
        "last_seen": ts("2024-03-09 12:05:00"),
        "active_days": 3,
        "events": 8,  # 3 anonymous events of d2 (two before, one after sign-up) + 5
        "frequency": 1,
        "monetary": 45.0,
        "refunded": 0.0,
        "refund_rate": 0.0,
        "order_lines": 1,
        "units": 1.0,
        "first_order_at": ts("2024-03-05 08:20:00"),
        "last_order_at": ts("2024-03-05 08:20:00"),
        "discount_share": 1.0,
        "price_percentile": 1.0,  # i3 is the dearest in beauty
        "distinct_items": 2,
        "sessions": 2,
        **ZERO_COUNTS,
        "n_page_viewed": 2,
        "n_product_viewed": 1,
        "n_signed_up": 1,
        "n_product_added": 2,
        "n_order_completed": 1,
        "n_product_removed": 1,
        "recency_days": 5,  # 5 days 15:40
        "tenure_days": 7,  # from first_seen (before sign-up): 7 days 12 hours
        "days_since_seen": 1,
        "aov": 45.0,
        "view_to_cart": 2.0,  # not capped
        "cart_to_purchase": 0.5,
        "email_open_rate": None,
        "category_affinity": U2_AFFINITY,
        "top_categories": ["beauty", "toys"],
        "top_brands": ["Aura", "Fun"],
        "preferred_channel": "web",  # web 4, app 4: web is the more recent
        "preferred_weekday": 1,  # Tuesday 03-05: 4 events
        "preferred_hour": 12,  # 12h 4, 8h 4: 12h (03-09) is the more recent
        "last_items": ["i6", "i3"],
        # recency: worse of 2 -> 0; monetary: middle of 3 -> 0.5; view_to_cart: best of 2 -> 1
        "score": (2 * 0.0 + 1 * 0.5 + 1 * 1.0) / 4,
    },
    "u3": {
        "user_id": "u3",
        "as_of": AS_OF,
        "created_at": ts("2024-02-01 00:00:00"),
        "first_seen": None,
        "last_seen": None,
        "active_days": 0,
        "events": 0,
        "frequency": 0,
        "monetary": 0.0,
        "refunded": 0.0,  # a sum: 0.0 without events, as monetary
        "refund_rate": None,  # no order revenue
        "order_lines": 0,
        "units": 0.0,
        "first_order_at": None,
        "last_order_at": None,
        "discount_share": None,
        "price_percentile": None,
        "distinct_items": 0,
        "sessions": 0,
        **ZERO_COUNTS,
        "recency_days": None,
        "tenure_days": 39,  # 29 days of February 2024 + 10
        "days_since_seen": None,
        "aov": None,
        "view_to_cart": None,
        "cart_to_purchase": None,
        "email_open_rate": None,
        "category_affinity": None,
        "top_categories": None,
        "top_brands": None,
        "preferred_channel": None,
        "preferred_weekday": None,
        "preferred_hour": None,
        "last_items": None,
        "score": 0.0,  # null recency and view_to_cart -> 0; lowest monetary -> 0
    },
}

SCORE = {"recency_days": -2.0, "monetary": 1.0, "view_to_cart": 1.0}


def settings() -> Settings:
    return Settings(profile=ProfileSettings(half_life_days=HALF_LIFE, last_items=3, score=SCORE))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The fixture shop ingested through ws.ingest and built as of AS_OF (read-only for tests)."""
    tmp = tmp_path_factory.mktemp("traits")
    s = settings()
    ws = Workspace(Store.open(tmp / "store.duckdb", s), s)
    for kind, text in (("items", ITEMS), ("users", USERS), ("events", EVENTS)):
        path = tmp / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        result = ws.ingest(kind, [path])
        assert result.quarantined == 0, kind
    result = ws.profile_build(AS_OF)
    assert result.users == 3
    try:
        yield ws
    finally:
        ws.close()


def plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def assert_same(name: str, got: Any, want: Any) -> None:
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), name
    elif isinstance(want, dict):
        assert isinstance(got, dict), (name, got)
        assert sorted(got) == sorted(want), name
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-9), (name, k)
    else:
        assert got == want, (name, got, want)
        assert type(got) is type(want), (name, type(got), type(want))


def test_the_expected_rows_name_every_profile_column(built: Workspace) -> None:
    columns = list(built.profiles().columns)
    builtin = [name for name, _ in tr.catalogue()]
    assert columns == ["user_id", "as_of", "created_at", *builtin]
    assert builtin[-1] == "score"
    for row in EXPECTED.values():
        assert sorted(row) == sorted(columns)


def test_who_has_a_profile(built: Workspace) -> None:
    # u4 signed up after as_of; d9 was never linked; d1/d2 appear under u1/u2 only.
    assert built.profiles()["user_id"].tolist() == ["u1", "u2", "u3"]


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_every_trait_of_each_user(built: Workspace, user: str) -> None:
    frame = built.profiles()
    row = frame[frame["user_id"] == user].iloc[0]
    got = {k: plain(v) for k, v in row.items()}
    want = EXPECTED[user]
    mismatched = []
    for name in want:
        try:
            assert_same(name, got[name], want[name])
        except AssertionError as exc:
            mismatched.append(f"{name}: got {got[name]!r}, want {want[name]!r} ({exc})")
    assert not mismatched, "\n".join(mismatched)


def test_affinity_shares_sum_to_one_and_rank_the_top_categories(built: Workspace) -> None:
    frame = built.profiles(["user_id", "category_affinity", "top_categories"])
    for _, row in frame[frame["user_id"] != "u3"].iterrows():
        shares = row["category_affinity"]
        assert sum(shares.values()) == pytest.approx(1.0)
        ranked = sorted(shares, key=lambda k: -shares[k])
        assert list(row["top_categories"]) == ranked[:3]


def test_profile_affinity_table_holds_the_same_scores(built: Workspace) -> None:
    rows = built.sql(
        "SELECT user_id, category, score, as_of FROM profile_affinity ORDER BY user_id, category"
    )
    got = {(r.user_id, r.category): r.score for r in rows.itertuples()}
    want = {("u1", k): v for k, v in U1_AFFINITY.items()} | {
        ("u2", k): v for k, v in U2_AFFINITY.items()
    }
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert set(rows["as_of"]) == {pd.Timestamp(AS_OF)}


COUNT_COLUMNS = [
    "active_days",
    "events",
    "frequency",
    "order_lines",
    "distinct_items",
    "sessions",
    *sorted(ZERO_COUNTS),
    "recency_days",
    "tenure_days",
    "days_since_seen",
    "preferred_weekday",
    "preferred_hour",
]


def test_column_types(built: Workspace) -> None:
    types = dict(
        built.store.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'profiles'"
        )
    )
    for name in COUNT_COLUMNS:
        assert types[name] == "BIGINT", (name, types[name])
    for name in (
        "monetary",
        "refunded",
        "refund_rate",
        "units",
        "aov",
        "discount_share",
        "price_percentile",
        "view_to_cart",
        "cart_to_purchase",
        "email_open_rate",
        "score",
    ):
        assert types[name] == "DOUBLE", (name, types[name])
    for name in (
        "as_of",
        "created_at",
        "first_seen",
        "last_seen",
        "first_order_at",
        "last_order_at",
    ):
        assert types[name] == "TIMESTAMP", (name, types[name])
    for name in ("top_categories", "top_brands", "last_items"):
        assert types[name] == "VARCHAR[]", (name, types[name])
    assert types["category_affinity"] == "MAP(VARCHAR, DOUBLE)"
    assert types["user_id"] == types["preferred_channel"] == "VARCHAR"


def test_catalogue_documents_every_trait() -> None:
    names = [name for name, _ in tr.catalogue()]
    assert len(names) == len(set(names))
    assert all(doc.strip() for _, doc in tr.catalogue())
    assert {f"n_{e}" for e in tr._COUNT_EVENTS} <= set(names)


def test_price_percentile_of_the_dearest_priced_item_is_one(ws: Workspace, write: Write) -> None:
    ws.ingest(
        "items",
        [write("items.csv", "item_id,category,price\nc1,beauty,10\nc2,beauty,20\nc3,beauty,\n")],
    )
    ws.ingest(
        "events",
        [
            write(
                "events.csv",
                "event_id,event,user_id,order_id,item_id,quantity,price,ts\n"
                "x2,order_completed,v2,o2,c2,1,20,2024-03-01 11:00:00\n",
            )
        ],
    )
    ws.profile_build("2024-03-02")
    assert ws.profiles(["price_percentile"])["price_percentile"].tolist() == [1.0]


# -- a short half-life does not empty the affinity (issue 12) ----------------------------------


def test_a_one_hour_half_life_months_later_keeps_every_affinity(tmp_path: Path) -> None:
    """0.5^(age / half-life) underflowed to 0 for events 45 days older than as_of with a
    one-hour half-life, and the user's affinity vanished. Ages now count from the user's latest
    weighted event: the shares are the same, and never all zero."""
    hour = 1 / 24  # the shortest half-life the settings accept

    as_of = datetime(2024, 9, 1)  # ~4,200 hours after the last weighted event
    s = Settings(profile=ProfileSettings(half_life_days=hour, last_items=3))
    ws = Workspace(Store.open(tmp_path / "store.duckdb", s), s)
    try:
        for kind, text in (("items", ITEMS), ("users", USERS), ("events", EVENTS)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            ws.ingest(kind, [path])
        ws.profile_build(as_of)
        got = {
            r["user_id"]: plain(r["category_affinity"])
            for r in ws.profiles(["user_id", "category_affinity"]).to_dict("records")
        }
    finally:
        ws.close()

    def shares(rows: list[tuple[str, str, str]]) -> dict[str, float]:
        latest = max(ts(at) for _, _, at in rows)
        raw: dict[str, float] = {}
        for event, category, at in rows:
            age = (latest - ts(at)).total_seconds() / 86_400
            raw[category] = raw.get(category, 0.0) + WEIGHT[event] * 0.5 ** (age / hour)
        return {k: v / sum(raw.values()) for k, v in raw.items()}

    u1 = [
        ("product_viewed", "beauty", "2024-03-01 10:05:00"),
        ("product_added", "beauty", "2024-03-01 10:10:00"),
        ("checkout_started", "beauty", "2024-03-01 10:15:00"),
        ("order_completed", "beauty", "2024-03-01 10:20:00"),
        ("order_completed", "home", "2024-03-01 10:20:00"),
        ("product_viewed", "home", "2024-03-06 20:01:00"),
        ("product_viewed", "beauty", "2024-03-06 20:10:00"),
        ("order_completed", "beauty", "2024-03-06 20:30:00"),
        ("order_completed", "beauty", "2024-03-12 09:00:00"),  # before this as_of: it counts
    ]
    for user, rows in (("u1", u1), ("u2", None)):
        assert got[user], f"{user} lost its affinity"
        assert sum(got[user].values()) == pytest.approx(1.0)
        if rows:
            assert_same(f"{user} affinity", got[user], shares(rows))


# -- spend net of refunds (issue 14) -------------------------------------------------------------

# As of AS_OF (2024-03-11). Refunds carry the refunded amount as a positive revenue; the loose
# ones name an item their user never bought, so ingest cannot link them to an order either.
REFUND_USERS = "user_id,created_at\nr1,2024-01-01\nr6,2024-01-01\n"
REFUND_EVENTS = """event_id,event,user_id,order_id,item_id,quantity,price,revenue,ts
a1,order_completed,r1,A1,i2,2,30,60,2024-03-01 10:00:00
a2,order_completed,r1,A1,i4,1,100,40,2024-03-01 10:01:00
a3,order_refunded,r1,A1,i4,1,100,40,2024-03-02 09:00:00
a4,order_completed,r1,A2,i3,1,50,50,2024-03-05 12:00:00
a5,order_refunded,r1,A2,i3,1,50,20,2024-03-06 12:00:00
a6,order_refunded,r1,A2,i3,1,50,30,2024-03-12 12:00:00
a7,order_completed,r1,A3,i1,1,10,10,2024-03-13 12:00:00
b1,order_completed,r2,B1,i5,1,200,80,2024-03-02 10:00:00
b2,order_refunded,r2,A1,i1,1,5,5,2024-03-04 10:00:00
b3,order_completed,r2,B2,i6,6,5,30,2024-03-07 10:00:00
b4,order_refunded,r2,C900,i2,1,10,10,2024-03-08 10:00:00
c1,order_completed,r3,D1,i2,1,30,25,2024-03-03 10:00:00
c2,order_refunded,r3,D1,i2,1,30,25,2024-03-04 10:00:00
c3,order_refunded,r3,C902,i1,1,10,10,2024-03-05 10:00:00
d1,order_refunded,r4,C903,i1,1,12,12,2024-03-04 10:00:00
e1,order_refunded,r5,C904,i6,1,7,7,2024-03-01 10:00:00
e2,order_completed,r5,E1,i3,1,50,40,2024-03-02 10:00:00
e3,order_completed,r5,E2,i5,1,20,20,2024-03-06 10:00:00
e4,order_refunded,r5,C905,i1,1,5,5,2024-03-06 10:00:00
"""

#: user -> (monetary, refunded, refund_rate, frequency, aov), computed by hand.
REFUND_EXPECTED: dict[str, tuple[float, float, float | None, int, float | None]] = {
    # 60 + 40 + 50 = 150 gross; refunds 40 (a whole line) + 20 (partial); a6 and a7 after as_of
    "r1": (90.0, 60.0, 60 / 150, 2, 45.0),
    # 80 + 30 = 110 gross; 5 (names r1's order A1: still r2's refund) + 10 (credit note)
    "r2": (95.0, 15.0, 15 / 110, 2, 47.5),
    # 25 gross, 25 + 10 refunded: never below 0, rate capped at 1
    "r3": (0.0, 35.0, 1.0, 1, 0.0),
    # a refund without any order: no order revenue, no rate, no aov
    "r4": (0.0, 12.0, None, 0, None),
    # 40 + 20 = 60 gross; 7 + 5 refunded
    "r5": (48.0, 12.0, 12 / 60, 2, 24.0),
    # signed up, no events
    "r6": (0.0, 0.0, None, 0, None),
}


def test_monetary_and_aov_are_net_of_refunds(tmp_path: Path) -> None:
    s = Settings()
    ws = Workspace(Store.open(tmp_path / "store.duckdb", s), s)
    try:
        for kind, text in (("items", ITEMS), ("users", REFUND_USERS), ("events", REFUND_EVENTS)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            assert ws.ingest(kind, [path]).quarantined == 0, kind
        ws.profile_build(AS_OF)
        frame = ws.profiles(["user_id", "monetary", "refunded", "refund_rate", "frequency", "aov"])
    finally:
        ws.close()
    got = {
        r["user_id"]: tuple(plain(r[k]) for k in frame.columns[1:])
        for r in frame.to_dict("records")
    }
    assert sorted(got) == sorted(REFUND_EXPECTED)
    for user, want in REFUND_EXPECTED.items():
        for name, g, w in zip(frame.columns[1:], got[user], want, strict=True):
            assert_same(f"{user}.{name}", g, w)

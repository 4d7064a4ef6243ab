"""Behaviour analyses on small hand-made stores with exact expected numbers, and market baskets
on the simulated shop against its planted complements."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jingzhun.errors import InputError, NotFoundError
from jingzhun.synth.vocab import COMPLEMENTS
from jingzhun.workspace import Workspace

Write = Callable[..., Path]

COLUMNS = ("event", "user_id", "anonymous_id", "order_id", "item_id", "revenue", "ts")


def ev(
    event: str,
    ts: datetime | str,
    user: str = "",
    *,
    anon: str = "",
    order: str = "",
    item: str = "",
    revenue: float | str = "",
) -> tuple:
    return (event, user, anon, order, item, revenue, str(ts))


def load(ws: Workspace, write: Write, events: list[tuple], items: str | None = None) -> None:
    if items is not None:
        assert ws.ingest("items", [write("items.csv", items)]).quarantined == 0
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("event_id", *COLUMNS))
    for i, row in enumerate(events):
        w.writerow((f"e{i:04d}", *row))
    result = ws.ingest("events", [write("events.csv", out.getvalue())])
    assert (result.inserted, result.quarantined) == (len(events), 0)


def day(i: int, hour: int = 12, minute: int = 0) -> datetime:
    """Day i from Monday 2024-01-01."""
    return datetime(2024, 1, 1, hour, minute) + timedelta(days=i)


# -- trends -------------------------------------------------------------------------------------

#: (day, user, order id, revenue per line...) — one buyer per order
TREND_ORDERS: list[tuple[int, str, str, tuple[float, ...]]] = [
    (2, "bA", "oA", (10.0, 5.0)),  # week 1: one order of two lines
    (8, "bB", "oB", (20.0,)),  # week 2: three orders
    (9, "bC", "oC", (20.0,)),
    (9, "bD", "oD", (30.0,)),
    *((d, f"bW{d}", f"oW{d}", (10.0,)) for d in range(14, 21)),  # week 3: eight orders
    (20, "bX", "oX", (10.0,)),
    (21, "bY", "oY", (100.0,)),  # week 4 (Mon-Tue only): incomplete
]


def trend_events() -> list[tuple]:
    rows = [ev("page_viewed", day(i, 9), "reg") for i in range(23)]
    for d, user, order, lines in TREND_ORDERS:
        for k, revenue in enumerate(lines):
            rows.append(
                ev(
                    "order_completed",
                    day(d, 12, k),
                    user,
                    order=order,
                    item=f"i{k}",
                    revenue=revenue,
                )
            )
    rows += [
        # day 3: messages the shop sent do not make m active; day 4 m opens one: active
        ev("message_sent", day(3, 10), "m"),
        ev("email_delivered", day(3, 10, 1), "m"),
        ev("email_opened", day(4, 10), "m"),
        # day 5: an anonymous visitor is active as itself
        ev("page_viewed", day(5, 10), anon="a9"),
        # day 6: an anonymous visitor who signs in is one visitor, the user
        ev("page_viewed", day(6, 8), anon="a2"),
        ev("identify", day(6, 8, 5), "u5", anon="a2"),
        ev("product_viewed", day(6, 8, 10), "u5", item="i1"),
        # a checkout is not revenue
        ev("checkout_started", day(10, 10), "reg", revenue=999.0),
    ]
    return rows


EXPECTED_ACTIVES = [1, 1, 2, 1, 2, 2, 2, 1, 2, 3, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 2, 1]
EXPECTED_ORDERS = [0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 1, 0]
EXPECTED_REVENUE = [0, 0, 15, 0, 0, 0, 0, 0, 20, 50, 0, 0, 0, 0, 10, 10, 10, 10, 10, 10, 20, 100, 0]


@pytest.fixture
def trends_ws(ws: Workspace, write: Write) -> Workspace:
    load(ws, write, trend_events())
    return ws


def test_trends_daily(trends_ws: Workspace) -> None:
    a = trends_ws.analyze("trends")
    daily = a.tables["daily"]
    assert list(daily["day"]) == [pd.Timestamp(day(i).date()) for i in range(23)]
    assert list(daily["actives"]) == EXPECTED_ACTIVES
    assert list(daily["orders"]) == EXPECTED_ORDERS
    assert list(daily["revenue"]) == pytest.approx(EXPECTED_REVENUE)
    assert list(daily["buyers"]) == EXPECTED_ORDERS  # one buyer per order here
    # 7-day averages: over the days so far in the first week, then a sliding week
    for metric, values in (
        ("actives", EXPECTED_ACTIVES),
        ("orders", EXPECTED_ORDERS),
        ("revenue", EXPECTED_REVENUE),
    ):
        want = [sum(values[max(0, i - 6) : i + 1]) / min(i + 1, 7) for i in range(23)]
        assert list(daily[f"{metric}_7d"]) == pytest.approx(want), metric
    assert daily["actives_7d"].iloc[6] == pytest.approx(11 / 7)
    assert daily["orders_7d"].iloc[9] == pytest.approx(3 / 7)


def test_trends_weekly_and_summary(trends_ws: Workspace) -> None:
    a = trends_ws.analyze("trends")
    weekly = a.tables["weekly"]
    assert list(weekly["week"]) == [pd.Timestamp(day(7 * k, 0)) for k in range(4)]
    # week 1: reg, bA, m, anon:a9, u5; week 2: reg + 3 buyers; week 3: reg + 8 buyers
    assert list(weekly["actives"]) == [5, 4, 9, 2]
    assert list(weekly["orders"]) == [1, 3, 8, 1]
    assert list(weekly["revenue"]) == pytest.approx([15, 70, 80, 100])
    s = a.summary
    assert (s["days"], s["weeks"], s["complete_weeks_used"]) == (23, 4, 3)
    # least squares over x = 0, 1, 2: slope = (y2 - y0) / 2; as a share of the mean
    assert s["orders"] == {
        "total": 13.0,
        "trend_per_week": round((8 - 1) / 2 / 4, 4),
        "week_over_week": round(8 / 3 - 1, 4),
        "last_week": 8.0,
    }
    assert s["revenue"] == {
        "total": 265.0,
        "trend_per_week": round((80 - 15) / 2 / 55, 4),
        "week_over_week": round(80 / 70 - 1, 4),
        "last_week": 80.0,
    }
    assert s["actives"] == {
        "total": None,
        "trend_per_week": round((9 - 5) / 2 / 6, 4),
        "week_over_week": 1.25,
        "last_week": 9.0,
    }
    json.dumps(a.to_dict())  # serialisable


def test_trends_weeks_and_limits(trends_ws: Workspace) -> None:
    a = trends_ws.analyze("trends", weeks=2)
    assert a.summary["complete_weeks_used"] == 2
    assert a.summary["orders"]["trend_per_week"] == round((8 - 3) / 5.5, 4)  # two points
    # until is exclusive: the first week only, too short for a trend
    a = trends_ws.analyze("trends", until=day(7, 0))
    assert a.summary["days"] == 7 and a.summary["complete_weeks_used"] == 1
    assert a.summary["orders"] == {"total": 1.0}
    # since: day 8 onwards; the week of day 7 is no longer complete
    a = trends_ws.analyze("trends", since=day(8, 0))
    assert list(a.tables["daily"]["orders"]) == EXPECTED_ORDERS[8:]
    assert a.summary["complete_weeks_used"] == 1
    # a period without events
    with pytest.raises(NotFoundError, match="no events in that period"):
        trends_ws.analyze("trends", since=datetime(2023, 1, 1), until=datetime(2023, 2, 1))


def test_seven_day_average_counts_calendar_days(ws: Workspace, write: Write) -> None:
    rows = [
        ev(
            "order_completed",
            datetime(2024, 2, d, 12),
            f"u{d}",
            order=f"o{d}",
            item="i",
            revenue=10,
        )
        for d in range(1, 9)
    ]
    rows += [
        ev(
            "order_completed",
            datetime(2024, 2, 13, 12, k),
            f"v{k}",
            order=f"p{k}",
            item="i",
            revenue=10,
        )
        for k in range(5)
    ]
    load(ws, write, rows)
    daily = ws.analyze("trends").tables["daily"].set_index("day")
    # the 7 days ending 13 February: 7 and 8 February (1 order each) and the 13th (5 orders)
    assert daily.loc[pd.Timestamp("2024-02-13"), "orders_7d"] == pytest.approx((1 + 1 + 5) / 7)


# -- funnel -------------------------------------------------------------------------------------


def funnel_events() -> list[tuple]:
    d1 = datetime(2024, 3, 1, 10)
    m = timedelta(minutes=1)
    view, add, check, order = (
        "product_viewed",
        "product_added",
        "checkout_started",
        "order_completed",
    )
    return [
        # f1: every step in order
        ev(view, d1, "f1", item="i1"),
        ev(add, d1 + 5 * m, "f1", item="i1"),
        ev(check, d1 + 10 * m, "f1"),
        ev(order, d1 + 15 * m, "f1", order="o1", item="i1", revenue=10),
        # f2: a cart before the first view does not count
        ev(add, d1, "f2", item="i1"),
        ev(view, d1 + 60 * m, "f2", item="i1"),
        # f3: view, cart, order without a checkout
        ev(view, d1, "f3", item="i1"),
        ev(add, d1 + m, "f3", item="i1"),
        ev(order, d1 + 2 * m, "f3", order="o3", item="i1", revenue=10),
        # f4: a view only
        ev(view, d1, "f4", item="i1"),
        # an anonymous visitor: view, cart
        ev(view, d1, anon="a5", item="i1"),
        ev(add, d1 + m, anon="a5", item="i1"),
        # f6: cart four days after the view
        ev(view, d1, "f6", item="i1"),
        ev(add, d1 + timedelta(days=4), "f6", item="i1"),
        # f7: a checkout without a cart
        ev(view, d1, "f7", item="i1"),
        ev(check, d1 + m, "f7"),
        # f8: view and cart at once, checkout three days later
        ev(view, d1, "f8", item="i1"),
        ev(add, d1 + m, "f8", item="i1"),
        ev(check, d1 + timedelta(days=3), "f8"),
        # f9: a cart before the view and another after it
        ev(add, d1 - 60 * m, "f9", item="i1"),
        ev(view, d1, "f9", item="i1"),
        ev(add, d1 + 60 * m, "f9", item="i1"),
        # a10 signs in as f10 between view and cart: one visitor
        ev(view, d1, anon="a10", item="i1"),
        ev("identify", d1 + m, "f10", anon="a10"),
        ev(add, d1 + 2 * m, "f10", item="i1"),
    ]


def steps_table(a: Any) -> list[tuple]:
    return [
        (r.step, r.visitors, r.from_previous, r.from_first) for r in a.tables["steps"].itertuples()
    ]


def assert_steps(a: Any, expected: list[tuple]) -> None:
    got = steps_table(a)
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for g, e in zip(got, expected, strict=True):
        for x, y in zip(g[2:], e[2:], strict=True):
            assert (
                (x is None or (isinstance(x, float) and math.isnan(x)))
                if y is None
                else x == pytest.approx(y)
            ), (g, e)


@pytest.fixture
def funnel_ws(ws: Workspace, write: Write) -> Workspace:
    load(ws, write, funnel_events())
    return ws


def test_funnel_in_order(funnel_ws: Workspace) -> None:
    a = funnel_ws.analyze("funnel")
    assert_steps(
        a,
        [
            ("product_viewed", 10, 1.0, 1.0),
            ("product_added", 7, 0.7, 0.7),  # f1 f3 a5 f6 f8 f9 f10
            ("checkout_started", 2, 2 / 7, 0.2),  # f1 f8
            ("order_completed", 1, 0.5, 0.1),  # f1
        ],
    )
    assert a.summary == {
        "steps": ["product_viewed", "product_added", "checkout_started", "order_completed"],
        "within_days": None,
        "overall_conversion": 0.1,
    }


def test_funnel_within_days(funnel_ws: Workspace) -> None:
    a = funnel_ws.analyze("funnel", within_days=2)
    assert_steps(
        a,
        [
            ("product_viewed", 10, 1.0, 1.0),
            ("product_added", 6, 0.6, 0.6),  # not f6 (4 days)
            ("checkout_started", 1, 1 / 6, 0.1),  # not f8 (3 days after the view)
            ("order_completed", 1, 1.0, 0.1),
        ],
    )
    assert a.summary["within_days"] == 2
    # half a day: every cart but f6's
    assert steps_table(funnel_ws.analyze("funnel", within_days=0.5))[1][1] == 6
    # one minute: f3, a5 and f8 (carts one minute after the view; the limit is inclusive)
    assert steps_table(funnel_ws.analyze("funnel", within_days=1 / 1440))[1][1] == 3


def test_funnel_custom_steps(funnel_ws: Workspace) -> None:
    a = funnel_ws.analyze("funnel", steps=("product_viewed", "order_completed"))
    assert_steps(a, [("product_viewed", 10, 1.0, 1.0), ("order_completed", 2, 0.2, 0.2)])
    a = funnel_ws.analyze("funnel", steps=("product_viewed", "product_removed", "order_completed"))
    assert_steps(
        a,
        [
            ("product_viewed", 10, 1.0, 1.0),
            ("product_removed", 0, 0.0, 0.0),
            ("order_completed", 0, None, 0.0),
        ],
    )
    assert a.summary["overall_conversion"] == 0.0
    # since: only what happened from then on
    a = funnel_ws.analyze("funnel", since=datetime(2024, 3, 2))
    assert [r[1] for r in steps_table(a)] == [0, 0, 0, 0]  # no views after 2 March
    assert a.summary["overall_conversion"] is None


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (("product_viewed",), "a funnel needs at least two steps"),
        ((), "a funnel needs at least two steps"),
        (("product_viewed", "purchase"), "--steps names unknown event 'purchase'"),
        (("view", "order_completed"), "--steps names unknown event 'view'"),
    ],
)
def test_funnel_steps_validation(funnel_ws: Workspace, steps: tuple, message: str) -> None:
    with pytest.raises(InputError, match=message):
        funnel_ws.analyze("funnel", steps=steps)


# -- cohorts ------------------------------------------------------------------------------------


def cohort_events() -> list[tuple]:
    orders = [
        ("u1", "2024-01-05"),
        ("u1", "2024-02-10"),
        ("u1", "2024-04-01"),
        ("u2", "2024-01-20"),
        ("u3", "2024-02-03"),
        ("u3", "2024-03-03"),
        ("u4", "2024-02-15"),
        ("u4", "2024-02-20"),
        ("u5", "2024-03-10"),
        ("u6", "2024-04-05"),
    ]
    rows = [
        ev("order_completed", f"{d} 12:00:00", u, order=f"o{i}", item="i1", revenue=10)
        for i, (u, d) in enumerate(orders)
    ]
    # an anonymous order is nobody's cohort; u2's visit in March is not an order
    rows.append(
        ev("order_completed", "2024-01-07 12:00:00", anon="a7", order="oa", item="i1", revenue=5)
    )
    rows.append(ev("product_viewed", "2024-03-15 12:00:00", "u2", item="i1"))
    return rows


def retention(a: Any) -> list[tuple]:
    t = a.tables["retention"]
    return [tuple(r) for r in t.itertuples(index=False)]


def test_cohorts(ws: Workspace, write: Write) -> None:
    load(ws, write, cohort_events())
    a = ws.analyze("cohorts")
    t = a.tables["retention"]
    assert list(t.columns) == ["cohort", "customers", "m0", "m1", "m2", "m3"]
    assert retention(a) == [
        ("2024-01", 2, 1.0, 0.5, 0.0, 0.5),  # u1 again in February and April
        ("2024-02", 2, 1.0, 0.5, 0.0, 0.0),  # u3 in March; May is not reached yet
        ("2024-03", 1, 1.0, 0.0, 0.0, 0.0),
        ("2024-04", 1, 1.0, 0.0, 0.0, 0.0),
    ]
    assert a.summary == {"cohorts": 4, "mean_month_1_retention": round((0.5 + 0.5 + 0.0) / 3, 4)}

    a = ws.analyze("cohorts", months=2)
    assert [r[0] for r in retention(a)] == ["2024-03", "2024-04"]
    assert a.summary == {"cohorts": 2, "mean_month_1_retention": 0.0}

    a = ws.analyze("cohorts", until=datetime(2024, 3, 1))
    assert retention(a) == [("2024-01", 2, 1.0, 0.5), ("2024-02", 2, 1.0, 0.0)]
    assert a.summary["mean_month_1_retention"] == 0.5

    # since: first orders are counted from then on (u1's first order is now February)
    a = ws.analyze("cohorts", since=datetime(2024, 2, 1))
    assert retention(a) == [
        ("2024-02", 3, 1.0, 1 / 3, 1 / 3),  # u1 u3 u4; u3 in March, u1 in April
        ("2024-03", 1, 1.0, 0.0, 0.0),
        ("2024-04", 1, 1.0, 0.0, 0.0),
    ]


def test_one_cohort_has_no_month_one(ws: Workspace, write: Write) -> None:
    load(ws, write, [ev("order_completed", "2024-01-05", "u1", order="o1", item="i", revenue=1)])
    a = ws.analyze("cohorts")
    assert retention(a) == [("2024-01", 1, 1.0)]
    assert a.summary == {"cohorts": 1, "mean_month_1_retention": None}


# -- baskets ------------------------------------------------------------------------------------

BASKET_ITEMS = (
    "item_id,category,brand\nA,apparel,b1\nB,sports,b2\nC,apparel,b1\nD,books,b3\nE,,b3\n"
)
BASKETS = {
    "o1": ["A", "A", "B"],  # A twice: one basket entry
    "o2": ["A", "B", "C"],
    "o3": ["A", "C"],
    "o4": ["B"],
    "o5": ["A", "B"],
    "o6": ["D", "E"],
}


@pytest.fixture
def baskets_ws(ws: Workspace, write: Write) -> Workspace:
    rows = []
    t = datetime(2024, 5, 1, 9)
    for n, (order, items) in enumerate(BASKETS.items()):
        for k, item in enumerate(items):
            rows.append(
                ev(
                    "order_completed",
                    t + timedelta(hours=n, minutes=k),
                    f"u{n}",
                    order=order,
                    item=item,
                    revenue=1,
                )
            )
    # views and carts are not baskets
    rows.append(ev("product_added", t, "u0", item="C"))
    rows.append(ev("product_viewed", t, "u4", item="C"))
    load(ws, write, rows, items=BASKET_ITEMS)
    return ws


def rules_of(a: Any) -> list[tuple]:
    return [
        (r.antecedent, r.consequent, r.orders, r.support, r.confidence, r.lift)
        for r in a.tables["rules"].itertuples()
    ]


def assert_rules(a: Any, expected: list[tuple]) -> None:
    got = rules_of(a)
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g[3:] == pytest.approx(e[3:]), (g, e)


def test_baskets_item_level(baskets_ws: Workspace) -> None:
    a = baskets_ws.analyze("baskets", level="item", min_support=0.3)
    # singles: A 4, B 4, C 2 (D, E 1: pruned); pairs: AB 3, AC 2 (BC 1: pruned)
    assert_rules(
        a,
        [
            ("A", "C", 2, 2 / 6, 2 / 4, (2 / 4) / (2 / 6)),
            ("C", "A", 2, 2 / 6, 2 / 2, (2 / 2) / (4 / 6)),
            ("A", "B", 3, 3 / 6, 3 / 4, (3 / 4) / (4 / 6)),
            ("B", "A", 3, 3 / 6, 3 / 4, (3 / 4) / (4 / 6)),
        ],
    )
    assert a.summary == {
        "level": "item",
        "orders": 6,
        "min_support": 0.3,
        "min_count": 2,
        "frequent_values": 3,
        "rules": 4,
    }
    # min_count never drops below 2: a pair seen once is no rule
    low = baskets_ws.analyze("baskets", level="item", min_support=0.01)
    assert low.summary["min_count"] == 2
    assert rules_of(low) == rules_of(a)


def test_baskets_pruning_confidence_and_top(baskets_ws: Workspace) -> None:
    a = baskets_ws.analyze("baskets", level="item", min_support=0.5)
    # min_count 3: C (2 orders) is pruned, so only A <-> B remain
    assert a.summary["min_count"] == 3 and a.summary["frequent_values"] == 2
    assert [r[:3] for r in rules_of(a)] == [("A", "B", 3), ("B", "A", 3)]
    a = baskets_ws.analyze("baskets", level="item", min_support=0.3, min_confidence=0.8)
    assert [r[:2] for r in rules_of(a)] == [("C", "A")]
    a = baskets_ws.analyze("baskets", level="item", min_support=0.3, top=1)
    assert [r[:2] for r in rules_of(a)] == [("A", "C")] and a.summary["rules"] == 1
    a = baskets_ws.analyze("baskets", level="item", min_support=0.9)
    assert rules_of(a) == [] and a.summary["frequent_values"] == 0


def test_baskets_category_and_brand_level(baskets_ws: Workspace) -> None:
    # baskets: {apparel, sports} ×3 (o1 o2 o5), {apparel} (o3: A and C), {sports}, {books}
    a = baskets_ws.analyze("baskets", min_support=0.3)
    assert a.summary["level"] == "category" and a.summary["orders"] == 6
    assert_rules(
        a,
        [
            ("apparel", "sports", 3, 0.5, 0.75, 0.75 / (4 / 6)),
            ("sports", "apparel", 3, 0.5, 0.75, 0.75 / (4 / 6)),
        ],
    )
    # brands: b1 = A, C; b2 = B; b3 = D, E (one order)
    a = baskets_ws.analyze("baskets", level="brand", min_support=0.3)
    assert [r[:3] for r in rules_of(a)] == [("b1", "b2", 3), ("b2", "b1", 3)]


def test_support_equal_to_min_support_is_kept(ws: Workspace, write: Write) -> None:
    rows = []
    for i in range(25):
        for item in ("X", "Y") if i < 7 else ("Z",):
            ts = datetime(2024, 1, 1) + timedelta(minutes=i)
            rows.append(ev("order_completed", ts, f"u{i}", order=f"o{i}", item=item, revenue=1))
    load(ws, write, rows)
    a = ws.analyze("baskets", level="item", min_support=0.28)  # X and Y: 7 of 25 orders
    assert a.summary["min_count"] == 7
    assert [r[:4] for r in rules_of(a)] == [("X", "Y", 7, 0.28), ("Y", "X", 7, 0.28)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": "sku"}, "--level 'sku' is unknown"),
        ({"level": "Item"}, "--level 'Item' is unknown"),
        ({"min_support": 0}, "--min-support 0 must be between 0 and 1"),
        ({"min_support": 1}, "--min-support 1 must be between 0 and 1"),
        ({"min_support": -0.1}, "--min-support -0.1 must be between 0 and 1"),
        ({"min_confidence": 1.5}, "--min-confidence 1.5 must be between 0 and 1"),
        ({"min_confidence": -0.01}, "--min-confidence -0.01 must be between 0 and 1"),
    ],
)
def test_baskets_validation(baskets_ws: Workspace, options: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        baskets_ws.analyze("baskets", **options)
    assert str(info.value).startswith(message), str(info.value)


# -- frequency ------------------------------------------------------------------------------------


def frequency_events() -> list[tuple]:
    o = "order_completed"
    return [
        # u1: three orders; the first has two lines (its time is the earlier line)
        ev(o, "2024-01-01 00:00:00", "u1", order="o1", item="i1", revenue=1),
        ev(o, "2024-01-01 00:05:00", "u1", order="o1", item="i2", revenue=1),
        ev(o, "2024-01-03 00:00:00", "u1", order="o2", item="i1", revenue=1),
        ev(o, "2024-01-10 00:00:00", "u1", order="o3", item="i1", revenue=1),
        ev(o, "2024-01-05 00:00:00", "u2", order="o4", item="i1", revenue=1),
        ev(o, "2024-01-02 00:00:00", "u3", order="o5", item="i1", revenue=1),
        ev(o, "2024-01-02 12:00:00", "u3", order="o6", item="i1", revenue=1),
        ev(o, "2024-01-08 00:00:00", "u4", order="o7", item="i1", revenue=1),
        # an anonymous order has no customer; views are not orders
        ev(o, "2024-01-04 00:00:00", anon="a9", order="o8", item="i1", revenue=1),
        ev("product_viewed", "2024-01-09 00:00:00", "u4", item="i1"),
    ]


def test_frequency(ws: Workspace, write: Write) -> None:
    load(ws, write, frequency_events())
    a = ws.analyze("frequency")
    dist = a.tables["orders_per_customer"]
    assert list(zip(dist["orders"], dist["customers"], strict=True)) == [(1, 2), (2, 1), (3, 1)]
    # gaps: u1 2 and 7 days, u3 half a day; quantiles interpolate linearly
    assert a.summary == {
        "customers": 4,
        "repeat_customers": 2,
        "mean_orders": 1.75,
        "repeat_rate": 0.5,
        "interpurchase_days": {"p10": 0.8, "p25": 1.25, "p50": 2.0, "p75": 4.5, "p90": 6.0},
    }
    hist = a.tables["interpurchase_days"]
    assert int(hist["gaps"].sum()) == 3
    assert hist["from_days"].iloc[0] == 0
    assert list(hist["from_days"].iloc[1:]) == list(hist["to_days"].iloc[:-1])
    assert (hist["from_days"].iloc[0], hist["to_days"].iloc[0], hist["gaps"].iloc[0]) == (0, 1, 1)

    a = ws.analyze("frequency", until=datetime(2024, 1, 4))
    assert list(
        zip(
            a.tables["orders_per_customer"]["orders"],
            a.tables["orders_per_customer"]["customers"],
            strict=True,
        )
    ) == [(2, 2)]
    assert a.summary["interpurchase_days"]["p50"] == 1.25

    a = ws.analyze("frequency", since=datetime(2024, 1, 3))
    assert a.summary["customers"] == 3 and a.summary["repeat_customers"] == 1
    assert a.summary["interpurchase_days"]["p50"] == 7.0


def test_frequency_without_repeat_orders(ws: Workspace, write: Write) -> None:
    load(ws, write, [ev("order_completed", "2024-01-01", "u1", order="o1", item="i", revenue=1)])
    a = ws.analyze("frequency")
    assert a.summary == {
        "customers": 1,
        "repeat_customers": 0,
        "mean_orders": 1.0,
        "repeat_rate": 0.0,
    }
    assert "interpurchase_days" not in a.tables


# -- limits and errors ----------------------------------------------------------------------------


ALL = ("trends", "funnel", "cohorts", "baskets", "frequency")


@pytest.mark.parametrize("name", ALL)
def test_empty_store(ws: Workspace, name: str) -> None:
    with pytest.raises(NotFoundError, match="the store has no events to analyse"):
        ws.analyze(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cohorts", "no orders to build cohorts from"),
        ("baskets", "no orders to mine"),
        ("frequency", "no orders to count"),
    ],
)
def test_store_without_orders(ws: Workspace, write: Write, name: str, message: str) -> None:
    load(ws, write, [ev("product_viewed", "2024-01-01", "u1", item="i1")])
    with pytest.raises(NotFoundError, match=message):
        ws.analyze(name)


@pytest.mark.parametrize("name", ALL)
def test_since_must_be_before_until(ws: Workspace, write: Write, name: str) -> None:
    load(ws, write, frequency_events())
    with pytest.raises(
        InputError, match="--since 2024-01-05 00:00:00 is not before --until 2024-01-05 00:00:00"
    ):
        ws.analyze(name, since=datetime(2024, 1, 5), until=datetime(2024, 1, 5))
    with pytest.raises(InputError, match="is not before --until"):
        ws.analyze(name, since=datetime(2024, 1, 6), until=datetime(2024, 1, 5))
    # without --until the end is just after the latest event
    with pytest.raises(InputError, match="is not before --until"):
        ws.analyze(name, since=datetime(2024, 2, 1))


def test_until_is_exclusive(ws: Workspace, write: Write) -> None:
    load(ws, write, frequency_events())
    # u1's third order is at exactly 2024-01-10 00:00: not before until
    a = ws.analyze("frequency", until=datetime(2024, 1, 10))
    assert a.summary["customers"] == 4 and a.summary["mean_orders"] == 1.5
    a = ws.analyze("frequency", until=datetime(2024, 1, 10, 0, 0, 1))
    assert a.summary["mean_orders"] == 1.75


def test_unknown_analysis(ws: Workspace) -> None:
    with pytest.raises(InputError, match="unknown analysis 'basket'") as info:
        ws.analyze("basket")
    assert "trends, funnel, cohorts, baskets, frequency" in str(info.value)


# -- the simulated shop ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop_ws(shop: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    ws = Workspace.open(tmp_path_factory.mktemp("analyze_shop") / "store.duckdb", config=None)
    for kind in ("items", "users", "events"):
        ws.ingest(kind, [shop.file(kind)])
    try:
        yield ws
    finally:
        ws.close()


def test_shop_item_baskets_find_the_planted_complements(shop: Any, shop_ws: Workspace) -> None:
    truth = pd.read_parquet(shop.dir / "truth" / "complements.parquet")
    planted = set(zip(truth["item_id"], truth["complement_id"], strict=True))
    a = shop_ws.analyze("baskets", level="item", min_support=0.0005, top=10)
    rules = rules_of(a)
    assert len(rules) == 10
    hits = [(x, y) in planted or (y, x) in planted for x, y, *_ in rules]
    assert sum(hits) >= 7, rules
    assert all(r[5] > 1 for r in rules)  # lift: together more often than by chance
    # both directions of each rule are listed
    pairs = {(x, y) for x, y, *_ in rules}
    full = {
        (x, y)
        for x, y, *_ in rules_of(
            shop_ws.analyze("baskets", level="item", min_support=0.0005, top=12)
        )
    }
    assert all((y, x) in full for x, y in pairs)


def test_shop_category_baskets_are_complementary_categories(shop_ws: Workspace) -> None:
    a = shop_ws.analyze("baskets", level="category")
    rules = rules_of(a)
    assert len(rules) >= 4
    complementary = [COMPLEMENTS[x] == y for x, y, *_ in rules]
    assert all(complementary[:4]), rules[:4]
    assert sum(complementary[:8]) >= 6, rules[:8]
    assert rules[0][5] > 1.5


# -- numbers: NaN, infinities and huge values (issue 12) ---------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("funnel", {"within_days": float("inf")}, "--within-days must be a finite number"),
        ("funnel", {"within_days": float("nan")}, "--within-days must be a finite number"),
        ("funnel", {"within_days": -1.0}, "--within-days must be between 0 and 36,500, not -1"),
        ("funnel", {"within_days": 1e300}, "--within-days must be between 0 and 36,500"),
        ("funnel", {"steps": ("product_viewed",) * 21}, "--steps names 21 steps"),
        ("baskets", {"top": 10**20}, "--top must be between 1 and 10,000,000"),
        ("baskets", {"top": 0}, "--top must be between 1 and 10,000,000, not 0"),
        ("baskets", {"min_support": float("nan")}, "--min-support nan must be between 0 and 1"),
        ("trends", {"weeks": 10**11}, "--weeks must be between 2 and 5,214"),
        ("cohorts", {"months": 10**11}, "--months must be between 1 and 1,216"),
        ("cohorts", {"months": 2.5}, "--months must be a whole number"),
    ],
)
def test_bad_numbers_are_input_errors_naming_the_option(
    funnel_ws: Workspace, name: str, options: dict, message: str
) -> None:
    with pytest.raises(InputError) as info:
        funnel_ws.analyze(name, **options)
    assert str(info.value).startswith(message), str(info.value)


def test_the_longest_funnel_and_window_are_accepted(funnel_ws: Workspace) -> None:
    steps = ("product_viewed", "order_completed") * 10
    a = funnel_ws.analyze("funnel", steps=steps, within_days=36_500)
    assert len(steps_table(a)) == 20

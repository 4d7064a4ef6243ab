"""Behaviour analysis: trends, funnel, cohorts, market baskets, purchase frequency.

Each analysis is a function over the store (Ibis, so it ports to Spark) returning DataFrames
and a few headline numbers. They read the stitched events (anonymous history under the known
user), optionally limited to ``[since, until)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from jingzhun.checks import MAX_DAYS, MAX_ROWS, bounded_int, finite
from jingzhun.contracts.events import EVENT_NAMES
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile.traits import stitched
from jingzhun.store import Store

ANALYSES = ("trends", "funnel", "cohorts", "baskets", "frequency")
DEFAULT_FUNNEL = ("product_viewed", "product_added", "checkout_started", "order_completed")
ORDER = "order_completed"
#: Events the shop generates, not the visitor: they do not make a visitor active.
SYSTEM_EVENTS = ("message_sent", "email_delivered")
#: The most steps a funnel may have (each is a join nested in the last: 30 exhaust the query
#: compiler's recursion, and time grows with the square of the steps).
MAX_STEPS = 20


@dataclass
class Analysis:
    name: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        import json

        return {
            "analysis": self.name,
            "summary": self.summary,
            "tables": {
                k: json.loads(v.to_json(orient="records", date_format="iso", force_ascii=False))
                for k, v in self.tables.items()
            },
        }


def period_events(store: Store, since: datetime | None, until: datetime | None) -> ir.Table:
    backend = store.ibis()
    latest = store.scalar("SELECT max(ts) FROM events")
    if latest is None:
        raise NotFoundError("the store has no events to analyse", hint="ingest events first")
    end = until or latest + pd.Timedelta(microseconds=1)
    if since is not None and since >= end:
        raise InputError(f"--since {since} is not before --until {end}")
    e = stitched(backend, ibis.literal(end, type="timestamp"))
    if since is not None:
        e = e.filter(e.ts >= ibis.literal(since, type="timestamp"))
    return e


def _visitor(e: ir.Table) -> ir.Value:
    return ibis.coalesce(e.user_id, "anon:" + e.anonymous_id)


def marked(e: ir.Table) -> ir.Table:
    """Events with ``visitor`` (None for what the shop sent: it makes no one active) and
    ``first_line``: an order counts on the day (and week) of its first line, so an order whose
    lines fall either side of midnight is one order and the daily counts add up."""
    return e.mutate(
        visitor=ibis.ifelse(e.event.isin(list(SYSTEM_EVENTS)), ibis.null("string"), _visitor(e)),
        first_line=(e.event == ORDER) & (e.ts == e.ts.min().over(group_by=[e.event, e.order_id])),
    )


def daily_expr(e: ir.Table) -> ir.Table:
    """Active visitors, buyers, orders and revenue per calendar day of the marked events
    ``e`` (:func:`marked`): the one definition the trends analysis, the profile build's
    ``activity_daily`` and the dashboard share."""
    return (
        e.mutate(day=e.ts.date())
        .group_by("day")
        .aggregate(
            actives=ibis._.visitor.nunique(),
            buyers=ibis._.user_id.nunique(where=ibis._.event == ORDER),
            orders=ibis._.order_id.nunique(where=ibis._.first_line),
            revenue=ibis._.revenue.sum(where=ibis._.event == ORDER).fill_null(0.0),
        )
    )


def calendar_days(daily: pd.DataFrame) -> pd.DataFrame:
    """``daily`` with every calendar day from its first to its last (a quiet day counts as 0
    in averages)."""
    daily = daily.assign(day=pd.to_datetime(daily["day"]))
    calendar = pd.date_range(daily["day"].min(), daily["day"].max(), freq="D")
    return daily.set_index("day").reindex(calendar, fill_value=0).rename_axis("day").reset_index()


def trends(
    store: Store, *, since: datetime | None = None, until: datetime | None = None, weeks: int = 12
) -> Analysis:
    """Daily and weekly active visitors, orders and revenue, with a 7-day average and trend.

    A visitor is active on a day with any event of their own (not a message the shop sent).

    The trend of each metric is the least-squares slope over the last ``weeks`` complete
    weeks, as a share of their mean per week; week over week compares the last two.
    """
    weeks = bounded_int(weeks, "--weeks", lo=2, hi=int(MAX_DAYS // 7))
    e = marked(period_events(store, since, until))
    daily = daily_expr(e).order_by("day").execute()
    if daily.empty:
        raise NotFoundError("no events in that period")
    daily = calendar_days(daily)
    for metric in ("actives", "orders", "revenue"):
        daily[f"{metric}_7d"] = daily[metric].rolling(7, min_periods=1).mean()
    week = e.ts.truncate("W")
    weekly = (
        e.mutate(week=week)
        .group_by("week")
        .aggregate(
            actives=ibis._.visitor.nunique(),
            orders=ibis._.order_id.nunique(where=ibis._.first_line),
            revenue=ibis._.revenue.sum(where=ibis._.event == ORDER).fill_null(0.0),
            days=ibis._.ts.date().nunique(),
        )
        .order_by("week")
        .execute()
    )
    complete = weekly[weekly["days"] == 7].tail(weeks)
    summary: dict[str, Any] = {
        "days": len(daily),
        "weeks": len(weekly),
        "complete_weeks_used": len(complete),
    }
    for metric in ("actives", "orders", "revenue"):
        y = complete[metric].to_numpy(dtype=float)
        entry: dict[str, Any] = {
            "total": float(daily[metric].sum()) if metric != "actives" else None
        }
        if len(y) >= 2 and y.mean() > 0:
            slope = float(np.polyfit(np.arange(len(y)), y, 1)[0])
            entry["trend_per_week"] = round(float(slope / y.mean()), 4)
            entry["week_over_week"] = round(float(y[-1] / y[-2] - 1), 4) if y[-2] > 0 else None
            entry["last_week"] = float(y[-1])
        summary[metric] = entry
    return Analysis("trends", {"daily": daily, "weekly": weekly.drop(columns="days")}, summary)


def funnel(
    store: Store,
    steps: tuple[str, ...] = DEFAULT_FUNNEL,
    *,
    within_days: float | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Analysis:
    """Visitors reaching each step in order: the first time of step k after step k-1.

    ``within_days`` limits how long after the first step the later ones may come.
    """
    if len(steps) < 2:
        raise InputError(
            "a funnel needs at least two steps", hint=f"e.g. --steps {','.join(DEFAULT_FUNNEL)}"
        )
    if len(steps) > MAX_STEPS:
        raise InputError(
            f"--steps names {len(steps):,} steps; a funnel has at most {MAX_STEPS}",
            hint="split it into shorter funnels",
        )
    if within_days is not None:
        within_days = finite(within_days, "--within-days", lo=0, hi=MAX_DAYS)
    unknown = [s for s in steps if s not in EVENT_NAMES]
    if unknown:
        raise InputError(
            f"--steps names unknown event {unknown[0]!r}",
            hint=f"use events such as: {', '.join(DEFAULT_FUNNEL)}",
        )
    e = period_events(store, since, until)
    got = funnel_tallies(e, steps, within_days=within_days).execute()
    found = dict(zip(got["position"], got["n"], strict=True))
    counts = [int(found.get(i, 0)) for i in range(len(steps))]
    rows = []
    for i, (step, n) in enumerate(zip(steps, counts, strict=True)):
        rows.append(
            {
                "step": step,
                "visitors": int(n),
                "from_previous": (n / counts[i - 1])
                if i and counts[i - 1]
                else (1.0 if i == 0 else None),
                "from_first": (n / counts[0]) if counts[0] else None,
            }
        )
    frame = pd.DataFrame(rows)
    overall = None if frame["from_first"].iloc[-1] is None else float(frame["from_first"].iloc[-1])
    return Analysis(
        "funnel",
        {"steps": frame},
        {"steps": list(steps), "within_days": within_days, "overall_conversion": overall},
    )


def funnel_tallies(
    e: ir.Table,
    steps: tuple[str, ...] = DEFAULT_FUNNEL,
    *,
    within_days: float | None = None,
    key: str | None = None,
) -> ir.Table:
    """Visitors reaching each step of the funnel (``position``, ``n``) over the events ``e``
    — per value of the column ``key`` when given (the kept activity's 7/30/90-day windows,
    one query for the three)."""
    keys = [key] if key else []
    e = e.mutate(visitor=_visitor(e)).filter(e.event.isin(list(steps)))
    reached = (
        e.filter(e.event == steps[0]).group_by([*keys, "visitor"]).aggregate(t0=ibis._.ts.min())
    )

    # Every step's count in one query: counting each step by itself ran the joins of the
    # steps before it again (4 steps: 10 joins instead of 4).
    def count(t: ir.Table, position: int) -> ir.Table:
        metrics = {"position": ibis.literal(position), "n": t.count()}
        return t.group_by(keys).aggregate(**metrics) if keys else t.aggregate(**metrics)

    tallies = [count(reached, 0)]
    start = reached.select(*keys, "visitor", "t0", t=reached.t0)
    for i, step in enumerate(steps[1:], start=1):
        s = e.filter(e.event == step)
        j = start.join(s, [start.visitor == s.visitor, *(start[k] == s[k] for k in keys)])
        # A step met before needs a later event: the one that reached it does not count twice.
        cond = j.ts > j.t if step in steps[:i] else j.ts >= j.t
        if within_days is not None:
            cond &= j.ts <= j.t0 + ibis.interval(seconds=int(within_days * 86_400))
        nxt = j.filter(cond).group_by([*keys, "visitor", "t0"]).aggregate(t=j.ts.min())
        tallies.append(count(nxt, i))
        start = nxt
    return ibis.union(*tallies) if len(tallies) > 1 else tallies[0]


def cohorts(
    store: Store, *, months: int = 12, since: datetime | None = None, until: datetime | None = None
) -> Analysis:
    """Monthly cohorts by first order; the share of each cohort ordering k months later."""
    months = bounded_int(months, "--months", lo=1, hi=int(MAX_DAYS // 30))
    active = cohort_expr(period_events(store, since, until)).execute()
    if active.empty:
        raise NotFoundError("no orders to build cohorts from")
    return retention(active, months)


def cohort_expr(e: ir.Table) -> ir.Table:
    """Customers per first-order month (``cohort``) ordering ``age`` months later: the one
    definition the cohorts analysis and the profile build's ``activity_cohorts`` share."""
    orders = e.filter((e.event == ORDER) & e.user_id.notnull()).select(
        "user_id", month=e.ts.truncate("M")
    )
    first = orders.group_by("user_id").aggregate(cohort=ibis._.month.min())
    j = orders.join(first, "user_id")
    age = (j.month.year() - j.cohort.year()) * 12 + (j.month.month() - j.cohort.month())
    return (
        j.mutate(age=age).group_by(["cohort", "age"]).aggregate(customers=ibis._.user_id.nunique())
    )


def retention(active: pd.DataFrame, months: int) -> Analysis:
    """The cohorts analysis of :func:`cohort_expr`'s rows: each cohort's share ordering in
    each later month, the last ``months`` cohorts."""
    size = active[active["age"] == 0].set_index("cohort")["customers"]
    matrix = active.pivot_table(index="cohort", columns="age", values="customers", fill_value=0)
    matrix = matrix.div(size, axis=0).reindex(
        columns=range(0, int(active["age"].max()) + 1), fill_value=0.0
    )
    matrix = matrix.tail(months)
    matrix.columns = [f"m{int(c)}" for c in matrix.columns]
    table = matrix.reset_index()
    table.insert(1, "customers", size.reindex(table["cohort"]).to_numpy())
    table["cohort"] = pd.to_datetime(table["cohort"]).dt.strftime("%Y-%m")
    m1 = table["m1"].iloc[:-1].mean() if "m1" in table and len(table) > 1 else None
    return Analysis(
        "cohorts",
        {"retention": table},
        {
            "cohorts": len(table),
            "mean_month_1_retention": None if m1 is None or math.isnan(m1) else round(float(m1), 4),
        },
    )


def baskets(
    store: Store,
    *,
    level: str = "category",
    min_support: float = 0.001,
    min_confidence: float = 0.05,
    top: int = 50,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Analysis:
    """Association rules A → B between items (or categories, brands) bought in one order.

    Support counts pairs of distinct values per order; only values whose own support reaches
    ``min_support`` are paired (the Apriori pruning), which keeps a 100k-item catalogue cheap.
    ``confidence = support(A∪B) / support(A)``, ``lift = confidence / support(B)``.
    """
    if level not in ("item", "category", "brand"):
        raise InputError(f"--level {level!r} is unknown", hint="use item, category or brand")
    if not 0 < min_support < 1:
        raise InputError(f"--min-support {min_support} must be between 0 and 1")
    if not 0 <= min_confidence <= 1:
        raise InputError(f"--min-confidence {min_confidence} must be between 0 and 1")
    top = bounded_int(top, "--top", lo=1, hi=MAX_ROWS)
    e = period_events(store, since, until)
    lines = e.filter((e.event == ORDER) & e.order_id.notnull() & e.item_id.notnull())
    if level != "item":
        items = store.ibis().table("items")
        lines = lines.join(items.select("item_id", value=items[level]), "item_id").filter(
            ibis._.value.notnull()
        )
    else:
        lines = lines.mutate(value=lines.item_id)
    basket = lines.select("order_id", "value").distinct()
    n_orders = int(basket.order_id.nunique().execute())
    if n_orders == 0:
        raise NotFoundError("no orders to mine")
    # The tolerance keeps support == min_support in (0.28 * 25 is 7.000000000000001).
    min_count = max(2, math.ceil(min_support * n_orders - 1e-9))
    single = basket.group_by("value").aggregate(n=ibis._.count()).filter(ibis._.n >= min_count)
    kept = basket.join(single.select("value"), "value")
    a = kept.rename(a="value")
    b = kept.rename(b="value")
    pairs = (
        a.join(b, (a.order_id == b.order_id) & (a.a < b.b))
        .group_by(["a", "b"])
        .aggregate(n=ibis._.count())
        .filter(ibis._.n >= min_count)
    )
    both = pairs.union(pairs.select(a=pairs.b, b=pairs.a, n=pairs.n))
    sa = single.select(a="value", n_a="n")
    sb = single.select(b="value", n_b="n")
    rules = both.join(sa, "a").join(sb, "b")
    rules = rules.select(
        antecedent=rules.a,
        consequent=rules.b,
        orders=rules.n,
        support=rules.n / n_orders,
        confidence=rules.n / rules.n_a,
        lift=(rules.n / rules.n_a) / (rules.n_b / n_orders),
    ).filter(ibis._.confidence >= min_confidence)
    frame = (
        rules.order_by([ibis.desc("lift"), ibis.desc("orders"), "antecedent", "consequent"])
        .limit(top)
        .execute()
    )
    return Analysis(
        "baskets",
        {"rules": frame},
        {
            "level": level,
            "orders": n_orders,
            "min_support": min_support,
            "min_count": min_count,
            "frequent_values": int(single.count().execute()),
            "rules": len(frame),
        },
    )


def frequency(
    store: Store, *, since: datetime | None = None, until: datetime | None = None
) -> Analysis:
    """How many orders customers place, and the days between a customer's orders."""
    e = period_events(store, since, until)
    orders = (
        e.filter((e.event == ORDER) & e.user_id.notnull() & e.order_id.notnull())
        .group_by(["user_id", "order_id"])
        .aggregate(t=ibis._.ts.min())
    )
    per_user = orders.group_by("user_id").aggregate(orders=ibis._.count())
    dist = (
        per_user.group_by("orders").aggregate(customers=ibis._.count()).order_by("orders").execute()
    )
    if dist.empty:
        raise NotFoundError("no orders to count")
    gap = orders.mutate(prev=orders.t.lag().over(group_by=orders.user_id, order_by=orders.t))
    gaps = (
        gap.filter(gap.prev.notnull())
        .select(days=(gap.t.epoch_seconds() - gap.prev.epoch_seconds()) / 86_400)
        .execute()["days"]
    )
    summary: dict[str, Any] = {
        "customers": int(dist["customers"].sum()),
        "repeat_customers": int(dist.loc[dist["orders"] >= 2, "customers"].sum()),
        "mean_orders": round(
            float((dist["orders"] * dist["customers"]).sum() / dist["customers"].sum()), 4
        ),
    }
    summary["repeat_rate"] = round(summary["repeat_customers"] / summary["customers"], 4)
    tables = {"orders_per_customer": dist}
    if len(gaps):
        q = gaps.quantile([0.1, 0.25, 0.5, 0.75, 0.9])
        summary["interpurchase_days"] = {
            f"p{int(k * 100)}": round(float(v), 2) for k, v in q.items()
        }
        edges = np.unique(
            np.concatenate(([0], np.geomspace(1, max(2.0, float(gaps.max()) + 1), 20)))
        )
        hist, _ = np.histogram(gaps, bins=edges)
        tables["interpurchase_days"] = pd.DataFrame(
            {"from_days": edges[:-1].round(1), "to_days": edges[1:].round(1), "gaps": hist}
        )
    return Analysis("frequency", tables, summary)


def run(store: Store, name: str, **kwargs: Any) -> Analysis:
    fn = {
        "trends": trends,
        "funnel": funnel,
        "cohorts": cohorts,
        "baskets": baskets,
        "frequency": frequency,
    }.get(name)
    if fn is None:
        raise InputError(f"unknown analysis {name!r}", hint=f"use one of: {', '.join(ANALYSES)}")
    return fn(store, **kwargs)

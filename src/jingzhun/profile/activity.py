"""The shop's activity as the dashboard's overview shows it, kept by the profile build.

Computing a period's trend, funnel and cohorts from the events takes seconds on a store of
a million users (23M events: 8.6 s for the overview's five queries). The profile build, which
reads every event anyway, keeps what they need (migration 010): the complete days before its
``as_of`` day in ``activity_daily``, the cohort counts in ``activity_cohorts``, and the funnel
over each of :data:`PERIODS` days before ``as_of`` in ``activity_funnel`` — from the same
definitions as the analyses (:func:`~jingzhun.profile.analyze.daily_expr`,
:func:`~jingzhun.profile.analyze.cohort_expr`, :func:`~jingzhun.profile.analyze.funnel`), so
the numbers are the ones ``jingzhun profile analyze`` gives.

:func:`overview` reads them back, and computes the days since the build's as_of day from the
events (a day or so of events when profiles are built daily), so the daily figures are live.
Funnel and cohorts are as of the build; the answer says when that was. Before any build, all
of it is computed from the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import ibis
import pandas as pd

from jingzhun.errors import NotFoundError
from jingzhun.profile import analyze
from jingzhun.store import Store

#: The periods (days before as_of) whose funnel the build keeps: the overview's choices.
PERIODS = (7, 30, 90)


@dataclass
class Activity:
    """The overview's figures: ``daily`` (day, actives, buyers, orders, revenue: every day of
    the period and the one before it), ``funnel`` (step, visitors, from_previous, from_first,
    over the period) and ``cohorts`` (the cohorts analysis' retention table), with ``as_of``,
    the profile build they come from (None: computed from the events now)."""

    daily: pd.DataFrame
    funnel: pd.DataFrame
    cohorts: pd.DataFrame
    as_of: datetime | None


def write(store: Store, as_of: datetime) -> None:
    """Keep the activity as of ``as_of`` (called inside the profile build's transaction).

    The daily rows are kept incrementally: only the days from :func:`_changed_since` on are
    computed again (all of them took 33 s of a 1M-user build's 70 s extra; a day's worth takes
    about one). Cohorts and the three funnels are computed whole (13 s at 1M users)."""
    e = analyze.period_events(store, None, as_of)
    day0 = pd.Timestamp(as_of).normalize().to_pydatetime()
    start = _changed_since(store)
    if start is None:
        store.run("DELETE FROM activity_daily")
    else:  # and the days from as_of's on, kept by a build as of a later time
        store.run("DELETE FROM activity_daily WHERE day >= ?::DATE", [min(start, day0)])
    if start is None or start < day0:
        # the day before ``start`` only for the orders' first lines
        since = None if start is None else start - timedelta(days=1)
        complete = analyze.marked(analyze.period_events(store, since, as_of)).filter(
            ibis._.ts < ibis.literal(day0, type="timestamp")
        )
        if start is not None:
            complete = complete.filter(ibis._.ts >= ibis.literal(start, type="timestamp"))
        daily_sql = ibis.to_sql(analyze.daily_expr(complete), dialect="duckdb")
        store.run(
            "INSERT INTO activity_daily SELECT day, actives, buyers, orders, revenue "
            f"FROM ({daily_sql})"
        )
    cohort_sql = ibis.to_sql(analyze.cohort_expr(e), dialect="duckdb")
    store.run("DELETE FROM activity_cohorts")
    store.run(f"INSERT INTO activity_cohorts SELECT cohort, age, customers FROM ({cohort_sql})")
    store.run("DELETE FROM activity_funnel")
    # The three windows' funnels in one query (compiling one funnel took 0.4 s of Ibis; three
    # took most of a small store's build), each window's events tagged with its length.
    windows = ibis.union(
        *(
            e.filter(e.ts >= ibis.literal(as_of - timedelta(days=days), type="timestamp")).mutate(
                period=ibis.literal(days)
            )
            for days in PERIODS
        )
    )
    steps = analyze.DEFAULT_FUNNEL
    tallies = ibis.to_sql(analyze.funnel_tallies(windows, steps, key="period"), dialect="duckdb")
    store.run(
        "INSERT INTO activity_funnel "
        "SELECT p.days, s.position, s.step, coalesce(t.n, 0), ? "
        "FROM (SELECT unnest(?::INTEGER[]) AS days) p "
        "CROSS JOIN (SELECT unnest(?::INTEGER[]) AS position, unnest(?::VARCHAR[]) AS step) s "
        f"LEFT JOIN ({tallies}) t ON t.period = p.days AND t.position = s.position",
        [as_of, list(PERIODS), list(range(len(steps))), list(steps)],
    )
    store.run("DELETE FROM activity_kept")
    store.run("INSERT INTO activity_kept VALUES (?, now()::TIMESTAMP)", [as_of])


def _changed_since(store: Store) -> datetime | None:
    """The first day whose kept row may be wrong now (None: recompute every day): the day of
    the last write's as_of (it was not complete then), or earlier when events since arrived
    for earlier days or devices were linked to users since; every day after an event was
    removed (``clean --remove``), whose time is no longer in the events."""
    kept = store.rows("SELECT as_of, written_at FROM activity_kept")
    if not kept:
        return None
    as_of, written = kept[0]
    if store.scalar("SELECT count(*) FROM removed_events WHERE removed_at > ?", [written]):
        return None
    late = store.scalar(
        "SELECT min(ts) FROM events WHERE received_at > ? OR anonymous_id IN "
        "(SELECT anonymous_id FROM identities WHERE linked_at > ?)",
        [written, written],
    )
    first = pd.Timestamp(as_of).normalize()
    if late is not None:
        first = min(first, pd.Timestamp(late).normalize())
    return first.to_pydatetime()


def overview(store: Store, days: int, end: datetime) -> Activity:
    """The figures for the ``days`` calendar days up to ``end`` (its own day the last) and
    the ``days`` days before those: ``daily`` has ``2 * days`` rows, the earlier period first."""
    last = pd.Timestamp(end - timedelta(microseconds=1)).normalize()
    since = (last - pd.Timedelta(days=2 * days - 1)).to_pydatetime()
    built = store.scalar("SELECT max(as_of) FROM activity_funnel WHERE days = ?", [days])
    if built is None:
        return _live(store, days, end, since)
    day0 = pd.Timestamp(built).normalize().to_pydatetime()
    kept = store.sql(
        "SELECT day, actives, buyers, orders, revenue FROM activity_daily "
        "WHERE day >= ?::DATE AND day < ?::DATE ORDER BY day",
        [since, day0],
    ).df()
    recent = _days(store, max(since, day0), end)
    daily = (
        pd.concat([f for f in (kept, recent) if not f.empty]) if len(kept) + len(recent) else kept
    )
    funnel = store.sql(
        "SELECT step, visitors FROM activity_funnel WHERE days = ? ORDER BY position", [days]
    ).df()
    cohorts = store.sql("SELECT cohort, age, customers FROM activity_cohorts").df()
    return Activity(
        daily=_span(daily, since, end),
        funnel=_shares(funnel),
        cohorts=analyze.retention(cohorts, 12).tables["retention"] if len(cohorts) else cohorts,
        as_of=built,
    )


def _days(store: Store, since: datetime, until: datetime) -> pd.DataFrame:
    if since >= until:
        return pd.DataFrame(columns=["day", "actives", "buyers", "orders", "revenue"])
    e = analyze.marked(analyze.period_events(store, since, until))
    return analyze.daily_expr(e).order_by("day").execute()


def _live(store: Store, days: int, end: datetime, since: datetime) -> Activity:
    daily = _days(store, since, end)
    try:
        funnel = analyze.funnel(store, since=end - timedelta(days=days), until=end).tables["steps"]
    except NotFoundError:
        funnel = _shares(pd.DataFrame(columns=["step", "visitors"]))
    try:
        cohorts = analyze.cohorts(store, months=12).tables["retention"]
    except NotFoundError:
        cohorts = pd.DataFrame()
    return Activity(daily=_span(daily, since, end), funnel=funnel, cohorts=cohorts, as_of=None)


def _span(daily: pd.DataFrame, since: datetime, end: datetime) -> pd.DataFrame:
    """Every calendar day of ``[since, end)``, quiet days as 0."""
    calendar = pd.date_range(since, periods=-(-(end - since) // timedelta(days=1)), freq="D")
    frame = daily.assign(day=pd.to_datetime(daily["day"])).set_index("day")
    frame = frame.reindex(calendar, fill_value=0).rename_axis("day").reset_index()
    return frame.astype({"actives": "int64", "buyers": "int64", "orders": "int64",
                         "revenue": "float64"})  # fmt: skip


def _shares(funnel: pd.DataFrame) -> pd.DataFrame:
    n = funnel["visitors"].astype(float)
    first = n.iloc[0] if len(n) else 0.0
    return funnel.assign(
        from_previous=(n / n.shift(1)).where(n.shift(1) > 0),
        from_first=n / first if first else None,
    )


__all__ = ["PERIODS", "Activity", "overview", "write"]

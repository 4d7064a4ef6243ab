"""A campaign's report: the funnel from sent to converted, and what the campaign caused.

The effect is measured as intent-to-treat: every member of the treatment arm — messaged or
not (a bounce, a failure) — against every member of the control group, on the same outcome
(any order in the ``conversion_window_days`` after the snapshot; revenue per member in that
window). Randomization makes the difference an unbiased estimate of the campaign's effect
whatever happened to single messages; restricting to "delivered" or "opened" members would
compare unlike groups.

CUPED (Deng et al., 2013) uses each member's value of the same metric over the pre-period
(the ``max(28, 4 × window)`` days before the snapshot: orders for conversion, revenue for
revenue) as the covariate, θ pooled across arms.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from jingzhun.campaign import read as campaign_read
from jingzhun.campaign.spec import CampaignSpec, stored_spec
from jingzhun.contracts.results import Result
from jingzhun.errors import InputError, NotFoundError
from jingzhun.evaluate.stats import Lift, cuped, holm, mean_lift, proportion_lift, sample_ratio
from jingzhun.ingest.read import (
    active_in_windows_query,
    campaign_events_query,
    clicks_query,
    latest_event_time,
    orders_in_windows_query,
    orders_of_windows_query,
)
from jingzhun.store import Store

#: Days after the snapshot over which retention is measured.
RETENTION_DAYS = 30


def pre_period_days(window_days: float) -> float:
    return max(28.0, 4.0 * window_days)


@dataclasses.dataclass
class CampaignReport(Result):
    """Everything ``jingzhun campaign report`` prints (``--json``: :meth:`to_dict`)."""

    campaign: str
    channel: str
    state: str
    snapshot_at: datetime | None
    window_days: float
    window_complete: bool
    funnel: dict[str, Any]
    rates: dict[str, Any]
    arms: dict[str, Any]
    conversion: dict[str, Any]
    conversion_cuped: dict[str, Any]
    revenue: dict[str, Any]
    revenue_cuped: dict[str, Any]
    sample_ratio: dict[str, Any]
    incremental: dict[str, Any]
    variants: list[dict[str, Any]]
    retention: dict[str, Any]
    over_time: list[dict[str, Any]]
    attributed: dict[str, Any]


def _lift(lift: Lift) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in lift.__dict__.items()
    }


def member_outcomes(store: Store, spec: CampaignSpec) -> pd.DataFrame:
    """One row per member: arm, variant, delivery state, conversion, revenue and days to the
    first order in the window, the pre-period values, retention, opens and clicks. Each
    member's windows start when they joined the campaign (``assigned_at``: the snapshot, or
    the moment a triggered campaign took them in)."""
    window = timedelta(days=spec.offer.conversion_window_days)
    pre = timedelta(days=pre_period_days(spec.offer.conversion_window_days))
    starts = campaign_read.starts_query()
    orders = orders_in_windows_query(starts)
    active, activity = active_in_windows_query(starts)
    events = campaign_events_query()
    return store.sql(
        f"""
        WITH m AS ({campaign_read.members_query()}),
             post AS ({orders}),
             pre AS ({orders}),
             act AS ({active}),
             ev AS ({events}),
             unsub AS ({campaign_read.unsubscribes_query()})
        SELECT m.user_id, m.arm, m.variant, m.state, m.reason,
               post.user_id IS NOT NULL AS converted,
               coalesce(post.revenue, 0) AS revenue,
               date_diff('second', m.assigned_at, post.first_ts) / 86400.0 AS days_to_order,
               coalesce(pre.orders, 0) AS pre_orders,
               coalesce(pre.revenue, 0) AS pre_revenue,
               act.user_id IS NOT NULL AS retained,
               o.user_id IS NOT NULL AS opened,
               c.user_id IS NOT NULL AS clicked,
               u.user_id IS NOT NULL AS unsubscribed
        FROM m
        LEFT JOIN post USING (user_id)
        LEFT JOIN pre USING (user_id)
        LEFT JOIN act USING (user_id)
        LEFT JOIN ev o ON o.user_id = m.user_id AND o.event = 'email_opened'
        LEFT JOIN ev c ON c.user_id = m.user_id AND c.event = 'email_clicked'
        LEFT JOIN unsub u ON u.user_id = m.user_id
        ORDER BY m.user_id
        """,
        [
            spec.name,
            spec.name,
            timedelta(0),
            window,
            spec.name,
            -pre,
            timedelta(0),
            spec.name,
            activity,
            timedelta(days=RETENTION_DAYS),
            spec.name,
            spec.name,
        ],
    ).df()


def attributed(store: Store, spec: CampaignSpec, model: str) -> dict[str, Any]:
    """Orders of treatment members in their window credited to this campaign by a click:
    ``last_touch`` — the member's latest click (on any campaign) before the order, within the
    window, was on this one; ``first_touch`` — their earliest such click was. Attribution
    says which messages people used on the way to buying, not what the campaign caused (the
    lift does): a member who would have bought anyway and clicked is credited too."""
    window = timedelta(days=spec.offer.conversion_window_days)
    orders = orders_of_windows_query(campaign_read.treatment_starts_query())
    pick = "arg_max" if model == "last_touch" else "arg_min"
    row = store.rows(
        f"""
        WITH o AS ({orders}),
             c AS ({clicks_query()}),
             touched AS (
                SELECT o.order_id, o.revenue, {pick}(c.campaign_id, c.ts) AS credited
                FROM o JOIN c ON c.user_id = o.user_id AND c.ts <= o.ts
                               AND c.ts >= o.ts - ?::INTERVAL
                GROUP BY o.order_id, o.revenue)
        SELECT count(*), coalesce(sum(revenue), 0) FROM touched WHERE credited = ?
        """,
        [spec.name, window, window, spec.name],
    )[0]
    return {"model": model, "orders": int(row[0]), "revenue": round(float(row[1]), 2)}


def report(
    store: Store, name: str, *, confidence: float = 0.95, attribution: str = "last_touch"
) -> CampaignReport:
    """The report of campaign ``name`` (see the module docstring); ``attribution``
    (``[tracking] attribution``) credits orders to clicks.

    Raises
    ------
    NotFoundError
        No such campaign.
    InputError
        The campaign was never sent (no members), or an arm is empty.
    """
    spec, channel, state, snapshot_at = _sent(store, name)
    df = member_outcomes(store, spec)
    t = df[df["arm"] == "treatment"]
    c = df[df["arm"] == "control"]
    if t.empty or c.empty:
        raise InputError(f"campaign {name!r} has an empty arm: nothing to compare")
    window = spec.offer.conversion_window_days
    latest = _latest(store)
    complete = latest >= snapshot_at + timedelta(days=window)

    sent = int((t["state"] == "sent").sum())
    bounced = int(t["reason"].fillna("").str.startswith("hard bounce").sum())
    failed = int((t["state"] == "failed").sum())
    funnel = {
        "members": len(df),
        "treatment": len(t),
        "control": len(c),
        "sent": sent,
        "delivered": sent,  # no delivery notifications yet: accepted by the server = delivered
        "bounced": bounced,
        "failed": failed,
        "opened": int(t["opened"].sum()),
        "clicked": int(t["clicked"].sum()),
        "unsubscribed": int(t["unsubscribed"].sum()),
        "converted": int(t["converted"].sum()),
        "revenue": round(float(t["revenue"].sum()), 2),
        "cost": round(spec.offer.cost_per_message * sent, 2),
    }
    rates = {
        "open_rate": _rate(funnel["opened"], sent),
        "click_through_rate": _rate(funnel["clicked"], sent),
        "click_to_open_rate": _rate(funnel["clicked"], funnel["opened"]),
        "unsubscribe_rate": _rate(funnel["unsubscribed"], sent),
        "conversion_rate_treatment": _rate(int(t["converted"].sum()), len(t)),
        "conversion_rate_control": _rate(int(c["converted"].sum()), len(c)),
    }
    conv = proportion_lift(
        int(t["converted"].sum()), len(t), int(c["converted"].sum()), len(c), confidence
    )
    conv_cuped, theta_c = cuped(
        t["converted"].to_numpy(float), t["pre_orders"].to_numpy(float),
        c["converted"].to_numpy(float), c["pre_orders"].to_numpy(float), confidence,
    )  # fmt: skip
    rev = mean_lift(t["revenue"].to_numpy(float), c["revenue"].to_numpy(float), confidence)
    rev_cuped, theta_r = cuped(
        t["revenue"].to_numpy(float), t["pre_revenue"].to_numpy(float),
        c["revenue"].to_numpy(float), c["pre_revenue"].to_numpy(float), confidence,
    )  # fmt: skip
    srm = sample_ratio([len(t), len(c)], [1 - spec.control.share, spec.control.share])
    inc_conv = conv.lift * len(t)
    inc_rev = rev.lift * len(t)
    cost = funnel["cost"]
    profit = inc_rev * spec.offer.margin - cost
    incremental = {
        "conversions": round(inc_conv, 2),
        "conversions_low": round(conv.ci_low * len(t), 2),
        "conversions_high": round(conv.ci_high * len(t), 2),
        "revenue": round(inc_rev, 2),
        "revenue_low": round(rev.ci_low * len(t), 2),
        "revenue_high": round(rev.ci_high * len(t), 2),
        "profit": round(profit, 2),
        "profit_low": round(rev.ci_low * len(t) * spec.offer.margin - cost, 2),
        "profit_high": round(rev.ci_high * len(t) * spec.offer.margin - cost, 2),
        "cost": cost,
        "roi": round(profit / cost, 4) if cost > 0 else None,
        "margin": spec.offer.margin,
    }
    ret_t, ret_c = int(t["retained"].sum()), int(c["retained"].sum())
    retention = {
        "days": RETENTION_DAYS,
        "complete": latest >= snapshot_at + timedelta(days=RETENTION_DAYS),
        "lift": _lift(proportion_lift(ret_t, len(t), ret_c, len(c), confidence)),
    }
    return CampaignReport(
        campaign=name,
        channel=channel,
        state=state,
        snapshot_at=snapshot_at,
        window_days=window,
        window_complete=complete,
        funnel=funnel,
        rates=rates,
        arms={"treatment": len(t), "control": len(c), "control_share": spec.control.share},
        conversion=_lift(conv),
        conversion_cuped={
            **_lift(conv_cuped),
            "theta": theta_c,
            "covariate": "orders in the pre-period",
        },
        revenue=_lift(rev),
        revenue_cuped={
            **_lift(rev_cuped),
            "theta": theta_r,
            "covariate": "revenue in the pre-period",
        },
        sample_ratio=srm.__dict__
        | {"observed": list(srm.observed), "expected": list(srm.expected)},
        incremental=incremental,
        variants=_variants(t, c, confidence),
        retention=retention,
        over_time=_over_time(t, c, window, confidence),
        attributed=attributed(store, spec, attribution),
    )


@dataclasses.dataclass
class Headline(Result):
    """A campaign's conversion lift alone, for a list of campaigns: the numbers of
    :attr:`CampaignReport.conversion` (same members, same window, same interval) without
    the rest of the report."""

    campaign: str
    treatment: int
    control: int
    window_days: float
    window_complete: bool
    conversion: dict[str, Any]


def headline(store: Store, name: str, *, confidence: float = 0.95) -> Headline:
    """The conversion lift of campaign ``name`` with its interval, as :func:`report`
    computes it, from one query counting members and converters per arm (a list of
    campaigns pays for this, not for each full report).

    Raises
    ------
    NotFoundError
        No such campaign.
    InputError
        The campaign was never sent (no members), or an arm is empty.

    Examples
    --------
    >>> h = headline(store, "spring")                                   # doctest: +SKIP
    >>> h.conversion["lift"], h.conversion["ci_low"], h.conversion["ci_high"]  # doctest: +SKIP
    (0.021, 0.004, 0.038)
    """
    spec, _, _, snapshot_at = _sent(store, name)
    window = spec.offer.conversion_window_days
    orders = orders_in_windows_query(campaign_read.starts_query())
    arms = {
        arm: (int(n), int(x))
        for arm, n, x in store.rows(
            f"""WITH m AS ({campaign_read.members_query()}), post AS ({orders})
                SELECT m.arm, count(*), count(post.user_id)
                FROM m LEFT JOIN post USING (user_id) GROUP BY m.arm""",
            [name, name, timedelta(0), timedelta(days=window)],
        )
    }
    (nt, xt), (nc, xc) = arms.get("treatment", (0, 0)), arms.get("control", (0, 0))
    if not nt or not nc:
        raise InputError(f"campaign {name!r} has an empty arm: nothing to compare")
    return Headline(
        campaign=name,
        treatment=nt,
        control=nc,
        window_days=window,
        window_complete=_latest(store) >= snapshot_at + timedelta(days=window),
        conversion=_lift(proportion_lift(xt, nt, xc, nc, confidence)),
    )


def _sent(store: Store, name: str) -> tuple[CampaignSpec, str, str, datetime]:
    """The stored campaign's spec, channel, state and snapshot time.

    Raises
    ------
    NotFoundError
        No such campaign.
    InputError
        It was never sent: no snapshot, no members.
    """
    row = store.rows(
        "SELECT spec, channel, state, snapshot_at FROM campaigns WHERE name = ?", [name]
    )
    if not row:
        raise NotFoundError(f"no campaign {name[:80]!r}", hint="jingzhun campaign list shows them")
    text, channel, state, snapshot_at = row[0]
    if snapshot_at is None:
        raise InputError(
            f"campaign {name!r} has not been sent: it has no members to report on",
            hint=f"jingzhun campaign send {name}",
        )
    return stored_spec(text), channel, state, snapshot_at


def _latest(store: Store) -> datetime:
    """The clock a window is over by: the wall clock on a live store, the newest event on one
    whose data run ahead of it (simulated or replayed)."""
    return max(filter(None, [latest_event_time(store), datetime.now(UTC).replace(tzinfo=None)]))


def _rate(x: int, n: int) -> float | None:
    return round(x / n, 6) if n else None


def _variants(t: pd.DataFrame, c: pd.DataFrame, confidence: float) -> list[dict[str, Any]]:
    """Each variant's treated members against the whole control group, p-values Holm-adjusted."""
    names = sorted(v for v in t["variant"].dropna().unique())
    if not names:
        return []
    xc, nc = int(c["converted"].sum()), len(c)
    rows = []
    for v in names:
        tv = t[t["variant"] == v]
        lift = proportion_lift(int(tv["converted"].sum()), len(tv), xc, nc, confidence)
        rows.append({"variant": v, "members": len(tv), **_lift(lift)})
    adjusted, reject = holm([r["p_value"] for r in rows], alpha=1 - confidence)
    for r, p, rej in zip(rows, adjusted, reject, strict=True):
        r["p_holm"] = float(p)
        r["significant"] = bool(rej)
    return rows


def _over_time(
    t: pd.DataFrame, c: pd.DataFrame, window: float, confidence: float
) -> list[dict[str, Any]]:
    """The conversion lift and its interval counting orders up to each day of the window."""
    out = []
    days = np.unique(np.clip(np.ceil(np.arange(1, math.ceil(window) + 1)), 1, math.ceil(window)))
    for d in days:
        d = min(float(d), window)
        xt = int((t["days_to_order"] < d).sum())
        xc = int((c["days_to_order"] < d).sum())
        lift = proportion_lift(xt, len(t), xc, len(c), confidence)
        out.append({"day": d, "lift": lift.lift, "ci_low": lift.ci_low, "ci_high": lift.ci_high})
    return out


__all__ = ["CampaignReport", "Headline", "headline", "member_outcomes", "pre_period_days", "report"]

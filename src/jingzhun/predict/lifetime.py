"""Customer lifetime value on a store: the purchase process and Gamma-Gamma fitted to every
customer's orders, written with their scores in one transaction.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.predict.scores import insert_scores, record
from jingzhun.profile.build import default_as_of
from jingzhun.store import Registry, Store

# -- customer lifetime value on the store ---------------------------------------------------------


def orders_frame(store: Store, as_of: datetime) -> pd.DataFrame:
    """customer, order_id, date, amount: every order of a known user before ``as_of``, net of
    its refunds, one row per order (``date`` is the time of its first line).

    An order's amount is the revenue of its lines minus the refunds (``order_refunded`` rows,
    amounts positive) of the same customer before ``as_of`` that name its ``order_id``. A
    refund whose ``order_id`` names no order of its customer (a credit note's own number)
    reduces that customer's latest order placed at or before the refund; with no such order it
    is left out of CLV (the profile's ``refunded`` still counts it). An order whose net amount
    is 0 or less was not a purchase and is left out. Sorted by customer, date and order_id.
    """
    import ibis

    from jingzhun.profile import traits as tr

    e = tr.stitched(store.ibis(), ibis.literal(as_of, type="timestamp"))
    e = e.filter(e.user_id.notnull())
    lines = e.filter(e.event == tr.ORDER)
    orders = (
        lines.group_by(customer=lines.user_id, order_id=lines.order_id)
        .aggregate(date=lines.ts.min(), gross=lines.revenue.fill_null(0.0).sum())
        .to_pyarrow()
        .to_pandas()
    )
    r = e.filter(e.event == tr.REFUND)
    mine = orders[["customer", "order_id"]]
    refunds = (
        r.select(customer=r.user_id, order_id=r.order_id, ts=r.ts, amount=r.revenue.fill_null(0.0))
        .to_pyarrow()
        .to_pandas()
        .merge(mine.assign(_linked=True), on=["customer", "order_id"], how="left")
    )
    linked = refunds["_linked"].notna().to_numpy(dtype=bool)
    parts = [refunds.loc[linked, ["customer", "order_id", "amount"]]]
    loose = refunds.loc[~linked, ["customer", "ts", "amount"]]
    if len(loose):
        # Each loose refund to its customer's latest order at or before it (ties: the largest
        # order_id, the last row of the sort).
        targets = pd.merge_asof(
            loose.sort_values("ts", kind="stable"),
            orders[["customer", "order_id", "date"]].sort_values(
                ["date", "order_id"], kind="stable"
            ),
            left_on="ts",
            right_on="date",
            by="customer",
            direction="backward",
        )
        parts.append(targets.loc[targets["order_id"].notna(), ["customer", "order_id", "amount"]])
    refunded = (
        pd.concat(parts, ignore_index=True)
        .groupby(["customer", "order_id"], as_index=False)["amount"]
        .sum()
        .rename(columns={"amount": "refunded"})
    )
    net = orders.merge(refunded, on=["customer", "order_id"], how="left")
    net["amount"] = net["gross"].to_numpy(np.float64) - net["refunded"].fillna(0.0).to_numpy(
        np.float64
    )
    net = net.loc[net["amount"] > 0, ["customer", "order_id", "date", "amount"]]
    return net.sort_values(["customer", "date", "order_id"], kind="stable").reset_index(drop=True)


def clv_score(
    store: Store,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    model: str = "bgnbd",
    unit: str = "week",
) -> dict[str, Any]:
    """Fit the purchase model and Gamma-Gamma on every customer's orders before ``as_of``;
    write ``clv`` (discounted margin over ``[predict] clv_months``), ``expected_orders`` (over
    ``[predict] horizon_days``) and, for BG/NBD, ``p_alive`` scores."""
    from jingzhun.predict import clv as cl

    started = time.perf_counter()
    cfg = settings.predict
    at = as_of or default_as_of(store)
    orders = orders_frame(store, at)
    if orders.empty:
        raise NotFoundError(
            "no orders to fit a CLV model to (none before as_of with an amount above 0 net of refunds)",
            hint="ingest order_completed events",
        )
    summary = cl.summarise(orders, calibration_end=at, unit=unit, to_end=True)
    fit, expected, (x, t_x, T) = cl.fit_purchases(summary, model)
    m = summary["m"].to_numpy(np.float64)
    repeaters = np.isfinite(m) & (x > 0)
    if repeaters.sum() < 10:
        raise InputError(
            f"only {int(repeaters.sum())} customers bought more than once: too few for Gamma-Gamma",
            hint="CLV needs repeat customers; ingest more history",
        )
    gg = cl.fit_gamma_gamma(x[repeaters], m[repeaters])
    spend = cl.gamma_gamma_expected_spend(gg.params, np.where(repeaters, x, 0), np.nan_to_num(m))
    unit_days = cl.UNITS[unit]
    horizon = cfg.horizon_days / unit_days
    frames = {
        "expected_orders": expected(fit.params, horizon, x, t_x, T),
        "clv": cl.expected_clv(
            expected,
            fit.params,
            x,
            t_x,
            T,
            spend,
            months=cfg.clv_months,
            unit_days=unit_days,
            margin=cfg.margin,
            annual_discount=cfg.discount_rate,
        ),
    }
    if model == "bgnbd":
        frames["p_alive"] = cl.bgnbd_p_alive(fit.params, x, t_x, T)
    ids = summary.index.to_numpy(dtype=object)
    params = {"purchase": {model: fit.params}, "gamma_gamma": gg.params}
    metrics = {
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "customers": len(summary),
        "repeat_customers": int(repeaters.sum()),
        "unit": unit,
        "params": params,
        "total_clv": float(frames["clv"].sum()),
    }
    # The model and its scores in one transaction: never an active CLV model without scores.
    with record(
        Registry(store),
        target="clv",
        model=model,
        horizon_days=cfg.horizon_days,
        as_of=at,
        cutoffs={"calibration_end": at.isoformat(sep=" ")},
        features=[],
        metrics=metrics,
        artefact=None,
        seconds=time.perf_counter() - started,
    ) as saved:
        model_id = saved.model_id
        insert_scores(
            saved.con,
            {k: pd.DataFrame({"user_id": ids, "value": v}) for k, v in frames.items()},
            model_id=model_id,
            as_of=at,
        )
    return {
        "model_id": model_id,
        "model": model,
        "customers": len(summary),
        "params": params,
        "log_likelihood": round(fit.log_likelihood, 4),
        "converged": fit.converged,
        "total_clv": round(float(frames["clv"].sum()), 2),
        "mean_clv": round(float(frames["clv"].mean()), 2),
        "seconds": round(time.perf_counter() - started, 3),
    }

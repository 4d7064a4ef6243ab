"""Purchase propensity on any transaction log (``jingzhun predict propensity``).

The question: of the customers seen in the calibration period, who buys again between the
calibration end and the holdout end? Every classifier and the CLV purchase model answer it
from the calibration data only, and each is scored once on the holdout.

Classifiers need labelled examples from *before* the calibration end. They come from the same
question asked one window earlier: features at ``c0 = calibration end − L``, label = a purchase
in ``(c0, calibration end]``, with ``L`` the holdout's length, or half the calibration period
when that is shorter (so short calibration periods still leave history to learn from). A random
quarter of those customers is the validation set that chooses the best model, and the CLV model
takes part the same way: fitted on the data to ``c0``, its expected transactions in ``L`` are a
score like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from jingzhun.errors import InputError
from jingzhun.predict import clv as cl
from jingzhun.predict.propensity import (
    CLASSIFIERS,
    Classifier,
    Split,
    check_classes,
    classification_metrics,
)

#: Features of a customer at a cutoff, computed from the day-merged transactions before it.
FEATURES: tuple[str, ...] = (
    "transactions",
    "repeat_transactions",
    "days_since_first",
    "days_since_last",
    "active_span_days",
    "mean_gap_days",
    "total_amount",
    "mean_amount",
    "last_amount",
    "tx_last_30d",
    "tx_last_90d",
    "tx_last_180d",
    "amount_last_90d",
)


def daily(frame: pd.DataFrame) -> pd.DataFrame:
    """customer, date (day), amount: same-day purchases merged into one transaction."""
    amount = frame["amount"] if "amount" in frame else pd.Series(0.0, index=frame.index)
    out = (
        pd.DataFrame(
            {
                "customer": frame["customer"].astype(str),
                "date": pd.to_datetime(frame["date"]).dt.normalize(),
                "amount": pd.to_numeric(amount).fillna(0.0),
            }
        )
        .groupby(["customer", "date"], as_index=False)["amount"]
        .sum()
    )
    return out


def features_at(tx: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """One row per customer with a transaction on or before ``cutoff`` (index: customer)."""
    before = tx[tx["date"] <= cutoff]
    age = (cutoff - before["date"]).dt.days.to_numpy(np.float64)
    before = before.assign(
        age=age,
        r30=(age < 30).astype(np.float64),
        r90=(age < 90).astype(np.float64),
        r180=(age < 180).astype(np.float64),
        a90=np.where(age < 90, before["amount"].to_numpy(np.float64), 0.0),
    )
    ordered = before.sort_values(["customer", "date"])
    g = ordered.groupby("customer", sort=True)
    n = g.size().astype(np.float64)
    first_age = g["age"].max()
    last_age = g["age"].min()
    span = first_age - last_age
    out = pd.DataFrame(
        {
            "transactions": n,
            "repeat_transactions": n - 1,
            "days_since_first": first_age,
            "days_since_last": last_age,
            "active_span_days": span,
            "mean_gap_days": np.where(n > 1, span / np.maximum(n - 1, 1), first_age),
            "total_amount": g["amount"].sum(),
            "mean_amount": g["amount"].mean(),
            "last_amount": g["amount"].last(),
            "tx_last_30d": g["r30"].sum(),
            "tx_last_90d": g["r90"].sum(),
            "tx_last_180d": g["r180"].sum(),
            "amount_last_90d": g["a90"].sum(),
        }
    )
    return out[list(FEATURES)]


def _labels(
    tx: pd.DataFrame, customers: pd.Index, start: pd.Timestamp, end: pd.Timestamp
) -> np.ndarray:
    window = tx[(tx["date"] > start) & (tx["date"] <= end)]
    return customers.isin(window["customer"].unique()).astype(np.int8)


def _clv_score(
    tx: pd.DataFrame,
    cutoff: pd.Timestamp,
    customers: pd.Index,
    length_days: float,
    model: str,
    unit: str,
) -> np.ndarray:
    """Expected transactions in ``length_days`` after ``cutoff`` from the purchase model fitted
    on the data to ``cutoff``."""
    summary = cl.summarise(tx, calibration_end=cutoff, unit=unit, to_end=True)
    fit, expected, (x, t_x, T) = cl.fit_purchases(summary, model)
    scores = pd.Series(
        expected(fit.params, length_days / cl.UNITS[unit], x, t_x, T), index=summary.index
    )
    return scores.reindex(customers).to_numpy(np.float64)


def propensity_log(
    frame: pd.DataFrame,
    *,
    calibration_end: Any,
    holdout_end: Any,
    model: str = "bgnbd",
    unit: str = "week",
    models: tuple[str, ...] | list[str] = CLASSIFIERS,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Holdout ROC AUC (and PR AUC, lift) of each classifier and of the CLV model's expected
    transactions; the best is the one with the highest validation ROC AUC."""
    say = progress or (lambda _m: None)
    if holdout_end is None:
        raise InputError(
            "predict propensity needs --holdout-end", hint="the label is a purchase up to it"
        )
    # The checks on the windows (in the data, holdout after calibration) are summarise's.
    cl.summarise(frame, calibration_end=calibration_end, holdout_end=holdout_end, unit=unit)
    cal_end, hold_end = pd.Timestamp(calibration_end), pd.Timestamp(holdout_end)
    tx = daily(frame)
    first = tx["date"].min()
    length = min((hold_end - cal_end).days, (cal_end - first).days // 2)
    if length < 7:
        raise InputError(
            f"--calibration-end {cal_end.date()} leaves {(cal_end - first).days} days of history",
            hint="a later --calibration-end: the models learn from the calibration period's second half",
        )
    c0 = cal_end - pd.Timedelta(days=length)
    train_all = features_at(tx, c0)
    y_all = _labels(tx, train_all.index, c0, cal_end)
    holdout = features_at(tx, cal_end)
    y_hold = _labels(tx, holdout.index, cal_end, hold_end)
    for name, y in (("training window", y_all), ("holdout", y_hold)):
        check_classes(
            y, f"the {name}", hint="move --calibration-end or --holdout-end", unit="customers"
        )
    rng = np.random.default_rng(random_state)
    is_val = rng.random(len(train_all)) < 0.25
    X_all = train_all.to_numpy(np.float64)
    train = Split(X_all[~is_val], y_all[~is_val])
    val = Split(X_all[is_val], y_all[is_val])
    X_hold = holdout.to_numpy(np.float64)
    out: dict[str, dict[str, float]] = {}
    for name in models:
        say(f"fit {name}")
        clf = Classifier(name, random_state=random_state).fit(train.X, train.y, val.X, val.y)
        v = classification_metrics(val.y, clf.predict_proba(val.X))
        h = classification_metrics(y_hold, clf.predict_proba(X_hold))
        out[name] = _row(h, v)
    say(f"fit {model}")
    v_scores = _clv_score(tx, c0, train_all.index[is_val], length, model, unit)
    h_scores = _clv_score(tx, cal_end, holdout.index, (hold_end - cal_end).days, model, unit)
    out[model] = _row(_ranking(y_hold, h_scores), _ranking(val.y, v_scores))
    best = max(out, key=lambda m: out[m]["validation_auc"])
    return {
        "models": out,
        "best": best,
        "customers": len(holdout),
        "holdout_buyers": int(y_hold.sum()),
        "training": {
            "cutoff": str(c0.date()),
            "window_days": int(length),
            "customers": len(train_all),
            "validation_customers": int(is_val.sum()),
        },
    }


def _ranking(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The ranking metrics of a score that is not a probability (expected transactions)."""
    m = classification_metrics(y, np.clip(s / (1 + s), 0, 1))
    return {k: m[k] for k in ("roc_auc", "pr_auc", "lift_10", "lift_20", "gain_10", "gain_20")}


def _row(holdout: dict[str, float], validation: dict[str, float]) -> dict[str, float]:
    row = {
        "auc": round(holdout["roc_auc"], 4),
        "pr_auc": round(holdout["pr_auc"], 4),
        "lift_10": round(holdout["lift_10"], 3),
        "gain_20": round(holdout["gain_20"], 4),
        "validation_auc": round(validation["roc_auc"], 4),
    }
    if "log_loss" in holdout:
        row["log_loss"] = round(holdout["log_loss"], 4)
        row["brier"] = round(holdout["brier"], 4)
    return row

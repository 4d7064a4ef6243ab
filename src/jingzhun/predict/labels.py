"""Point-in-time training sets: features as of a cutoff, labels from the window after it.

A row describes a user as they looked at a cutoff ``c``: their profile computed from the
events strictly before ``c`` (``profile.build.compute``, the same traits as ``profiles``) and a
label read from the window ``[c, c + H)``:

* **propensity**: the user places an order in the window (every user known at ``c``);
* **churn**: an *active* customer (an order in the ``active_days`` before ``c``) places no order
  in the window.

Cutoffs step back from the scoring time ``as_of`` one horizon at a time, so the label windows
never overlap and each is fully observed::

    ... train ─H─► validation ─H─► test ─H─► as_of (scores predict [as_of, as_of + H))

A model is fitted on the training cutoffs, chosen and calibrated on the validation cutoff and
reported once on the test cutoff: a time-based split, as the model will be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from jingzhun.checks import MAX_DAYS, MIN_DAYS, bounded_int, finite
from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.profile import traits as tr
from jingzhun.profile.build import compute, default_as_of
from jingzhun.segment.features import numeric_traits, select, select_sql
from jingzhun.store import Store

#: What a model can predict, and what its label means.
TARGETS: dict[str, str] = {
    "propensity": "places an order within the horizon",
    "churn": "an active customer who places no order within the horizon",
}

#: Profile columns never used as features: the profile score P(u) is a blend of other traits,
#: and hour_of_day-like codes enter only through their circular encodings.
EXCLUDED = ("score", "preferred_hour", "preferred_weekday")

_TABLE = "_jz_predict_profile"


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise InputError(
            f"--target {target!r} is unknown", hint=f"use one of: {', '.join(TARGETS)}"
        )
    return target


@dataclass(frozen=True)
class Cutoffs:
    """The cutoffs of a time-based split (see the module docstring)."""

    train: tuple[datetime, ...]
    validation: datetime
    test: datetime
    score: datetime
    horizon_days: float

    def to_dict(self) -> dict[str, object]:
        return {
            "train": [c.isoformat(sep=" ") for c in self.train],
            "validation": self.validation.isoformat(sep=" "),
            "test": self.test.isoformat(sep=" "),
            "score": self.score.isoformat(sep=" "),
            "horizon_days": self.horizon_days,
        }


#: Most stacked training windows: each is a full point-in-time profile of the store.
MAX_TRAIN_WINDOWS = 50


def plan_cutoffs(
    store: Store,
    horizon_days: float,
    *,
    as_of: datetime | None = None,
    train_windows: int = 1,
    min_history_days: float = 30.0,
) -> Cutoffs:
    """Cutoffs one horizon apart, ending at ``as_of`` (default: just after the latest event).

    The earliest training cutoff must leave ``min_history_days`` of events before it, so the
    features have something to describe.
    """
    if horizon_days <= 0:
        raise InputError(f"--horizon {horizon_days} must be positive", hint="e.g. --horizon 30")
    # NaN passed `<= 0`; inf and 100,000 windows overflowed timedelta (tracebacks, issue 12);
    # 1e-300 days labelled nothing, after minutes of profiles.
    horizon_days = finite(
        horizon_days,
        "--horizon",
        lo=MIN_DAYS,
        hi=MAX_DAYS,
        hint="in days, at least one hour (1/24); e.g. --horizon 30",
    )
    train_windows = bounded_int(train_windows, "--train-windows", lo=1, hi=MAX_TRAIN_WINDOWS)
    first = store.scalar("SELECT min(ts) FROM events")
    if first is None:
        raise NotFoundError("the store has no events to learn from", hint="ingest events first")
    score_at = as_of or default_as_of(store)
    latest = store.scalar("SELECT max(ts) FROM events")
    if score_at <= first:
        raise InputError(
            f"--as-of {score_at:%Y-%m-%d} is before the first event ({first:%Y-%m-%d})",
            hint="give a later --as-of",
        )
    if score_at > latest + timedelta(days=1):
        raise InputError(
            f"--as-of {score_at:%Y-%m-%d} is after the latest event ({latest:%Y-%m-%d})",
            hint="leave out --as-of to score as of the latest event",
        )
    h = timedelta(days=horizon_days)
    test = score_at - h
    validation = test - h
    train = tuple(validation - h * k for k in range(train_windows, 0, -1))
    span = (score_at - first).total_seconds() / 86_400
    needed = (train_windows + 2) * horizon_days + min_history_days
    if train[0] - timedelta(days=min_history_days) < first:
        raise InputError(
            f"the events span {span:.0f} days ({first:%Y-%m-%d} to {score_at:%Y-%m-%d}); "
            f"--horizon {horizon_days:g} with {train_windows} training window(s) needs "
            f"{needed:.0f} ({train_windows + 2} label windows and {min_history_days:g} days of history)",
            hint="lower --horizon or --train-windows, or ingest more history",
        )
    return Cutoffs(train, validation, test, score_at, float(horizon_days))


def features_at(
    store: Store, settings: Settings, as_of: datetime, features: list[str] | None = None
) -> pd.DataFrame:
    """One row per user known at ``as_of``: user_id and the features, from events before it.

    ``features`` defaults to every numeric trait but ``EXCLUDED``. Missing values are
    filled as the segment stage fills them (0, or tenure for a recency), so a row means the
    same in training and in scoring.
    """
    compute(store, settings, as_of, into=_TABLE)
    try:
        types = store.columns(_TABLE)
        names = features or [f for f in numeric_traits(types) if f not in EXCLUDED]
        frame = store.sql(select_sql(names, types, table=_TABLE)).df()
    finally:
        store.run(f"DROP TABLE IF EXISTS temp.{_TABLE}")
    frame["user_id"] = frame["user_id"].astype(object)
    return frame


def feature_rows(profiles: ir.Table, features: list[str]) -> ir.Table:
    """``user_id`` and ``features`` of the users of a profile table — a lake's ``profiles``
    on Spark — by the selection :func:`features_at` runs on a point-in-time profile (the
    segment stage's one definition: derived features, fills, doubles), in no order: a
    distributed scorer takes the rows where they are, and a global sort would cost a shuffle."""
    import ibis.expr.operations as ops

    rows = select(profiles, features)
    op = rows.op()
    return op.parent.to_expr() if isinstance(op, ops.Sort) else rows


def buyers_expr(backend: Any, start: datetime, end: datetime) -> ir.Table:
    """The users (one column, ``user_id``, distinct) with an order in ``[start, end)``,
    stitched: an anonymous order counts for the user its device is linked to by ``end``. An
    Ibis expression, on a store's DuckDB or a lake's Spark."""
    e = tr.stitched(backend, ibis.literal(end, type="timestamp"))
    orders = e.filter((e.event == "order_completed") & (e.ts >= start) & e.user_id.notnull())
    return orders.select("user_id").distinct()


def buyers(store: Store, start: datetime, end: datetime) -> set[str]:
    """Users with an order in ``[start, end)`` (:func:`buyers_expr`)."""
    ids = buyers_expr(store.ibis(), start, end).to_pyarrow().column(0).to_pylist()
    return set(ids)


def label_frame(
    store: Store,
    settings: Settings,
    cutoff: datetime,
    *,
    target: str,
    horizon_days: float,
    active_days: float,
    features: list[str] | None = None,
) -> pd.DataFrame:
    """Features at ``cutoff`` and the target's label from ``[cutoff, cutoff + horizon)``.

    Returns user_id, the features, ``label`` (0/1) and ``cutoff``.
    """
    check_target(target)
    frame = features_at(store, settings, cutoff, features)
    end = cutoff + timedelta(days=horizon_days)
    bought = frame["user_id"].isin(buyers(store, cutoff, end)).to_numpy()
    if target == "propensity":
        frame["label"] = bought.astype(np.int8)
    else:
        active = active_customers(store, cutoff, active_days)
        keep = frame["user_id"].isin(active).to_numpy()
        frame = frame.loc[keep].reset_index(drop=True)
        frame["label"] = (~bought[keep]).astype(np.int8)
    frame["cutoff"] = cutoff
    return frame


def active_window(cutoff: datetime, active_days: float) -> tuple[datetime, datetime]:
    """The window whose buyers are churn's population at ``cutoff``."""
    return cutoff - timedelta(days=active_days), cutoff


def active_customers(store: Store, cutoff: datetime, active_days: float) -> set[str]:
    """Customers with an order in the ``active_days`` before ``cutoff``: churn's population."""
    return buyers(store, *active_window(cutoff, active_days))

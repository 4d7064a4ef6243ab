"""The targeting policy: whom to send a message, given each user's predicted uplift.

A message is worth sending when the incremental profit it is expected to cause is positive:
``uplift * margin > cost``, where ``uplift`` is the change in the chance to convert the
message causes (:mod:`jingzhun.predict.uplift_learners` predicts it), ``margin`` the money an
incremental conversion earns and ``cost`` the cost of one message. This is what the campaign
stage calls to choose its audience:

- :func:`targeting_policy`: the users worth a message;
- :func:`profit_curve`: expected (and, on held-out campaign data, observed) profit of
  targeting the top share, for every share;
- :func:`best_share`: the share where that profit peaks.

Examples
--------
>>> targeting_policy([0.1, -0.02, 0.05, 0.2], margin=10, cost=0.6)
array([ True, False, False,  True])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from jingzhun.errors import InputError
from jingzhun.predict.uplift_metrics import check_numeric, check_treatment, check_vector, check_y

__all__ = ["best_share", "profit_curve", "targeting_policy"]


def _money(value: Any, name: str, where: str, n: int) -> np.ndarray:
    arr = check_numeric(np.asarray(value), name, where)
    if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n):
        raise InputError(
            f"{where}: `{name}` must be a number or one value per user "
            f"({n}), got shape {arr.shape}",
            hint=f"align `{name}` with uplift",
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: `{name}` has missing or infinite values", hint="fill them")
    return np.broadcast_to(arr, (n,))


def _policy_inputs(
    uplift: Any, margin: Any, cost: Any, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = check_numeric(check_vector(uplift, "uplift", where), "uplift", where)
    if len(u) == 0:
        raise InputError(f"{where}: `uplift` is empty", hint="score at least one user")
    if np.isnan(u).any():
        raise InputError(
            f"{where}: `uplift` has {int(np.isnan(u).sum())} NaN values",
            hint="score every user (drop or fill the rows the model could not score)",
        )
    return u, _money(margin, "margin", where, len(u)), _money(cost, "cost", where, len(u))


def targeting_policy(uplift: Any, *, margin: Any, cost: Any) -> np.ndarray:
    """Whom to send the message: users whose expected incremental profit is positive.

    ``uplift * margin > cost``, where ``margin`` is the money an incremental conversion earns
    (for instance expected order value × margin rate) and ``cost`` the cost of one message;
    either may be a number or one value per user.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> targeting_policy([0.1, -0.02, 0.05, 0.2], margin=10, cost=0.6)
    array([ True, False, False,  True])
    """
    u, m, c = _policy_inputs(uplift, margin, cost, "targeting_policy")
    return u * m > c


def profit_curve(
    uplift: Any,
    *,
    margin: Any,
    cost: Any,
    y: Any = None,
    treatment: Any = None,
    n_points: int = 101,
) -> pd.DataFrame:
    """Expected (and, on held-out campaign data, observed) profit of targeting the top share.

    Users are sorted by expected incremental profit ``uplift * margin`` descending (ties in
    their input order); the first ``users = round(share * n)`` are targeted.

    Columns:

    - ``share``: the targeted share, ``n_points`` values from 0 to 1;
    - ``users``: users targeted;
    - ``expected_incremental_conversions``: sum of their predicted uplift;
    - ``expected_profit``: sum of ``uplift * margin - cost`` over them (the model's belief);
    - with ``y`` and ``treatment`` (a randomized hold-out the model did not train on):
      ``observed_incremental_conversions = k * (mean_t(y) - mean_c(y))`` over the k users
      targeted (the uplift curve's estimate, :func:`uplift_curve`: the conversion-rate
      difference measured in the top k, scaled to all k of them), and
      ``observed_profit = k * (mean_t(y * margin) - mean_c(y * margin)) - sum(cost)``: the same
      estimate in money, each conversion weighted by its user's margin. Both are NaN where the
      top k holds no treated or no control user, and 0 at k = 0.

    Examples
    --------
    >>> profit_curve([0.1, -0.02, 0.05, 0.2], margin=10, cost=0.6, n_points=5)[
    ...     ["users", "expected_profit"]]
       users  expected_profit
    0      0              0.0
    1      1              1.4
    2      2              1.8
    3      3              1.7
    4      4              0.9
    """
    where = "profit_curve"
    u, m, c = _policy_inputs(uplift, margin, cost, where)
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 2:
        raise InputError(f"{where}: n_points={n_points!r}", hint="give an integer >= 2")
    if (y is None) != (treatment is None):
        raise InputError(
            f"{where}: give both `y` and `treatment` or neither",
            hint="observed profit needs the hold-out's outcomes and groups",
        )
    n = len(u)
    value = u * m
    order = np.argsort(-value, kind="stable")
    share = np.linspace(0.0, 1.0, int(n_points))
    users = np.rint(share * n).astype(np.int64)
    pick = np.maximum(users - 1, 0)
    zero = users == 0

    def cumulative(v: np.ndarray) -> np.ndarray:
        return np.where(zero, 0.0, np.cumsum(v[order])[pick])

    frame = pd.DataFrame(
        {
            "share": share,
            "users": users,
            "expected_incremental_conversions": cumulative(u),
            "expected_profit": cumulative(value - c),
        }
    )
    if y is not None:
        yy = check_y(y, where)
        if len(yy) != n:
            raise InputError(
                f"{where}: `y` has {len(yy)} values but `uplift` has {n}",
                hint="pass one outcome per user, aligned with uplift",
            )
        t = check_treatment(treatment, where, n)
        n_t, n_c = cumulative(t), cumulative(1.0 - t)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = cumulative(yy * t) / n_t - cumulative(yy * (1 - t)) / n_c
            money = cumulative(yy * m * t) / n_t - cumulative(yy * m * (1 - t)) / n_c
        defined = (n_t > 0) & (n_c > 0)
        frame["observed_incremental_conversions"] = np.where(
            zero, 0.0, np.where(defined, rate * users, np.nan)
        )
        frame["observed_profit"] = np.where(
            zero, 0.0, np.where(defined, money * users - cumulative(c), np.nan)
        )
    return frame


def best_share(curve: pd.DataFrame, column: str = "expected_profit") -> tuple[float, float]:
    """The targeted share where ``curve[column]`` (a :func:`profit_curve`) peaks, and the
    profit there; the smallest such share on ties, NaN rows ignored.

    Examples
    --------
    >>> curve = profit_curve([0.1, -0.02, 0.05, 0.2], margin=10, cost=0.6, n_points=5)
    >>> share, profit = best_share(curve)
    >>> share, round(profit, 6)
    (0.5, 1.8)
    """
    if column not in curve.columns:
        raise InputError(
            f"best_share: no column {column!r}",
            hint=f"use one of: {', '.join(c for c in curve.columns if 'profit' in c)}",
        )
    values = curve[column].to_numpy(np.float64)
    if np.isnan(values).all():
        raise InputError(
            f"best_share: {column} is undefined at every share",
            hint="the hold-out needs treated and control users",
        )
    i = int(np.nanargmax(values))
    return float(curve["share"].iloc[i]), float(values[i])

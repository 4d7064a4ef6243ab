"""Uplift metrics: the Qini and uplift curves, their normalised areas, uplift at k, and the
evaluation of a ranking on held-out randomized campaign data.

A campaign that sends a message to a random share of its audience (the treated group) and
holds the rest back (the control group) measures, per user, the *uplift*
``P(y=1 | x, t=1) - P(y=1 | x, t=0)``. These metrics say how well a score ranks users by it:
the Qini curve and coefficient, the uplift curve and AUUC, uplift at k, all with
scikit-uplift's definitions; :func:`evaluate_uplift` gathers them (and, on simulated data, the
agreement with the true uplift). The learners are in :mod:`jingzhun.predict.uplift_learners`,
the targeting policy in :mod:`jingzhun.predict.policy`; both read their inputs with the checks
here (:func:`check_y`, :func:`check_treatment` …), so every uplift function refuses bad input
in the same words.

References
----------
Radcliffe (2007), "Using control groups to target on predicted lift", Direct Marketing
Analytics Journal 3. Devriendt, Guns & Verbeke (2020), "Learning to rank for uplift
modeling", arXiv:2002.05897.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from jingzhun.errors import InputError

__all__ = [
    "check_numeric",
    "check_treatment",
    "check_vector",
    "check_y",
    "evaluate_uplift",
    "is_binary",
    "perfect_qini_curve",
    "perfect_uplift_curve",
    "qini_auc_score",
    "qini_curve",
    "uplift_at_k",
    "uplift_auc_score",
    "uplift_curve",
]

# -- inputs ----------------------------------------------------------------------------------
#
# ``where`` is the public function a message names (``qini_curve: `y` is empty``).


def check_vector(value: Any, name: str, where: str) -> np.ndarray:
    """``value`` as a 1-D array (one value per user); ``name`` is how messages call it."""
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise InputError(
            f"{where}: `{name}` must be a 1-D vector, got shape {arr.shape}",
            hint="pass one value per user",
        )
    return arr


def check_numeric(arr: np.ndarray, name: str, where: str) -> np.ndarray:
    """``arr`` as float64, or an error saying that ``name`` is not numeric."""
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: `{name}` is not numeric (dtype {arr.dtype})",
            hint=f"pass numbers in `{name}`",
        ) from None


def check_treatment(treatment: Any, where: str, n: int | None = None) -> np.ndarray:
    """Treatment as float64 0/1 (1 = sent the message), both groups present; with ``n``,
    one flag per outcome."""
    t = check_vector(treatment, "treatment", where)
    if n is not None and len(t) != n:
        raise InputError(
            f"{where}: `treatment` has {len(t)} values but `y` has {n}",
            hint="pass one treatment flag per user, aligned with y",
        )
    t = check_numeric(t, "treatment", where)
    if not np.isin(t, (0.0, 1.0)).all():
        bad = np.unique(t[~np.isin(t, (0.0, 1.0))])[:5]
        raise InputError(
            f"{where}: `treatment` must be binary (1 = sent the message, 0 = held out), "
            f"found {', '.join(map(repr, bad.tolist()))}",
            hint="encode the groups as 1 (treated) and 0 (control)",
        )
    n_treated = int(t.sum())
    if n_treated == 0 or n_treated == len(t):
        only = "control" if n_treated == 0 else "treated"
        raise InputError(
            f"{where}: `treatment` has only {only} users ({len(t)} rows)",
            hint="uplift needs a randomized campaign with both a treated and a control group",
        )
    return t


def check_y(y: Any, where: str) -> np.ndarray:
    """Outcomes as a non-empty float64 vector without missing or infinite values."""
    arr = check_numeric(check_vector(y, "y", where), "y", where)
    if len(arr) == 0:
        raise InputError(f"{where}: `y` is empty", hint="pass at least one user")
    if not np.isfinite(arr).all():
        raise InputError(
            f"{where}: `y` has {int((~np.isfinite(arr)).sum())} missing or infinite values",
            hint="use 0 for users who did not convert",
        )
    return arr


# -- metrics ---------------------------------------------------------------------------------
#
# Written by hand with numpy, to scikit-uplift's definitions (sklift.metrics, 0.5): the package
# itself is not a dependency because it pulls matplotlib and requests for its plots. Like
# scikit-uplift (and sklearn's roc_curve), the curves have one point per distinct score: users
# with equal predicted uplift are targeted together, so a curve does not depend on how ties
# happen to be ordered.


def _check_score(score: Any, name: str, where: str, n: int) -> np.ndarray:
    arr = check_numeric(check_vector(score, name, where), name, where)
    if len(arr) != n:
        raise InputError(
            f"{where}: `{name}` has {len(arr)} values but `y` has {n}",
            hint=f"pass one `{name}` value per user, aligned with y and treatment",
        )
    nan = np.isnan(arr)
    if nan.any():
        raise InputError(
            f"{where}: `{name}` has {int(nan.sum())} NaN values",
            hint="score every user (drop or fill the rows the model could not score)",
        )
    return arr


def _check_metric_inputs(
    y: Any, treatment: Any, uplift: Any, where: str, name: str = "uplift"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = check_y(y, where)
    t = check_treatment(treatment, where, len(y))
    return y, t, _check_score(uplift, name, where, len(y))


def is_binary(y: np.ndarray) -> bool:
    """Whether every outcome is 0 or 1 (conversions, rather than amounts)."""
    return bool(np.isin(y, (0.0, 1.0)).all())


def _require_binary(y: np.ndarray, where: str) -> None:
    if not is_binary(y):
        raise InputError(
            f"{where}: `y` must be binary (1 = converted, 0 = not) for this metric",
            hint="use qini_curve or qini_auc_score for continuous outcomes such as revenue",
        )


def _cumulative(
    y: np.ndarray, t: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targeted, treated, treated outcome and control outcome counts at each distinct score,
    users sorted by score descending (scikit-uplift's order: a reversed stable argsort)."""
    order = np.argsort(score, kind="mergesort")[::-1]
    y, t, score = y[order], t[order], score[order]
    # Comparison rather than np.diff so that tied infinite scores stay tied.
    last = np.r_[np.flatnonzero(score[1:] != score[:-1]), score.size - 1]
    n = last + 1
    n_t = np.cumsum(t)[last]
    y_t = np.cumsum(y * t)[last]
    y_c = np.cumsum(y * (1.0 - t))[last]
    return n, n_t, n - n_t, y_t, y_c


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def qini_curve(y: Any, treatment: Any, uplift: Any) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve: incremental conversions among the treated users targeted so far.

    Users are sorted by ``uplift`` descending; at each distinct score (ties are targeted
    together) with ``k`` users targeted,
    ``qini(k) = Y_t(k) - Y_c(k) * N_t(k) / N_c(k)`` (0 while ``N_c(k) = 0``), where ``Y`` counts
    conversions and ``N`` users in the treated (t) and control (c) group among the first k.
    The curve starts at (0, 0).

    The oracle's Qini curve on simulated data, where the true uplift of each user is known, is
    this same function with the true uplift as the score: ``qini_curve(y, treatment, tau)``.
    It differs from :func:`perfect_qini_curve`, which ranks by the observed outcomes themselves
    and is reachable by no model.

    Parameters
    ----------
    y : array-like of shape (n,)
        Outcomes: 1/0 conversions, or amounts such as revenue.
    treatment : array-like of shape (n,)
        1 for users who were sent the message, 0 for the control group; both must occur.
    uplift : array-like of shape (n,)
        Predicted uplift (any score that ranks users); no NaN.

    Returns
    -------
    n_targeted : ndarray of int64
        Users targeted at each point, starting with 0 and ending with n.
    qini : ndarray of float64
        Incremental conversions at each point.

    Examples
    --------
    >>> qini_curve([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.5, 0.2, 0.1])
    (array([0, 1, 2, 3, 4]), array([0. , 1. , 1. , 0.5, 0. ]))
    """
    y, t, s = _check_metric_inputs(y, treatment, uplift, "qini_curve")
    return _qini(y, t, s)


def _qini(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, n_t, n_c, y_t, y_c = _cumulative(y, t, s)
    values = y_t - y_c * _ratio(n_t, n_c)
    return np.r_[0, n].astype(np.int64), np.r_[0.0, values]


def uplift_curve(y: Any, treatment: Any, uplift: Any) -> tuple[np.ndarray, np.ndarray]:
    """The uplift curve: ``(mean_t(k) - mean_c(k)) * k`` as in scikit-uplift.

    The difference of the conversion rates of the treated and the control users among the first
    ``k`` by predicted uplift (each rate 0 while its group is empty), scaled to the k users: an
    estimate of the incremental conversions had all k been sent the message.

    Parameters
    ----------
    y, treatment, uplift : array-like of shape (n,)
        As in :func:`qini_curve`.

    Returns
    -------
    n_targeted : ndarray of int64
    values : ndarray of float64

    Examples
    --------
    >>> uplift_curve([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.5, 0.2, 0.1])
    (array([0, 1, 2, 3, 4]), array([0. , 1. , 2. , 1.5, 0. ]))
    """
    y, t, s = _check_metric_inputs(y, treatment, uplift, "uplift_curve")
    return _uplift(y, t, s)


def _uplift(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, n_t, n_c, y_t, y_c = _cumulative(y, t, s)
    values = (_ratio(y_t, n_t) - _ratio(y_c, n_c)) * n
    return np.r_[0, n].astype(np.int64), np.r_[0.0, values]


def perfect_qini_curve(
    y: Any, treatment: Any, *, negative_effect: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The best Qini curve any ranking could reach on these observed outcomes (scikit-uplift).

    With ``negative_effect`` the ranking puts treated converters first and control converters
    last (score ``y*t - y*(1-t)``); without it, the curve rises straight to the total
    incremental conversions and stays there. Not to be confused with the oracle's curve on
    simulated data (see :func:`qini_curve`).

    Parameters
    ----------
    y, treatment : array-like of shape (n,)
        As in :func:`qini_curve`.
    negative_effect : bool, default True
        Whether the perfect ranking may show the message's negative effects.

    Returns
    -------
    n_targeted : ndarray
    qini : ndarray of float64

    Examples
    --------
    >>> perfect_qini_curve([1, 0, 1, 0], [1, 0, 0, 1])
    (array([0, 1, 3, 4]), array([0., 1., 1., 0.]))
    """
    y = check_y(y, "perfect_qini_curve")
    t = check_treatment(treatment, "perfect_qini_curve", len(y))
    return _perfect_qini(y, t, negative_effect)


def _perfect_qini(
    y: np.ndarray, t: np.ndarray, negative_effect: bool
) -> tuple[np.ndarray, np.ndarray]:
    if negative_effect:
        return _qini(y, t, y * t - y * (1.0 - t))
    total = y[t == 1].sum() - (t == 1).sum() * y[t == 0].sum() / (t == 0).sum()
    return np.array([0.0, total, len(y)]), np.array([0.0, total, total])


def perfect_uplift_curve(y: Any, treatment: Any) -> tuple[np.ndarray, np.ndarray]:
    """The best uplift curve on these observed (binary) outcomes, as in scikit-uplift.

    Examples
    --------
    >>> perfect_uplift_curve([1, 0, 1, 0], [1, 0, 0, 1])
    (array([0, 1, 2, 3, 4]), array([0. , 1. , 2. , 1.5, 0. ]))
    """
    y = check_y(y, "perfect_uplift_curve")
    _require_binary(y, "perfect_uplift_curve")
    t = check_treatment(treatment, "perfect_uplift_curve", len(y))
    return _perfect_uplift(y, t)


def _perfect_uplift(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    control_responders = np.sum((y == 1) & (t == 0))
    treated_nonresponders = np.sum((y == 0) & (t == 1))
    summand = y if control_responders > treated_nonresponders else t
    return _uplift(y, t, 2.0 * (y == t) + summand)


def _normalised_area(
    model: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]
) -> float:
    """(model area - random line's area) / (perfect area - random line's area); the random line
    joins (0, 0) to the perfect curve's last point. NaN when the denominator is 0."""
    x_perfect, y_perfect = perfect
    baseline = float(x_perfect[-1]) * float(y_perfect[-1]) / 2.0
    top = float(np.trapezoid(y_perfect, x_perfect)) - baseline
    if top == 0:
        return float("nan")
    return (float(np.trapezoid(model[1], model[0])) - baseline) / top


def qini_auc_score(y: Any, treatment: Any, uplift: Any, *, negative_effect: bool = True) -> float:
    """The Qini coefficient, normalised as in scikit-uplift.

    The area between the model's Qini curve and the random-targeting line, divided by the area
    between the perfect curve (:func:`perfect_qini_curve`) and that line: 1 for the perfect
    ranking, about 0 for a random one, negative when the ranking is worse than random. NaN when
    the perfect curve has no area above the line (for instance without any conversion).

    Examples
    --------
    >>> round(qini_auc_score([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.5, 0.2, 0.1]), 4)
    0.8333
    """
    y, t, s = _check_metric_inputs(y, treatment, uplift, "qini_auc_score")
    return _normalised_area(_qini(y, t, s), _perfect_qini(y, t, negative_effect))


def uplift_auc_score(y: Any, treatment: Any, uplift: Any) -> float:
    """AUUC: the area under the uplift curve normalised as :func:`qini_auc_score` is, against
    :func:`perfect_uplift_curve` (binary ``y`` only, as in scikit-uplift).

    Examples
    --------
    >>> uplift_auc_score([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.5, 0.2, 0.1])
    1.0
    """
    y, t, s = _check_metric_inputs(y, treatment, uplift, "uplift_auc_score")
    _require_binary(y, "uplift_auc_score")
    return _normalised_area(_uplift(y, t, s), _perfect_uplift(y, t))


def _top_count(n: int, k: float | int, where: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise InputError(f"{where}: k={k!r} is not a number", hint="give a share in (0, 1]")
    if isinstance(k, int | np.integer):
        if not 1 <= k <= n:
            raise InputError(
                f"{where}: k={k} users is out of range", hint=f"give 1 to {n} users or a share"
            )
        return int(k)
    if not 0 < k <= 1:
        raise InputError(f"{where}: k={k} is not a share in (0, 1]", hint="e.g. k=0.3")
    # scikit-uplift takes int(n * k); the small tolerance keeps 0.29 * 100 at 29, not 28.
    count = int(np.floor(n * k + 1e-9))
    if count < 1:
        raise InputError(f"{where}: k={k} of {n} users selects nobody", hint="give a larger share")
    return count


def uplift_at_k(
    y: Any, treatment: Any, uplift: Any, k: float | int = 0.3, strategy: str = "overall"
) -> float:
    """Conversion rate of the treated minus that of the control users in the top k by uplift.

    Parameters
    ----------
    y, treatment, uplift : array-like of shape (n,)
        As in :func:`qini_curve`.
    k : float or int, default 0.3
        A share of the users in (0, 1], or a number of users.
    strategy : {"overall", "by_group"}, default "overall"
        ``"overall"`` takes the top k of all users and compares the two groups within them;
        ``"by_group"`` takes the top k share (or count) of each group separately.

    Returns
    -------
    float
        NaN when the top k holds no treated or no control user.

    Examples
    --------
    >>> uplift_at_k([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.5, 0.2, 0.1], k=0.5)
    1.0
    """
    where = "uplift_at_k"
    y, t, s = _check_metric_inputs(y, treatment, uplift, where)
    if strategy not in ("overall", "by_group"):
        raise InputError(
            f"{where}: strategy={strategy!r} is not known", hint="use 'overall' or 'by_group'"
        )
    order = np.argsort(s, kind="mergesort")[::-1]
    y, t = y[order], t[order]
    if strategy == "overall":
        top = _top_count(len(y), k, where)
        y_top, t_top = y[:top], t[:top]
        treated, control = y_top[t_top == 1], y_top[t_top == 0]
    else:
        treated, control = y[t == 1], y[t == 0]
        treated = treated[: _top_count(len(treated), k, where)]
        control = control[: _top_count(len(control), k, where)]
    if len(treated) == 0 or len(control) == 0:
        return float("nan")
    return float(treated.mean() - control.mean())


# -- evaluation ------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def evaluate_uplift(
    y: Any, treatment: Any, uplift: Any, *, true_uplift: Any = None
) -> dict[str, Any]:
    """Uplift metrics of a ranking on held-out randomized data, as a JSON-able dict.

    Keys: ``qini_auc`` (:func:`qini_auc_score`), ``auuc`` (:func:`uplift_auc_score`; None for
    non-binary ``y``), ``uplift_at_10``, ``uplift_at_20``, ``uplift_at_30``
    (:func:`uplift_at_k`, strategy "overall"). With ``true_uplift`` (simulated data only):
    ``true_correlation`` ({"pearson", "spearman"} of predicted vs. true uplift),
    ``oracle_qini_auc`` (the Qini coefficient of ranking by the true uplift) and
    ``qini_vs_oracle`` (the model's Qini coefficient over the oracle's). Undefined values
    (NaN) are given as None.

    Examples
    --------
    >>> evaluate_uplift(y_test, t_test, model.predict(X_test), true_uplift=tau)  # doctest: +SKIP
    {'qini_auc': 0.21, 'auuc': 0.18, ..., 'qini_vs_oracle': 0.87}
    """
    where = "evaluate_uplift"
    yy, t, s = _check_metric_inputs(y, treatment, uplift, where)
    qini = _normalised_area(_qini(yy, t, s), _perfect_qini(yy, t, True))
    auuc = (
        _normalised_area(_uplift(yy, t, s), _perfect_uplift(yy, t))
        if is_binary(yy)
        else float("nan")
    )
    out: dict[str, Any] = {"qini_auc": _finite_or_none(qini), "auuc": _finite_or_none(auuc)}
    for pct in (10, 20, 30):
        # None, not an error, when the top share of a small hold-out holds nobody.
        top = np.floor(len(yy) * pct / 100 + 1e-9) >= 1
        value = uplift_at_k(yy, t, s, k=pct / 100) if top else float("nan")
        out[f"uplift_at_{pct}"] = _finite_or_none(value)
    if true_uplift is not None:
        tau = _check_score(true_uplift, "true_uplift", where, len(yy))
        constant = np.ptp(s) == 0 or np.ptp(tau) == 0
        pearson = float("nan") if constant else float(np.corrcoef(s, tau)[0, 1])
        spearman = float("nan") if constant else float(stats.spearmanr(s, tau).statistic)
        oracle = _normalised_area(_qini(yy, t, tau), _perfect_qini(yy, t, True))
        out["true_correlation"] = {
            "pearson": _finite_or_none(pearson),
            "spearman": _finite_or_none(spearman),
        }
        out["oracle_qini_auc"] = _finite_or_none(oracle)
        ratio = (
            qini / oracle if np.isfinite(qini) and np.isfinite(oracle) and oracle > 0 else np.nan
        )
        out["qini_vs_oracle"] = _finite_or_none(ratio)
    return out

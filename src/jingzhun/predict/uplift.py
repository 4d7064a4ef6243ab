"""Uplift modelling: who buys *because* of a message, learned from a randomized campaign.

A campaign that sends a message to a random share of its audience (the treated group) and
holds the rest back (the control group) measures, per user, the *uplift*
``P(y=1 | x, t=1) - P(y=1 | x, t=0)``: the change in the chance to convert that the message
causes. Ranking users by predicted uplift, rather than by propensity, finds the persuadable
users and leaves out the sure things (who buy anyway), the lost causes and the sleeping dogs
(whom the message puts off: negative uplift).

Three parts:

- metrics: the Qini and uplift curves, their normalised areas (Qini coefficient, AUUC) and
  uplift at k, with scikit-uplift's definitions;
- models: :class:`TLearner`, :class:`XLearner` and :class:`ClassTransformation` on LightGBM,
  saved as numpy arrays only (:meth:`UpliftModel.to_state`), never pickled;
- policy: whom to target given a margin per incremental conversion and a cost per message
  (:func:`targeting_policy`, :func:`profit_curve`, :func:`best_share`).

References
----------
Radcliffe (2007), "Using control groups to target on predicted lift", Direct Marketing
Analytics Journal 3. Jaskowski & Jaroszewicz (2012), "Uplift modeling for clinical trial data",
ICML workshop on clinical data analysis. Athey & Imbens (2016), "Recursive partitioning for
heterogeneous causal effects", PNAS 113(27). Künzel, Sekhon, Bickel & Yu (2019), "Metalearners
for estimating heterogeneous treatment effects using machine learning", PNAS 116(10).
Devriendt, Guns & Verbeke (2020), "Learning to rank for uplift modeling", arXiv:2002.05897.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import lightgbm
import numpy as np
import pandas as pd
from scipy import stats

from jingzhun.errors import InputError

# -- metrics ---------------------------------------------------------------------------------
#
# Written by hand with numpy, to scikit-uplift's definitions (sklift.metrics, 0.5): the package
# itself is not a dependency because it pulls matplotlib and requests for its plots. Like
# scikit-uplift (and sklearn's roc_curve), the curves have one point per distinct score: users
# with equal predicted uplift are targeted together, so a curve does not depend on how ties
# happen to be ordered.


def _vector(value: Any, name: str, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise InputError(
            f"{where}: `{name}` must be a 1-D vector, got shape {arr.shape}",
            hint="pass one value per user",
        )
    return arr


def _numeric(arr: np.ndarray, name: str, where: str) -> np.ndarray:
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: `{name}` is not numeric (dtype {arr.dtype})",
            hint=f"pass numbers in `{name}`",
        ) from None


def _check_treatment(treatment: Any, where: str, n: int | None = None) -> np.ndarray:
    """Treatment as float64 0/1, with both groups present."""
    t = _vector(treatment, "treatment", where)
    if n is not None and len(t) != n:
        raise InputError(
            f"{where}: `treatment` has {len(t)} values but `y` has {n}",
            hint="pass one treatment flag per user, aligned with y",
        )
    t = _numeric(t, "treatment", where)
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


def _check_y(y: Any, where: str) -> np.ndarray:
    arr = _numeric(_vector(y, "y", where), "y", where)
    if len(arr) == 0:
        raise InputError(f"{where}: `y` is empty", hint="pass at least one user")
    if not np.isfinite(arr).all():
        raise InputError(
            f"{where}: `y` has {int((~np.isfinite(arr)).sum())} missing or infinite values",
            hint="use 0 for users who did not convert",
        )
    return arr


def _check_score(score: Any, name: str, where: str, n: int) -> np.ndarray:
    arr = _numeric(_vector(score, name, where), name, where)
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
    y = _check_y(y, where)
    t = _check_treatment(treatment, where, len(y))
    return y, t, _check_score(uplift, name, where, len(y))


def _is_binary(y: np.ndarray) -> bool:
    return bool(np.isin(y, (0.0, 1.0)).all())


def _require_binary(y: np.ndarray, where: str) -> None:
    if not _is_binary(y):
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
    y = _check_y(y, "perfect_qini_curve")
    t = _check_treatment(treatment, "perfect_qini_curve", len(y))
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
    y = _check_y(y, "perfect_uplift_curve")
    _require_binary(y, "perfect_uplift_curve")
    t = _check_treatment(treatment, "perfect_uplift_curve", len(y))
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


# -- models ----------------------------------------------------------------------------------

#: LightGBM defaults for campaign data: small uplift signals under much noise want many
#: shallow, well-populated leaves, bagging and a slow learning rate; deterministic, so a
#: refit on the same data gives the same model. Two OpenMP threads stall each other when
#: another process holds one of two cores (10x slower): pass ``params={"n_jobs": 1}`` then.
LGBM_DEFAULTS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "n_jobs": 2,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}

#: Set by the model itself, never through ``params``.
_RESERVED = {
    "objective": "each uplift model chooses its own objectives",
    "class_weight": "class weights would distort the probabilities uplift is computed from",
    "random_state": "pass random_state= to the model itself",
}


def lgbm_params(model: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """LightGBM keyword arguments: :data:`LGBM_DEFAULTS` updated with ``params``.

    Names must be parameters of ``lightgbm.LGBMModel`` (or one of the defaults' names);
    anything else is an error listing the valid names.
    """
    params = dict(params or {})
    for name, why in _RESERVED.items():
        if name in params:
            raise InputError(f"{model}: LightGBM parameter {name!r} cannot be set", hint=why)
    valid = (set(lightgbm.LGBMModel().get_params()) | set(LGBM_DEFAULTS)) - set(_RESERVED)
    unknown = sorted(set(params) - valid)
    if unknown:
        raise InputError(
            f"{model}: unknown LightGBM parameter(s) {', '.join(map(repr, unknown))}",
            hint=f"valid names: {', '.join(sorted(valid))}",
        )
    return LGBM_DEFAULTS | params


def _check_X(X: Any, where: str, n_features: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}: `X` must be numeric", hint="encode categories as numbers first"
        ) from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(
            f"{where}: `X` must be a non-empty 2-D matrix, got shape {arr.shape}",
            hint="one row per user, one column per feature",
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(
            f"{where}: `X` has {arr.shape[1]} features, the model was fitted on {n_features}",
            hint="build the features the same way as for training",
        )
    return arr


def _train(
    X: np.ndarray,
    y: np.ndarray,
    objective: str,
    params: dict[str, Any],
    random_state: int | None,
    model: str,
    sample_weight: np.ndarray | None = None,
) -> lightgbm.Booster:
    """One LightGBM booster, reloaded from its text so that a fitted model and the same model
    restored by :meth:`UpliftModel.from_state` predict identically."""
    estimator = lightgbm.LGBMModel(objective=objective, random_state=random_state, **params)
    try:
        estimator.fit(X, y, sample_weight=sample_weight)
    except lightgbm.basic.LightGBMError as exc:
        raise InputError(
            f"{model}: LightGBM rejected the training data or parameters: {exc}",
            hint="check the values given in params",
        ) from exc
    return lightgbm.Booster(model_str=estimator.booster_.model_to_string())


class UpliftModel:
    """Base of the uplift models: LightGBM boosters that predict
    ``P(y | x, t=1) - P(y | x, t=0)`` for binary ``y`` (or ``E[y | x, t=1] - E[y | x, t=0]``
    for amounts such as revenue, where the model supports them).

    The constructor only stores parameters. :meth:`fit` learns ``boosters_`` (name →
    ``lightgbm.Booster``), ``outcome_`` ("binary" or "continuous"), ``n_features_in_`` and
    ``treated_share_``. :meth:`to_state` returns numpy arrays only (each booster as its text in
    a 0-d unicode array), so a fitted model saves with ``np.savez`` and loads with
    ``np.load(allow_pickle=False)`` to identical predictions through :meth:`from_state`.

    Parameters
    ----------
    params : dict, optional
        LightGBM parameters over :data:`LGBM_DEFAULTS` (names of ``lightgbm.LGBMModel``).
    random_state : int, optional
        Seed for LightGBM's bagging and feature sampling.
    """

    #: Registry name, stored with the state.
    name: ClassVar[str] = ""
    #: Names of the boosters ``fit`` learns.
    booster_names: ClassVar[tuple[str, ...]] = ()
    #: Whether the model can learn from continuous outcomes.
    supports_continuous: ClassVar[bool] = True

    def __init__(
        self, *, params: Mapping[str, Any] | None = None, random_state: int | None = None
    ) -> None:
        self.params = params
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters."""
        return {"params": self.params, "random_state": self.random_state}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting and predicting --------------------------------------------------------------

    def fit(self, X: Any, treatment: Any, y: Any) -> Self:
        """Learn from a randomized campaign.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            Numeric features known before the campaign (NaN allowed: LightGBM routes missing
            values itself).
        treatment : array-like of shape (n,)
            1 for users sent the message, 0 for the control group.
        y : array-like of shape (n,)
            The outcome: 1/0 conversions, or an amount (continuous models only).

        Returns
        -------
        self
        """
        where = f"{self.name}.fit"
        X = _check_X(X, where)
        y = _check_y(y, where)
        if len(y) != len(X):
            raise InputError(
                f"{where}: `X` has {len(X)} rows but `y` has {len(y)}",
                hint="pass one row of features per outcome",
            )
        t = _check_treatment(treatment, where, len(y))
        outcome = "binary" if _is_binary(y) else "continuous"
        if outcome == "continuous" and not self.supports_continuous:
            raise InputError(
                f"{where}: `y` is not binary; {self.name} needs 1/0 conversions",
                hint="use t_learner or x_learner for amounts such as revenue",
            )
        for label, group in (("treated", t == 1), ("control", t == 0)):
            if np.ptp(y[group]) == 0:
                raise InputError(
                    f"{where}: `y` is constant ({y[group][0]:g}) in the {label} group",
                    hint="uplift needs outcomes that vary within each group",
                )
        params = lgbm_params(self.name, self.params)
        self.outcome_ = outcome
        self.n_features_in_ = X.shape[1]
        self.treated_share_ = float(t.mean())
        self.boosters_ = self._fit(X, t, y, params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted uplift for each row of ``X`` (float64)."""
        self._check_fitted()
        return self._predict(_check_X(X, f"{self.name}.predict", self.n_features_in_))

    def _fit(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, params: dict[str, Any]
    ) -> dict[str, lightgbm.Booster]:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _outcome_objective(self) -> str:
        return "binary" if self.outcome_ == "binary" else "regression"

    def _boost(
        self,
        X: np.ndarray,
        y: np.ndarray,
        objective: str,
        params: dict[str, Any],
        sample_weight: np.ndarray | None = None,
    ) -> lightgbm.Booster:
        return _train(X, y, objective, params, self.random_state, self.name, sample_weight)

    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise InputError(f"{self.name}: the model is not fitted", hint="call fit first")

    # -- state ---------------------------------------------------------------------------

    def _learned(self) -> dict[str, Any]:
        """Learned scalars beyond the boosters (JSON-able)."""
        return {
            "outcome": self.outcome_,
            "n_features_in": self.n_features_in_,
            "treated_share": self.treated_share_,
        }

    def _restore(self, learned: Mapping[str, Any]) -> None:
        self.outcome_ = learned["outcome"]
        self.n_features_in_ = int(learned["n_features_in"])
        self.treated_share_ = float(learned["treated_share"])

    def to_state(self) -> dict[str, np.ndarray]:
        """The fitted model as numpy arrays only: ``meta`` (JSON text: model name, parameters,
        learned scalars) and one ``booster.<name>`` per booster (its LightGBM text), each a 0-d
        unicode array. Save with ``np.savez(path, allow_pickle=False, **model.to_state())``."""
        self._check_fitted()
        try:
            meta = json.dumps(
                {
                    "format": 1,
                    "model": self.name,
                    "params": self.get_params(),
                    "learned": self._learned(),
                },
                default=_json_scalar,
            )
        except TypeError as exc:
            raise InputError(
                f"{self.name}: the model's parameters cannot be saved ({exc})",
                hint="use plain numbers, strings and booleans in params",
            ) from None
        state = {"meta": np.asarray(meta)}
        for key, booster in self.boosters_.items():
            state[f"booster.{key}"] = np.asarray(booster.model_to_string())
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> UpliftModel:
        """The model :meth:`to_state` described (``state`` may be an open ``np.load`` file).

        Called on :class:`UpliftModel`, the class is read from the state; called on a
        subclass, the state must be of that model.
        """
        try:
            meta = json.loads(str(state["meta"][()]))
            name = meta["model"]
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise InputError(
                f"not a saved uplift model ({exc!r})", hint="train the model again"
            ) from None
        klass = UPLIFT_MODELS.get(name)
        if klass is None or (cls is not UpliftModel and klass is not cls):
            raise InputError(
                f"saved uplift model is {name!r}, not {cls.name or 'a known model'!r}",
                hint=f"load it with {klass.__name__ if klass else 'a newer jingzhun'}",
            )
        model = klass(**meta["params"])
        model._restore(meta["learned"])
        keys = [k for k in state if str(k).startswith("booster.")]
        model.boosters_ = {
            k.removeprefix("booster."): lightgbm.Booster(model_str=str(state[k][()])) for k in keys
        }
        if set(model.boosters_) != set(klass.booster_names):
            raise InputError(
                f"saved {name} model has boosters {sorted(model.boosters_)}",
                hint=f"expected {sorted(klass.booster_names)}; train the model again",
            )
        return model


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class TLearner(UpliftModel):
    """Two-model uplift: one outcome model per group, uplift = ``mu_1(x) - mu_0(x)``.

    The simplest meta-learner. Each model only sees half of the data and the difference of two
    noisy predictions is noisier still, but with plenty of data per group it is hard to beat.
    Binary ``y`` uses LightGBM classifiers; amounts use regressors.

    Examples
    --------
    >>> model = TLearner(params={"n_estimators": 100}, random_state=0).fit(X, treatment, y)  # doctest: +SKIP
    >>> model.predict(X_new)                                                  # doctest: +SKIP
    """

    name = "t_learner"
    booster_names = ("treated", "control")

    def _fit(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, params: dict[str, Any]
    ) -> dict[str, lightgbm.Booster]:
        objective = self._outcome_objective()
        return {
            "treated": self._boost(X[t == 1], y[t == 1], objective, params),
            "control": self._boost(X[t == 0], y[t == 0], objective, params),
        }

    def _predict(self, X: np.ndarray) -> np.ndarray:
        b = self.boosters_
        return np.asarray(b["treated"].predict(X) - b["control"].predict(X), dtype=np.float64)


class XLearner(UpliftModel):
    """The X-learner of Künzel et al. (2019).

    1. Outcome models ``mu_1`` on the treated and ``mu_0`` on the control users (classifiers
       for binary ``y``, regressors for amounts).
    2. Imputed effects: ``D1 = y - mu_0(x)`` for the treated, ``D0 = mu_1(x) - y`` for the
       control users; LightGBM regressors ``tau_1`` on D1 and ``tau_0`` on D0.
    3. ``uplift(x) = g * tau_0(x) + (1 - g) * tau_1(x)``, with ``g`` the propensity: in a
       randomized campaign the treated share (learned as ``propensity_``). The effect model
       trained on the larger group's outcome model gets the larger weight.

    Parameters
    ----------
    params, random_state
        As in :class:`UpliftModel`.
    propensity : float, optional
        P(t=1) when the campaign's design is known; by default the treated share in ``fit``.

    Examples
    --------
    >>> XLearner(random_state=0).fit(X, treatment, y).predict(X_new)         # doctest: +SKIP
    """

    name = "x_learner"
    booster_names = ("mu_treated", "mu_control", "tau_treated", "tau_control")

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        random_state: int | None = None,
        propensity: float | None = None,
    ) -> None:
        super().__init__(params=params, random_state=random_state)
        self.propensity = propensity

    def get_params(self) -> dict[str, Any]:
        return super().get_params() | {"propensity": self.propensity}

    def _fit(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, params: dict[str, Any]
    ) -> dict[str, lightgbm.Booster]:
        g = self.propensity
        if g is not None and not (isinstance(g, int | float) and 0 < g < 1):
            raise InputError(
                f"x_learner: propensity={g!r} is not a probability in (0, 1)",
                hint="give the campaign's treated share, e.g. 0.5, or leave it unset",
            )
        self.propensity_ = float(g) if g is not None else self.treated_share_
        objective = self._outcome_objective()
        X1, y1, X0, y0 = X[t == 1], y[t == 1], X[t == 0], y[t == 0]
        mu1 = self._boost(X1, y1, objective, params)
        mu0 = self._boost(X0, y0, objective, params)
        d1 = y1 - mu0.predict(X1)
        d0 = mu1.predict(X0) - y0
        return {
            "mu_treated": mu1,
            "mu_control": mu0,
            "tau_treated": self._boost(X1, d1, "regression", params),
            "tau_control": self._boost(X0, d0, "regression", params),
        }

    def _predict(self, X: np.ndarray) -> np.ndarray:
        g = self.propensity_
        b = self.boosters_
        return np.asarray(
            g * b["tau_control"].predict(X) + (1 - g) * b["tau_treated"].predict(X),
            dtype=np.float64,
        )

    def _learned(self) -> dict[str, Any]:
        return super()._learned() | {"propensity": self.propensity_}

    def _restore(self, learned: Mapping[str, Any]) -> None:
        super()._restore(learned)
        self.propensity_ = float(learned["propensity"])


class ClassTransformation(UpliftModel):
    """Class-variable transformation (Jaskowski & Jaroszewicz 2012): one classifier.

    ``z = y*t + (1-y)*(1-t)`` is 1 for treated converters and control non-converters. When
    both groups are equally likely, ``P(z=1 | x) = (P(y=1 | x, t=1) + 1 - P(y=1 | x, t=0)) / 2``,
    so ``uplift = 2 * P(z=1 | x) - 1``.

    That identity needs a 50/50 split. For other treated shares ``p`` (say 70/30, common when
    holding out a small control group), the samples are re-weighted so that both groups weigh
    the same in training: treated rows by ``0.5 / p``, control rows by ``0.5 / (1 - p)``. Under
    these weights ``t`` is again a fair coin independent of ``x``, and the identity holds. (The
    alternative, Athey & Imbens' transformed outcome ``y * (t - p) / (p * (1 - p))`` regressed
    on x, has the same expectation but a much larger variance.) Binary ``y`` only.

    Without re-weighting, a 70/30 split gives ``2 P(z=1|x) - 1 = 1.4 p1 - 0.6 p0 - 0.4``: the
    ranking suffers little, but the level is far off (a mean predicted uplift of -0.19 for a
    true +0.006 in the tests' simulation), and the level is what :func:`targeting_policy`
    weighs against the message cost. With very unequal splits (90/10) the few, heavy control
    rows make the model noisy and its level drifts even with re-weighting (-0.07 there):
    prefer the X-learner for such campaigns.

    Parameters
    ----------
    params, random_state
        As in :class:`UpliftModel`.
    reweight : bool, default True
        Re-weight unequal groups as above; False reproduces the textbook method, biased when
        the split is not 50/50.

    Examples
    --------
    >>> ClassTransformation(random_state=0).fit(X, treatment, y).predict(X_new)  # doctest: +SKIP
    """

    name = "class_transformation"
    booster_names = ("z",)
    supports_continuous = False

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        random_state: int | None = None,
        reweight: bool = True,
    ) -> None:
        super().__init__(params=params, random_state=random_state)
        self.reweight = reweight

    def get_params(self) -> dict[str, Any]:
        return super().get_params() | {"reweight": self.reweight}

    def _fit(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, params: dict[str, Any]
    ) -> dict[str, lightgbm.Booster]:
        z = y * t + (1 - y) * (1 - t)
        weight = None
        if self.reweight:
            p = self.treated_share_
            weight = np.where(t == 1, 0.5 / p, 0.5 / (1 - p))
        return {"z": self._boost(X, z, "binary", params, sample_weight=weight)}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(2.0 * self.boosters_["z"].predict(X) - 1.0, dtype=np.float64)


#: Uplift models by name.
UPLIFT_MODELS: dict[str, type[UpliftModel]] = {
    "t_learner": TLearner,
    "x_learner": XLearner,
    "class_transformation": ClassTransformation,
}


def make_uplift_model(name: str, **kwargs: Any) -> UpliftModel:
    """An unfitted uplift model by registry name; its LightGBM ``params`` are checked now so
    that a typo fails before any data is read.

    Examples
    --------
    >>> make_uplift_model("x_learner", params={"n_estimators": 100}, random_state=7)
    XLearner(params={'n_estimators': 100}, random_state=7, propensity=None)
    """
    klass = UPLIFT_MODELS.get(name)
    if klass is None:
        raise InputError(
            f"unknown uplift model {name!r}", hint=f"use one of: {', '.join(UPLIFT_MODELS)}"
        )
    try:
        model = klass(**kwargs)
    except TypeError as exc:
        raise InputError(f"{name}: {exc}", hint="check the model's parameters") from None
    lgbm_params(name, model.params)
    return model


# -- targeting -------------------------------------------------------------------------------


def _money(value: Any, name: str, where: str, n: int) -> np.ndarray:
    arr = _numeric(np.asarray(value), name, where)
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
    u = _numeric(_vector(uplift, "uplift", where), "uplift", where)
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
        yy = _check_y(y, where)
        if len(yy) != n:
            raise InputError(
                f"{where}: `y` has {len(yy)} values but `uplift` has {n}",
                hint="pass one outcome per user, aligned with uplift",
            )
        t = _check_treatment(treatment, where, n)
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
        if _is_binary(yy)
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

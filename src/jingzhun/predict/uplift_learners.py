"""Uplift learners: who buys *because* of a message, learned from a randomized campaign.

A campaign that sends a message to a random share of its audience (the treated group) and
holds the rest back (the control group) measures, per user, the *uplift*
``P(y=1 | x, t=1) - P(y=1 | x, t=0)``: the change in the chance to convert that the message
causes. Ranking users by predicted uplift, rather than by propensity, finds the persuadable
users and leaves out the sure things (who buy anyway), the lost causes and the sleeping dogs
(whom the message puts off: negative uplift).

The learners — :class:`TLearner`, :class:`XLearner` and :class:`ClassTransformation`, on
LightGBM with the shared defaults of :mod:`jingzhun.predict.lgbm` — follow the estimator
contract (:mod:`jingzhun.contracts.estimator`) and save as NumPy arrays only, never pickled.
How well they rank is measured by :mod:`jingzhun.predict.uplift_metrics`; whom to target given
their predictions is :mod:`jingzhun.predict.policy`.

References
----------
Jaskowski & Jaroszewicz (2012), "Uplift modeling for clinical trial data", ICML workshop on
clinical data analysis. Athey & Imbens (2016), "Recursive partitioning for heterogeneous causal
effects", PNAS 113(27). Künzel, Sekhon, Bickel & Yu (2019), "Metalearners for estimating
heterogeneous treatment effects using machine learning", PNAS 116(10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import lightgbm
import numpy as np

from jingzhun.contracts.estimator import Estimator, Param, check_matrix
from jingzhun.errors import InputError
from jingzhun.predict import lgbm
from jingzhun.predict.uplift_metrics import check_treatment, check_y, is_binary

__all__ = [
    "RESERVED",
    "UPLIFT_MODELS",
    "ClassTransformation",
    "TLearner",
    "UpliftModel",
    "XLearner",
    "make_uplift_model",
]

#: LightGBM parameters the learners set themselves, never through ``params``, and why.
RESERVED = {
    "objective": "each uplift model chooses its own objectives",
    "class_weight": "class weights would distort the probabilities uplift is computed from",
    "random_state": "pass random_state= to the model itself",
}


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


class UpliftModel(Estimator):
    """Base of the uplift models: LightGBM boosters that predict
    ``P(y | x, t=1) - P(y | x, t=0)`` for binary ``y`` (or ``E[y | x, t=1] - E[y | x, t=0]``
    for amounts such as revenue, where the model supports them).

    The constructor only checks and stores parameters. :meth:`fit` learns ``boosters_``
    (name → ``lightgbm.Booster``), ``outcome_`` ("binary" or "continuous"),
    ``n_features_in_`` and ``treated_share_``. :meth:`to_state` returns NumPy arrays only
    (``meta`` and each booster as its text, 0-d unicode arrays), so a fitted model saves with
    ``np.savez`` and loads with ``np.load(allow_pickle=False)`` to identical predictions
    through :meth:`from_state`.

    Parameters
    ----------
    params : dict, optional
        LightGBM parameters over :data:`jingzhun.predict.lgbm.DEFAULTS` (names of
        ``lightgbm.LGBMModel``; an unknown or reserved name is an error).
    random_state : int, optional
        Seed for LightGBM's bagging and feature sampling.
    """

    family: ClassVar[str] = "uplift model"
    PARAMS: ClassVar[Mapping[str, Param]] = {
        "params": Param(None, dict, help="LightGBM parameters over the shared defaults"),
        "random_state": Param(None, int, 0, 2**32 - 1, help="LightGBM's seed"),
    }
    _fitted: ClassVar[str] = "boosters_"
    #: Names of the boosters ``fit`` learns.
    booster_names: ClassVar[tuple[str, ...]] = ()
    #: Whether the model can learn from continuous outcomes.
    supports_continuous: ClassVar[bool] = True

    params: dict[str, Any] | None
    random_state: int | None

    def _validate(self) -> None:
        lgbm.check_names(self.name, self.params, reserved=RESERVED)

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
        X = check_matrix(X, where, allow_nan=True)
        y = check_y(y, where)
        if len(y) != len(X):
            raise InputError(
                f"{where}: `X` has {len(X)} rows but `y` has {len(y)}",
                hint="pass one row of features per outcome",
            )
        t = check_treatment(treatment, where, len(y))
        outcome = "binary" if is_binary(y) else "continuous"
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
        params = lgbm.DEFAULTS | (self.params or {})
        self.outcome_ = outcome
        self.n_features_in_ = X.shape[1]
        self.treated_share_ = float(t.mean())
        self.boosters_ = self._fit(X, t, y, params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted uplift for each row of ``X`` (float64)."""
        self._check_fitted()
        where = f"{self.name}.predict"
        return self._predict(check_matrix(X, where, n_features=self.n_features_in_, allow_nan=True))

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

    # -- state ---------------------------------------------------------------------------

    def _learned(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome_,
            "n_features_in": self.n_features_in_,
            "treated_share": self.treated_share_,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            f"booster.{key}": np.asarray(booster.model_to_string())
            for key, booster in self.boosters_.items()
        }

    def _restore(self, learned: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        self.outcome_ = learned["outcome"]
        self.n_features_in_ = int(learned["n_features_in"])
        self.treated_share_ = float(learned["treated_share"])
        keys = [str(k) for k in state if str(k).startswith("booster.")]
        boosters = {
            k.removeprefix("booster."): lightgbm.Booster(model_str=str(np.asarray(state[k])[()]))
            for k in keys
        }
        if set(boosters) != set(self.booster_names):
            raise InputError(
                f"saved {self.name} model has boosters {sorted(boosters)}",
                hint=f"expected {sorted(self.booster_names)}; train the model again",
            )
        self.boosters_ = boosters

    @classmethod
    def _registry(cls) -> Mapping[str, type[Estimator]]:
        return UPLIFT_MODELS


class TLearner(UpliftModel):
    """Two-model uplift: one outcome model per group, uplift = ``mu_1(x) - mu_0(x)``.

    The simplest meta-learner. Each model only sees half of the data and the difference of two
    noisy predictions is noisier still, but with plenty of data per group it is hard to beat.
    Binary ``y`` uses LightGBM classifiers; amounts use regressors.

    Parameters
    ----------
    params, random_state
        As in :class:`UpliftModel`.

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
        P(t=1) when the campaign's design is known, in (0, 1); by default the treated share in
        ``fit``.

    Examples
    --------
    >>> XLearner(random_state=0).fit(X, treatment, y).predict(X_new)         # doctest: +SKIP
    """

    name = "x_learner"
    booster_names = ("mu_treated", "mu_control", "tau_treated", "tau_control")
    PARAMS: ClassVar[Mapping[str, Param]] = {
        **UpliftModel.PARAMS,
        "propensity": Param(None, float, help="P(t=1) by design; default: the treated share"),
    }

    propensity: float | None

    def _validate(self) -> None:
        super()._validate()
        g = self.propensity
        if g is not None and not 0 < g < 1:
            raise InputError(
                f"x_learner: propensity={g!r} is not a probability in (0, 1)",
                hint="give the campaign's treated share, e.g. 0.5, or leave it unset",
            )

    def _fit(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, params: dict[str, Any]
    ) -> dict[str, lightgbm.Booster]:
        g = self.propensity
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

    def _restore(self, learned: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        super()._restore(learned, state)
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
    true +0.006 in the tests' simulation), and the level is what
    :func:`jingzhun.predict.policy.targeting_policy` weighs against the message cost. With very
    unequal splits (90/10) the few, heavy control rows make the model noisy and its level
    drifts even with re-weighting (-0.07 there): prefer the X-learner for such campaigns.

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
    PARAMS: ClassVar[Mapping[str, Param]] = {
        **UpliftModel.PARAMS,
        "reweight": Param(True, bool, help="weigh both groups equally in training"),
    }

    reweight: bool

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
    m.name: m for m in (TLearner, XLearner, ClassTransformation)
}


def make_uplift_model(name: str, **params: Any) -> UpliftModel:
    """An unfitted uplift model by registry name; its parameters (LightGBM's names in
    ``params`` included) are checked now, so that a typo fails before any data is read.

    Examples
    --------
    >>> make_uplift_model("x_learner", params={"n_estimators": 100}, random_state=7)
    XLearner(params={'n_estimators': 100}, random_state=7, propensity=None)
    >>> make_uplift_model("t_learner", reweight=False)
    Traceback (most recent call last):
    ...
    jingzhun.errors.InputError: t_learner: unknown parameter 'reweight'; valid parameters: params, random_state
    """
    klass = UPLIFT_MODELS.get(name)
    if klass is None:
        raise InputError(
            f"unknown uplift model {name!r}", hint=f"use one of: {', '.join(UPLIFT_MODELS)}"
        )
    return klass(**params)

"""LightGBM settings the predict stage's models share: one definition of the defaults and of
which parameter names a user may set.

The uplift learners (:mod:`jingzhun.predict.uplift_learners`) train with :data:`DEFAULTS`; the
propensity and churn classifier (:mod:`jingzhun.predict.propensity`) with
:func:`classifier_defaults`, the same settings with more rounds, since it stops early on
validation. LightGBM itself is imported only when a name is checked: importing it takes about
a second, which commands that never train should not pay.

Examples
--------
>>> DEFAULTS["learning_rate"]
0.05
>>> check_names("t_learner", {"num_leaves": 15})
>>> check_names("t_learner", {"n_estimator": 10})
Traceback (most recent call last):
...
jingzhun.errors.InputError: t_learner: unknown parameter 'n_estimator'; valid parameters: ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jingzhun.contracts.estimator import unknown_parameters
from jingzhun.errors import InputError

__all__ = ["DEFAULTS", "check_names", "classifier_defaults"]

#: LightGBM defaults for campaign data: small uplift signals under much noise want many
#: shallow, well-populated leaves, bagging and a slow learning rate; deterministic, so a
#: refit on the same data gives the same model. Two OpenMP threads stall each other when
#: another process holds one of two cores (10x slower): pass ``{"n_jobs": 1}`` then.
DEFAULTS: dict[str, Any] = {
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

#: Rounds of the classifier, which stops early on validation.
CLASSIFIER_ROUNDS = 400


def classifier_defaults(random_state: int) -> dict[str, Any]:
    """The propensity and churn classifier's LightGBM settings: :data:`DEFAULTS` with
    :data:`CLASSIFIER_ROUNDS` rounds and the seed.

    Examples
    --------
    >>> classifier_defaults(7)["n_estimators"], classifier_defaults(7)["random_state"]
    (400, 7)
    """
    return {**DEFAULTS, "n_estimators": CLASSIFIER_ROUNDS, "random_state": random_state}


def check_names(
    model: str,
    params: Mapping[str, Any] | None,
    *,
    reserved: Mapping[str, str] | None = None,
    extra: Iterable[str] = (),
) -> None:
    """Refuse LightGBM parameter names that ``model`` cannot take.

    Parameters
    ----------
    model : str
        The model the message names.
    params : mapping, optional
        The names to check (their values LightGBM checks when it trains).
    reserved : mapping, optional
        Names the model sets itself, each with the reason a user may not.
    extra : iterable of str
        Names the model accepts beyond LightGBM's own (``early_stopping_rounds``).

    Raises
    ------
    InputError
        For a reserved name (with its reason), or a name that is neither a parameter of
        ``lightgbm.LGBMModel``, nor one of :data:`DEFAULTS`, nor in ``extra`` (listing the
        valid ones).
    """
    import lightgbm

    names = set(params or ())
    reserved = reserved or {}
    for name, why in reserved.items():
        if name in names:
            raise InputError(f"{model}: LightGBM parameter {name!r} cannot be set", hint=why)
    valid = (set(lightgbm.LGBMModel().get_params()) | set(DEFAULTS) | set(extra)) - set(reserved)
    unknown = names - valid
    if unknown:
        raise unknown_parameters(model, unknown, sorted(valid))

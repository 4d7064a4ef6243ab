"""``ws.predict``: the predict stage's facade — propensity and churn, CLV, uplift, scores.

Examples
--------
>>> ws.predict.train("propensity").test["roc_auc"]                   # doctest: +SKIP
>>> ws.predict.score("propensity").users                             # doctest: +SKIP
>>> ws.predict.clv().total_clv                                       # doctest: +SKIP
>>> ws.predict.of_user("u123")                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jingzhun.contracts.results import Result
from jingzhun.contracts.time import parse_as_of

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.config import Settings
    from jingzhun.predict.classify import Trained
    from jingzhun.predict.scores import Progress, Scored
    from jingzhun.store import Store

# Stage modules are imported when first used (scikit-learn and LightGBM take seconds).


@dataclass
class ClvResult(Result):
    """A fitted CLV model (purchase process and Gamma-Gamma) and the totals of its scores."""

    model_id: str
    model: str
    customers: int
    params: dict[str, Any]
    log_likelihood: float
    converged: bool
    total_clv: float
    mean_clv: float
    seconds: float


@dataclass
class UpliftResult(Result):
    """An uplift model chosen on a past randomized campaign, with its test-set evaluation."""

    model_id: str
    model: str
    rows: dict[str, int]
    treated_share: float
    unknown_users: int
    conversion: dict[str, float]
    comparison: dict[str, Any]
    best: str
    policy: dict[str, Any]
    window_days: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        return d | d.pop("extra")


@dataclass
class PredictReport(Result):
    """The active model of each target with its comparison, and each score's distribution."""

    models: dict[str, Any]
    scores: dict[str, Any]


def _as_of(value: datetime | str | None) -> datetime | None:
    return parse_as_of(value) if isinstance(value, str) else value


class Predict:
    """The predict stage on one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        ``[predict]`` (horizon, models, calibration, margin, costs) is used.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings

    def train(
        self,
        target: str = "propensity",
        *,
        horizon_days: float | None = None,
        as_of: datetime | str | None = None,
        models: Sequence[str] | None = None,
        train_windows: int | None = None,
        progress: Progress | None = None,
    ) -> Trained:
        """Compare the classifiers for ``target`` ("propensity" or "churn") on a time-based
        split of point-in-time profiles; the best on validation, calibrated, becomes active."""
        from jingzhun.predict.classify import train

        return train(
            self._store,
            self._settings,
            target,
            horizon_days=horizon_days,
            as_of=_as_of(as_of),
            models=list(models) if models else None,
            train_windows=train_windows,
            progress=progress,
        )

    def score(
        self,
        target: str = "propensity",
        *,
        model: str | None = None,
        as_of: datetime | str | None = None,
    ) -> Scored:
        """Score every user with the active (or named) model of ``target`` (propensity, churn
        or uplift): ``scores`` and the target's tag are replaced."""
        from jingzhun.predict.classify import score
        from jingzhun.predict.scores import find_model
        from jingzhun.predict.uplift_service import score as uplift_score

        at = _as_of(as_of)
        if find_model(self._store, target, model).kind == "uplift":
            return uplift_score(self._store, self._settings, model_id=model, as_of=at)
        return score(self._store, self._settings, target, model_id=model, as_of=at)

    def clv(
        self, *, model: str = "bgnbd", unit: str = "week", as_of: datetime | str | None = None
    ) -> ClvResult:
        """Fit BG/NBD (or Pareto/NBD) and Gamma-Gamma to the store's orders; the model and
        its ``clv``, ``expected_orders`` and ``p_alive`` scores are written together."""
        from jingzhun.predict.lifetime import clv_score

        return ClvResult(
            **clv_score(self._store, self._settings, as_of=_as_of(as_of), model=model, unit=unit)
        )

    def uplift(
        self,
        assignments: pd.DataFrame,
        *,
        campaign: str | None = None,
        window_days: float = 14.0,
        models: Sequence[str] | None = None,
        truth: pd.DataFrame | None = None,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> UpliftResult:
        """Fit the uplift learners on a past randomized campaign (user_id, group[, sent_at]),
        choose one on validation and report it on test; it becomes the active uplift model."""
        from jingzhun.predict.uplift_service import train

        result = train(
            self._store,
            self._settings,
            assignments,
            campaign=campaign,
            window_days=window_days,
            models=None if models is None else list(models),
            truth=truth,
            params=params,
            seed=seed,
            progress=progress,
        )
        names = {f for f in UpliftResult.__dataclass_fields__ if f != "extra"}
        return UpliftResult(
            **{k: v for k, v in result.items() if k in names},
            extra={k: v for k, v in result.items() if k not in names},
        )

    def models(self) -> pd.DataFrame:
        """Every trained predict model, newest first."""
        from jingzhun.predict.scores import list_models

        return list_models(self._store)

    def report(self) -> PredictReport:
        """The active models' comparisons and the score distributions."""
        from jingzhun.predict.scores import report

        return PredictReport(**report(self._store))

    def scores(self, kind: str | None = None) -> pd.DataFrame:
        """The latest scores (one kind, or all)."""
        from jingzhun.predict.read import scores

        return scores(self._store, kind)

    def of_user(self, user_id: str) -> pd.DataFrame:
        """One user's latest scores with their reasons."""
        from jingzhun.predict.read import user_scores
        from jingzhun.store.desensitize import user_key

        return user_scores(self._store, user_key(self._store, user_id))

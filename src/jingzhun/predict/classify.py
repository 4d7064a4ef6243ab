"""Propensity and churn on a store: point-in-time training sets, training, scoring.

``train`` builds point-in-time training sets (``labels``), compares the classifiers
(``propensity.compare``) and saves the chosen one with its calibrator and the comparison in the
store's model registry (kind ``propensity`` or ``churn``). ``score`` applies the active model
to every user as of now and writes ``scores`` (with the top reasons) and the
``likely_to_buy`` / ``churn_risk`` tags, each replaced in one transaction.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.predict import labels as lb
from jingzhun.predict.propensity import (
    Calibrator,
    Classifier,
    Split,
    check_classes,
    compare,
    from_arrays,
    to_arrays,
    top_reasons,
)
from jingzhun.predict.scores import TAGS, Progress, Scored, find_model, record, write_scores
from jingzhun.profile.build import default_as_of
from jingzhun.store import ModelRecord, Registry, Store
from jingzhun.store.registry import npz_bytes


@dataclass
class Trained:
    """What ``predict train`` did: the chosen model, the comparison and where it is saved."""

    model_id: str
    target: str
    model: str
    cutoffs: dict[str, Any]
    rows: dict[str, int]
    base_rates: dict[str, float]
    features: list[str]
    comparison: list[dict[str, Any]]
    test: dict[str, float]
    select: str
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["seconds"] = round(self.seconds, 3)
        return d


def training_sets(
    store: Store,
    settings: Settings,
    *,
    target: str,
    horizon_days: float,
    as_of: datetime | None = None,
    train_windows: int | None = None,
    progress: Progress | None = None,
) -> tuple[lb.Cutoffs, dict[str, pd.DataFrame]]:
    """The training (stacked cutoffs), validation and test frames of a time-based split."""
    cfg = settings.predict
    say = progress or (lambda _m: None)
    cut = lb.plan_cutoffs(
        store,
        horizon_days,
        as_of=as_of,
        train_windows=cfg.train_windows if train_windows is None else train_windows,
    )
    parts: dict[str, list[pd.DataFrame]] = {"train": [], "validation": [], "test": []}
    named = [("train", c) for c in cut.train] + [
        ("validation", cut.validation),
        ("test", cut.test),
    ]
    features: list[str] | None = None
    for part, cutoff in named:
        say(
            f"{part} set: profiles as of {cutoff:%Y-%m-%d}, labels to {cutoff + timedelta(days=horizon_days):%Y-%m-%d}"
        )
        frame = lb.label_frame(
            store,
            settings,
            cutoff,
            target=target,
            horizon_days=horizon_days,
            active_days=cfg.active_days,
            features=features,
        )
        features = features or [c for c in frame.columns if c not in ("user_id", "label", "cutoff")]
        parts[part].append(frame)
    out = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    for part, frame in out.items():
        check_classes(
            frame["label"],
            f"the {target} {part} set"
            + (f" (cutoff {frame['cutoff'].iloc[0]:%Y-%m-%d})" if len(frame) else ""),
            hint="choose another --horizon (or --as-of), or ingest more history",
            unit="users",
        )
    return cut, out


def _split(frame: pd.DataFrame, features: list[str]) -> Split:
    return Split(frame[features].to_numpy(np.float64), frame["label"].to_numpy(np.int8))


def train(
    store: Store,
    settings: Settings,
    target: str = "propensity",
    *,
    horizon_days: float | None = None,
    as_of: datetime | None = None,
    models: list[str] | None = None,
    train_windows: int | None = None,
    progress: Progress | None = None,
) -> Trained:
    """Compare the classifiers for ``target`` on a time-based split; save the best, active."""
    started = time.perf_counter()
    lb.check_target(target)
    cfg = settings.predict
    horizon = cfg.horizon_days if horizon_days is None else horizon_days
    cut, sets = training_sets(
        store,
        settings,
        target=target,
        horizon_days=horizon,
        as_of=as_of,
        train_windows=train_windows,
        progress=progress,
    )
    features = [c for c in sets["train"].columns if c not in ("user_id", "label", "cutoff")]
    result = compare(
        _split(sets["train"], features),
        _split(sets["validation"], features),
        _split(sets["test"], features),
        models=models or cfg.models,
        params={k: dict(v) for k, v in cfg.params.items()},
        select=cfg.select,
        calibration=cfg.calibration,
        compare_rows=cfg.compare_rows,
        progress=progress,
    )
    for note in result.warnings:
        warnings.warn(note, stacklevel=2)
    rows = {k: len(v) for k, v in sets.items()}
    base = {k: round(float(v["label"].mean()), 5) for k, v in sets.items()}
    metrics = {
        "comparison": result.metrics,
        "best": result.best,
        "select": result.select,
        "test_calibrated": result.test_calibrated,
        "calibration": result.calibrator.method,
        "explainer": result.explainer.name,
        "curves": result.curves,
        "rows": rows,
        "base_rates": base,
        "fit_seconds": result.seconds,
        "warnings": result.warnings,
    }
    with record(
        Registry(store),
        target=target,
        model=result.best,
        horizon_days=horizon,
        as_of=cut.score,
        cutoffs=cut.to_dict(),
        features=features,
        metrics=metrics,
        artefact=npz_bytes(to_arrays(result.model, result.calibrator, result.explainer)),
        seconds=float(sum(result.seconds.values())),
    ) as saved:
        model_id = saved.model_id
    return Trained(
        model_id,
        target,
        result.best,
        cut.to_dict(),
        rows,
        base,
        features,
        result.table(),
        result.test_calibrated,
        result.select,
        result.warnings,
        time.perf_counter() - started,
    )


#: How many reasons a scored user in the explained top share gets.
REASONS = 3


def feature_matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model's features of a feature frame (``select_sql``'s columns), as it reads them."""
    return frame[features].to_numpy(np.float64)


def probabilities(model: Classifier, calibrator: Calibrator, X: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the users whose features are ``X``: what ``scores`` holds
    (here, and in each Spark partition of :mod:`jingzhun.predict.on_lake`)."""
    return calibrator(model.predict_proba(X))


def explained_count(share: float, users: int) -> int:
    """How many of ``users`` scored users (the highest) are given reasons."""
    return max(1, int(np.ceil(share * users)))


def reasons_of(
    explainer: Classifier, X: np.ndarray, features: list[str], reasons: int
) -> list[list[dict[str, Any]]] | None:
    """Each user's top ``reasons`` (exact TreeSHAP: ~0.25 ms a row), or None for a model
    without contributions."""
    contrib = explainer.contributions(X)
    return None if contrib is None else top_reasons(contrib, X, features, reasons)


def score(
    store: Store,
    settings: Settings,
    target: str = "propensity",
    *,
    model_id: str | None = None,
    as_of: datetime | None = None,
    reasons: int = REASONS,
) -> Scored:
    """Score every user (churn: every active customer) as of ``as_of`` with the active model."""
    started = time.perf_counter()
    row = scoring_model(store, target, model_id)
    target = row.kind
    model, calibrator, explainer = from_arrays(Registry(store).arrays(row.model_id))
    at = as_of or default_as_of(store)
    frame = lb.features_at(store, settings, at, row.features)
    if target == "churn":
        active = lb.active_customers(store, at, settings.predict.active_days)
        frame = frame.loc[frame["user_id"].isin(active)].reset_index(drop=True)
    if frame.empty:
        raise NotFoundError(f"no users to score as of {at:%Y-%m-%d}", hint="ingest events first")
    X = feature_matrix(frame, row.features)
    p = probabilities(model, calibrator, X)
    out = pd.DataFrame({"user_id": frame["user_id"], "value": p})
    # Reasons for the top share the campaigns act on (ties in the order of the user ids).
    share = settings.predict.reasons_share
    if reasons > 0 and share > 0:
        top = np.argsort(-p, kind="stable")[: explained_count(share, len(p))]
        found = reasons_of(explainer, X[top], row.features, reasons)
        if found is not None:
            explained: list[Any] = [None] * len(p)
            for i, r in zip(top, found, strict=True):
                explained[i] = r
            out["reasons"] = explained
    tag = TAGS[target]
    n = write_scores(
        store,
        {target: out},
        model_id=row.model_id,
        as_of=at,
        tags={target: tag},
        settings=settings,
    )
    counts = dict(
        store.rows(
            "SELECT value, count(*) FROM tags WHERE tag = ? AND source = 'model' GROUP BY 1", [tag]
        )
    )
    return Scored(
        target, row.model_id, n, at, float(p.mean()), counts, time.perf_counter() - started
    )


def scoring_model(store: Store, target: str, model_id: str | None) -> ModelRecord:
    """The model :func:`score` applies: by id, or the active one of ``target``; refused when it
    is not a propensity or churn model (CLV and uplift are scored by their own commands)."""
    row = find_model(store, target, model_id)
    if row.kind not in TAGS:
        raise InputError(
            f"{row.model_id} is a {row.kind} model, fitted and scored by predict {row.kind}"
        )
    return row

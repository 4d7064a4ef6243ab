"""Training on the store: fit a recommender on its interactions and keep it in the registry.

A trained model is a row of the store's model registry (kind ``recommender``, the fitted model
as ``.npz`` bytes inside the store) and becomes the active one; offline evaluations of the
store's interactions are kept in ``recommend_evaluations``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jingzhun.errors import NotFoundError
from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.interactions import (
    catalog,
    default_as_of,
    interactions_frame,
    segment_labels,
)
from jingzhun.recommend.models import make, model_name
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.store import Registry, Store

if TYPE_CHECKING:
    from jingzhun.config import Settings


@dataclass
class Trained:
    model_id: str
    model: str
    params: dict[str, Any]
    users: int
    items: int
    interactions: int
    fit_seconds: float
    segment_run: str | None
    as_of: datetime
    validation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["as_of"] = self.as_of.isoformat(sep=" ")
        d["fit_seconds"] = round(self.fit_seconds, 3)
        return d


def train(
    store: Store,
    settings: Settings,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    as_of: datetime | None = None,
) -> Trained:
    """Fit a model on the store's interactions and make it the active one."""
    rs = settings.recommend
    name = model_name(model or rs.model)
    merged = dict(rs.params.get(name, {})) | dict(params or {})
    if name == "hybrid" and "component_params" not in merged:
        merged["component_params"] = {c: dict(v) for c, v in rs.params.items() if c != "hybrid"}
    at = as_of or default_as_of(store)
    frame = interactions_frame(store, settings, at)
    if frame.empty:
        raise NotFoundError(
            "no interactions to train on (no item events of known users)",
            hint="ingest events with item_id, then train",
        )
    items = catalog(store)
    data = Interactions.from_frame(
        frame, weight_col="weight", purchased_col="purchased", items=items["item_id"].tolist()
    )
    features = ItemFeatures.from_frame(items, data.items) if len(items) else None
    if name == "hybrid" and "components" not in merged:
        from jingzhun.recommend.evaluate import hybrid_components

        merged["components"] = ",".join(hybrid_components(data.n_items, features is not None))
    rec = make(name, **merged)
    groups, run_id = segment_labels(store, rs, data.users)
    t = time.perf_counter()
    validation = None
    if isinstance(rec, Hybrid) and "weights" not in merged:
        validation = tune_hybrid(rec, frame, items if features is not None else None)
    rec.fit(data, features=features, groups=groups)
    seconds = time.perf_counter() - t
    model_id = Registry(store).save(
        kind="recommender",
        name=name,
        method=name,
        params=rec.params,
        metrics={} if validation is None else {"validation": validation},
        info={
            "users": data.n_users,
            "items": data.n_items,
            "interactions": data.nnz,
            "segment_run": run_id,
        },
        as_of=at,
        fit_seconds=seconds,
        artefact=rec.to_bytes(),
    )
    return Trained(
        model_id,
        name,
        rec.params,
        data.n_users,
        data.n_items,
        data.nnz,
        seconds,
        run_id,
        at,
        validation,
    )


#: Cells (users x items) of the dense score blocks the hybrid's weight tuning holds per component.
TUNING_CELLS = 50_000_000


def tune_hybrid(
    model: Hybrid,
    frame: pd.DataFrame,
    catalog_frame: pd.DataFrame | None,
    k: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose the hybrid's blend weights on a validation split of the store's interactions:
    each sampled user's latest item is held out (leave-last-out), the components are fitted
    on the rest, and the weights that maximise nDCG@k on the held-out items win."""
    from jingzhun.recommend.evaluate import Fold, split, tune_weights

    log = frame.rename(columns={"user_id": "user", "item_id": "item", "last_seen": "time"})
    log = log.assign(relevant=True)
    train_part, held = split(log, "leave-last-out", None, seed)
    n_items = max(int(log["item"].nunique()), 1)
    users = pd.unique(held["user"])
    cap = max(100, min(5000, TUNING_CELLS // n_items))
    if len(users) > cap:
        users = np.random.default_rng(seed).choice(users, cap, replace=False)
        held = held[held["user"].isin(users)]
    fold = Fold.make(train_part, held, catalog_frame)
    if len(fold.users) == 0:
        return {"skipped": "no user with two or more items to hold out"}
    comps = {
        name: make(name, **c.params).fit(fold.train, features=fold.features)
        for name, c in model.components.items()
    }
    weights, best, tried = tune_weights(comps, fold, k)
    model.set_weights(weights)
    return {
        "weights": weights,
        f"ndcg@{k}": round(best, 6),
        "users": len(fold.users),
        "tried": tried,
    }


#: The columns ``recommend models`` lists, in order.
MODEL_COLUMNS = (
    "model_id",
    "model",
    "active",
    "users",
    "items",
    "interactions",
    "fit_seconds",
    "as_of",
    "segment_run",
    "created_at",
    "params",
    "metrics",
)


def list_models(store: Store) -> pd.DataFrame:
    """Every trained recommender, newest first (from the store's model registry)."""
    rows = [
        {
            "model_id": r.model_id,
            "model": r.method,
            "active": r.active,
            "users": r.info.get("users"),
            "items": r.info.get("items"),
            "interactions": r.info.get("interactions"),
            "fit_seconds": None if r.fit_seconds is None else round(r.fit_seconds, 3),
            "as_of": r.as_of,
            "segment_run": r.info.get("segment_run"),
            "created_at": r.created_at,
            "params": r.params,
            "metrics": r.metrics or None,
        }
        for r in Registry(store).list("recommender")
    ]
    return pd.DataFrame(rows, columns=list(MODEL_COLUMNS))


def save_evaluation(store: Store, source: str, result: dict[str, Any]) -> None:
    store.run(
        "INSERT INTO recommend_evaluations VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?)",
        [source, result["split"], result["k"], result.get("best"), json.dumps(result)],
    )


def latest_evaluation(store: Store) -> dict[str, Any] | None:
    rows = store.rows("SELECT result FROM recommend_evaluations ORDER BY evaluated_at DESC LIMIT 1")
    return json.loads(rows[0][0]) if rows else None

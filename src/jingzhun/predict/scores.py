"""The predict stage's shared ground on a store: its models in the registry, and scores.

Every predict model (propensity, churn, CLV, uplift) is a row of the store's model registry;
:func:`record` saves one (active) in a transaction the caller writes its outputs in.
:func:`insert_scores` replaces a kind of ``scores`` and its tag in one transaction; the read
functions (:func:`find_model`, :func:`resolve`, :func:`list_models`, :func:`report`) are what the
CLI, the report and the server call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from jingzhun.config import Settings
from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.predict import labels as lb
from jingzhun.store import ModelRecord, Registry, Store
from jingzhun.store.registry import Saving

if TYPE_CHECKING:
    import duckdb


#: The tag each target writes, for segments and campaign audiences.
TAGS: dict[str, str] = {"propensity": "likely_to_buy", "churn": "churn_risk"}

Progress = Callable[[str], None]


def record(
    registry: Registry,
    *,
    target: str,
    model: str,
    horizon_days: float,
    as_of: datetime,
    cutoffs: dict[str, Any],
    features: list[str],
    metrics: dict[str, Any],
    artefact: bytes | None,
    seconds: float,
    params: dict[str, Any] | None = None,
) -> AbstractContextManager[Saving]:
    """Record a predict model of ``target`` (active) in the registry; a ``with`` block whose
    transaction the caller writes the model's outputs in (see ``Registry.saving``)."""
    return registry.saving(
        kind=target,
        name=target,
        method=model,
        params=params,
        features=features,
        metrics=metrics,
        info={"horizon_days": horizon_days, "cutoffs": cutoffs},
        as_of=as_of,
        fit_seconds=seconds,
        artefact=artefact,
    )


#: The kinds of model the predict stage fits (the registry's kinds it owns).
PREDICT_KINDS = ("propensity", "churn", "clv", "uplift")


def list_models(store: Store) -> pd.DataFrame:
    """Every trained predict model, newest first."""
    registry = Registry(store)
    rows = [
        {
            "model_id": r.model_id,
            "target": r.kind,
            "model": r.method,
            "horizon_days": r.info.get("horizon_days"),
            "as_of": r.as_of,
            "fit_seconds": r.fit_seconds,
            "active": r.active,
            "created_at": r.created_at,
        }
        for r in registry.list()
        if r.kind in PREDICT_KINDS
    ]
    columns = ["model_id", "target", "model", "horizon_days", "as_of"]
    return pd.DataFrame(rows, columns=[*columns, "fit_seconds", "active", "created_at"])


def find_model(store: Store, target: str | None = None, model_id: str | None = None) -> ModelRecord:
    """A predict model's registry record by id, or the active model for ``target``."""
    registry = Registry(store)
    if model_id is not None:
        return registry.get(model_id, kind=PREDICT_KINDS, what="predict model")
    if target not in (*lb.TARGETS, "clv", "uplift"):
        lb.check_target(str(target))
    found = registry.active(str(target))
    if found is None:
        raise NotFoundError(
            f"no trained {target} model",
            hint=f"run jingzhun predict train --target {target}",
        )
    return found


def resolve(store: Store, target: str | None = None, model_id: str | None = None) -> dict[str, Any]:
    """A predict model by id, or the active model for ``target``, in the predict stage's
    words: model_id, target, model, horizon_days, as_of, cutoffs, features, metrics,
    fit_seconds, active, created_at."""
    r = find_model(store, target, model_id)
    return {
        "model_id": r.model_id,
        "target": r.kind,
        "model": r.method,
        "horizon_days": r.info.get("horizon_days"),
        "as_of": r.as_of,
        "cutoffs": r.info.get("cutoffs"),
        "features": r.features,
        "metrics": r.metrics,
        "fit_seconds": r.fit_seconds,
        "active": r.active,
        "created_at": r.created_at,
    }


def _percentile(values: np.ndarray) -> np.ndarray:
    """Rank among the scored users, 0-1, 1 = highest (ties share the higher rank)."""
    from scipy.stats import rankdata

    if len(values) <= 1:
        return np.ones(len(values))
    return (rankdata(values, method="max") - 1) / (len(values) - 1)


def nan_scores(kind: str) -> InputError:
    """The error of a model that produced NaN scores."""
    return InputError(f"{kind}: a model produced NaN scores", hint="check the features")


def reasons_json(reasons: Any) -> str | None:
    """A user's reasons as ``scores.reasons`` holds them (JSON text; None: not explained)."""
    return None if reasons is None else json.dumps(reasons)


def tag_cuts(settings: Settings) -> tuple[float, float]:
    """The percentiles from which a score's tag is 'high' and 'medium' (below them 'low'):
    the top ``tag_high`` share, then the next ``tag_medium``."""
    cfg = settings.predict
    return 1 - cfg.tag_high, 1 - cfg.tag_high - cfg.tag_medium


def write_scores(
    store: Store,
    frames: dict[str, pd.DataFrame],
    *,
    model_id: str,
    as_of: datetime,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> int:
    """Replace each kind's scores and tags (see :func:`insert_scores`) in one transaction."""
    with store.transaction() as con:
        return insert_scores(
            con, frames, model_id=model_id, as_of=as_of, tags=tags, settings=settings
        )


def insert_scores(
    con: duckdb.DuckDBPyConnection,
    frames: dict[str, pd.DataFrame],
    *,
    model_id: str,
    as_of: datetime,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> int:
    """Replace each kind's scores (frames of user_id, value[, reasons]) and its tag (kind ->
    tag name: top ``tag_high`` share 'high', next ``tag_medium`` 'medium', the rest 'low'),
    inside the caller's transaction on ``con``."""
    now = utcnow()
    tables = []
    for kind, frame in frames.items():
        values = frame["value"].to_numpy(np.float64)
        if np.isnan(values).any():
            raise nan_scores(kind)
        reasons = frame["reasons"] if "reasons" in frame else [None] * len(frame)
        tables.append(
            pa.table(
                {
                    "user_id": pa.array(frame["user_id"].astype(str).tolist(), pa.string()),
                    "score": pa.array([kind] * len(frame), pa.string()),
                    "value": pa.array(values),
                    "percentile": pa.array(_percentile(values)),
                    "model_id": pa.array([model_id] * len(frame), pa.string()),
                    "reasons": pa.array([reasons_json(r) for r in reasons], pa.string()),
                    "as_of": pa.array([as_of] * len(frame), pa.timestamp("us")),
                    "computed_at": pa.array([now] * len(frame), pa.timestamp("us")),
                }
            )
        )
    table = pa.concat_tables(tables)
    con.execute(f"DELETE FROM scores WHERE score IN ({', '.join('?' * len(frames))})", list(frames))
    con.register("_jz_scores", table)
    try:
        con.execute(
            "INSERT INTO scores SELECT user_id, score, value, percentile, model_id, "
            "CAST(reasons AS JSON), as_of, computed_at FROM _jz_scores"
        )
    finally:
        con.unregister("_jz_scores")
    high, medium = tag_cuts(settings or Settings())
    for kind, tag in (tags or {}).items():
        con.execute("DELETE FROM tags WHERE tag = ? AND source = 'model'", [tag])
        con.execute(
            """INSERT INTO tags
            SELECT user_id, ?, CASE WHEN percentile >= ? THEN 'high'
                                    WHEN percentile >= ? THEN 'medium'
                                    ELSE 'low' END, 'model', ?
            FROM scores WHERE score = ?""",
            [tag, high, medium, now, kind],
        )
    return len(table)


@dataclass
class Scored:
    target: str
    model_id: str
    users: int
    as_of: datetime
    mean: float
    tags: dict[str, int]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d.update(d.pop("extra"))
        d["as_of"] = self.as_of.isoformat(sep=" ")
        d["seconds"] = round(self.seconds, 3)
        return d


def report(store: Store) -> dict[str, Any]:
    """The active model of each target with its comparison, and a summary of each score."""
    models: dict[str, Any] = {}
    registry = Registry(store)
    for target in sorted(PREDICT_KINDS):
        row = registry.active(target)
        if row is None:
            continue
        models[target] = {
            "model_id": row.model_id,
            "model": row.method,
            "horizon_days": row.info.get("horizon_days"),
            "as_of": None if row.as_of is None else row.as_of.isoformat(sep=" "),
            "cutoffs": row.info.get("cutoffs"),
            "metrics": row.metrics,
        }
    scores = {
        kind: {
            "users": int(n),
            "mean": float(mean),
            "p10": float(p10),
            "p50": float(p50),
            "p90": float(p90),
            "model_id": model_id,
            "as_of": as_of.isoformat(sep=" "),
        }
        for kind, n, mean, p10, p50, p90, model_id, as_of in store.rows(
            "SELECT score, count(*), avg(value), quantile_cont(value, 0.1), "
            "quantile_cont(value, 0.5), quantile_cont(value, 0.9), any_value(model_id), "
            "max(as_of) FROM scores GROUP BY score ORDER BY score"
        )
    }
    return {"models": models, "scores": scores}

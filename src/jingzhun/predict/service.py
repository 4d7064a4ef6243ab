"""The predict stage on a store: train, score, CLV, report.

``train`` builds point-in-time training sets (``labels``), compares the classifiers
(``propensity.compare``), saves the chosen one with its calibrator in
``<store>.models/predict/<model_id>.npz`` and records the comparison in ``predict_models``.
``score`` applies the active model to every user as of now and writes ``scores`` (with the top
reasons) and the ``likely_to_buy`` / ``churn_risk`` tags, each replaced in one transaction.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.ingest.pipeline import utcnow
from jingzhun.predict import labels as lb
from jingzhun.predict.propensity import (
    Split,
    check_classes,
    compare,
    load_npz,
    save_npz,
    top_reasons,
)
from jingzhun.profile.build import default_as_of
from jingzhun.store import Store

#: The tag each target writes, for segments and campaign audiences.
TAGS: dict[str, str] = {"propensity": "likely_to_buy", "churn": "churn_risk"}

Progress = Callable[[str], None]


def models_dir(store: Store) -> Path:
    return store.path.with_name(store.path.name + ".models") / "predict"


def _new_id(store: Store, target: str) -> str:
    n = int(store.scalar("SELECT count(*) FROM predict_models WHERE target = ?", [target])) + 1
    while store.scalar("SELECT count(*) FROM predict_models WHERE model_id = ?", [f"{target}-{n}"]):
        n += 1
    return f"{target}-{n}"


def record(
    store: Store,
    *,
    model_id: str,
    target: str,
    model: str,
    horizon_days: float,
    as_of: datetime,
    cutoffs: dict[str, Any],
    features: list[str],
    metrics: dict[str, Any],
    path: Path | None,
    seconds: float,
) -> None:
    """Make ``model_id`` the active model of ``target`` in ``predict_models``; on failure the
    model file already written at ``path`` is removed, so nothing half-made is left."""
    rel = "" if path is None else str(path.relative_to(store.path.parent))
    try:
        with store.transaction() as con:
            con.execute(
                "UPDATE predict_models SET active = false WHERE active AND target = ?", [target]
            )
            con.execute(
                "INSERT INTO predict_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true, now()::TIMESTAMP)",
                [
                    model_id,
                    target,
                    model,
                    horizon_days,
                    as_of,
                    json.dumps(cutoffs),
                    json.dumps(features),
                    json.dumps(metrics),
                    rel,
                    seconds,
                ],
            )
    except Exception:
        if path is not None:
            path.unlink(missing_ok=True)
        raise


@dataclass
class Trained:
    """What ``predict train`` did: the chosen model, the comparison and where it is saved."""

    model_id: str
    target: str
    model: str
    path: Path
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
        d["path"] = str(self.path)
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
    model_id = _new_id(store, target)
    path = models_dir(store) / f"{model_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, result.model, result.calibrator, result.explainer)
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
    record(
        store,
        model_id=model_id,
        target=target,
        model=result.best,
        horizon_days=horizon,
        as_of=cut.score,
        cutoffs=cut.to_dict(),
        features=features,
        metrics=metrics,
        path=path,
        seconds=float(sum(result.seconds.values())),
    )
    return Trained(
        model_id,
        target,
        result.best,
        path,
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


def list_models(store: Store) -> pd.DataFrame:
    """Every trained predict model, newest first."""
    return store.sql(
        "SELECT model_id, target, model, horizon_days, as_of, fit_seconds, active, created_at "
        "FROM predict_models ORDER BY created_at DESC, model_id DESC"
    ).df()


def resolve(store: Store, target: str | None = None, model_id: str | None = None) -> dict[str, Any]:
    """A model row by id, or the active model for ``target``."""
    if model_id is not None:
        rows = store.rows("SELECT * FROM predict_models WHERE model_id = ?", [model_id])
        if not rows:
            known = [r[0] for r in store.rows("SELECT model_id FROM predict_models")]
            raise NotFoundError(
                f"no predict model {model_id!r}",
                hint=f"known: {', '.join(known)}" if known else "run jingzhun predict train",
            )
    else:
        if target not in (*lb.TARGETS, "clv", "uplift"):
            lb.check_target(str(target))
        rows = store.rows(
            "SELECT * FROM predict_models WHERE active AND target = ? ORDER BY created_at DESC LIMIT 1",
            [target],
        )
        if not rows:
            raise NotFoundError(
                f"no trained {target} model",
                hint=f"run jingzhun predict train --target {target}",
            )
    names = [d[0] for d in store.con.execute("SELECT * FROM predict_models LIMIT 0").description]
    row = dict(zip(names, rows[0], strict=True))
    for key in ("cutoffs", "features", "metrics"):
        row[key] = json.loads(row[key])
    return row


def _percentile(values: np.ndarray) -> np.ndarray:
    """Rank among the scored users, 0-1, 1 = highest (ties share the higher rank)."""
    from scipy.stats import rankdata

    if len(values) <= 1:
        return np.ones(len(values))
    return (rankdata(values, method="max") - 1) / (len(values) - 1)


def write_scores(
    store: Store,
    frames: dict[str, pd.DataFrame],
    *,
    model_id: str,
    as_of: datetime,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> int:
    """Replace each kind's scores (frames of user_id, value[, reasons]) and its tag (kind ->
    tag name: top ``tag_high`` share 'high', next ``tag_medium`` 'medium', the rest 'low'),
    all in one transaction."""
    now = utcnow()
    tables = []
    for kind, frame in frames.items():
        values = frame["value"].to_numpy(np.float64)
        if np.isnan(values).any():
            raise InputError(f"{kind}: a model produced NaN scores", hint="check the features")
        reasons = frame["reasons"] if "reasons" in frame else [None] * len(frame)
        tables.append(
            pa.table(
                {
                    "user_id": pa.array(frame["user_id"].astype(str).tolist(), pa.string()),
                    "score": pa.array([kind] * len(frame), pa.string()),
                    "value": pa.array(values),
                    "percentile": pa.array(_percentile(values)),
                    "model_id": pa.array([model_id] * len(frame), pa.string()),
                    "reasons": pa.array(
                        [None if r is None else json.dumps(r) for r in reasons], pa.string()
                    ),
                    "as_of": pa.array([as_of] * len(frame), pa.timestamp("us")),
                    "computed_at": pa.array([now] * len(frame), pa.timestamp("us")),
                }
            )
        )
    table = pa.concat_tables(tables)
    with store.transaction() as con:
        con.execute(
            f"DELETE FROM scores WHERE score IN ({', '.join('?' * len(frames))})", list(frames)
        )
        con.register("_jz_scores", table)
        con.execute(
            "INSERT INTO scores SELECT user_id, score, value, percentile, model_id, "
            "CAST(reasons AS JSON), as_of, computed_at FROM _jz_scores"
        )
        con.unregister("_jz_scores")
        cfg = (settings or Settings()).predict
        for kind, tag in (tags or {}).items():
            con.execute("DELETE FROM tags WHERE tag = ? AND source = 'model'", [tag])
            con.execute(
                """INSERT INTO tags
                SELECT user_id, ?, CASE WHEN percentile >= ? THEN 'high'
                                        WHEN percentile >= ? THEN 'medium'
                                        ELSE 'low' END, 'model', ?
                FROM scores WHERE score = ?""",
                [tag, 1 - cfg.tag_high, 1 - cfg.tag_high - cfg.tag_medium, now, kind],
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


def score(
    store: Store,
    settings: Settings,
    target: str = "propensity",
    *,
    model_id: str | None = None,
    as_of: datetime | None = None,
    reasons: int = 3,
) -> Scored:
    """Score every user (churn: every active customer) as of ``as_of`` with the active model."""
    started = time.perf_counter()
    row = resolve(store, target, model_id)
    target = row["target"]
    if target == "uplift":
        from jingzhun.predict.uplift_service import score as uplift_score

        return uplift_score(store, settings, model_id=row["model_id"], as_of=as_of)
    if target not in TAGS:
        raise InputError(
            f"{row['model_id']} is a {target} model, fitted and scored by predict {target}"
        )
    model, calibrator, explainer = load_npz(store.path.parent / row["path"])
    at = as_of or default_as_of(store)
    frame = lb.features_at(store, settings, at, row["features"])
    if target == "churn":
        active = lb.active_customers(store, at, settings.predict.active_days)
        frame = frame.loc[frame["user_id"].isin(active)].reset_index(drop=True)
    if frame.empty:
        raise NotFoundError(f"no users to score as of {at:%Y-%m-%d}", hint="ingest events first")
    X = frame[row["features"]].to_numpy(np.float64)
    p = calibrator(model.predict_proba(X))
    out = pd.DataFrame({"user_id": frame["user_id"], "value": p})
    # Reasons (exact TreeSHAP: ~0.25 ms a row) for the top share the campaigns act on.
    share = settings.predict.reasons_share
    if reasons > 0 and share > 0:
        top = np.argsort(-p, kind="stable")[: max(1, int(np.ceil(share * len(p))))]
        contrib = explainer.contributions(X[top])
        if contrib is not None:
            explained: list[Any] = [None] * len(p)
            for i, r in zip(
                top, top_reasons(contrib, X[top], row["features"], reasons), strict=True
            ):
                explained[i] = r
            out["reasons"] = explained
    tag = TAGS[target]
    n = write_scores(
        store,
        {target: out},
        model_id=row["model_id"],
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
        target, row["model_id"], n, at, float(p.mean()), counts, time.perf_counter() - started
    )


# -- customer lifetime value on the store ---------------------------------------------------------


def orders_frame(store: Store, as_of: datetime) -> pd.DataFrame:
    """customer, date, amount: the stitched order lines of known users before ``as_of``."""
    import ibis

    from jingzhun.profile import traits as tr

    e = tr.stitched(store.ibis(), ibis.literal(as_of, type="timestamp"))
    e = e.filter((e.event == "order_completed") & e.user_id.notnull())
    return (
        e.select(customer=e.user_id, date=e.ts, amount=e.revenue.fill_null(0.0))
        .to_pyarrow()
        .to_pandas()
    )


def clv_score(
    store: Store,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    model: str = "bgnbd",
    unit: str = "week",
) -> dict[str, Any]:
    """Fit the purchase model and Gamma-Gamma on every customer's orders before ``as_of``;
    write ``clv`` (discounted margin over ``[predict] clv_months``), ``expected_orders`` (over
    ``[predict] horizon_days``) and, for BG/NBD, ``p_alive`` scores."""
    from jingzhun.predict import clv as cl

    started = time.perf_counter()
    cfg = settings.predict
    at = as_of or default_as_of(store)
    orders = orders_frame(store, at)
    if orders.empty:
        raise NotFoundError("no orders to fit a CLV model to", hint="ingest order_completed events")
    summary = cl.summarise(orders, calibration_end=at, unit=unit, to_end=True)
    fit, expected, (x, t_x, T) = cl.fit_purchases(summary, model)
    m = summary["m"].to_numpy(np.float64)
    repeaters = np.isfinite(m) & (x > 0)
    if repeaters.sum() < 10:
        raise InputError(
            f"only {int(repeaters.sum())} customers bought more than once: too few for Gamma-Gamma",
            hint="CLV needs repeat customers; ingest more history",
        )
    gg = cl.fit_gamma_gamma(x[repeaters], m[repeaters])
    spend = cl.gamma_gamma_expected_spend(gg.params, np.where(repeaters, x, 0), np.nan_to_num(m))
    unit_days = cl.UNITS[unit]
    horizon = cfg.horizon_days / unit_days
    frames = {
        "expected_orders": expected(fit.params, horizon, x, t_x, T),
        "clv": cl.expected_clv(
            expected,
            fit.params,
            x,
            t_x,
            T,
            spend,
            months=cfg.clv_months,
            unit_days=unit_days,
            margin=cfg.margin,
            annual_discount=cfg.discount_rate,
        ),
    }
    if model == "bgnbd":
        frames["p_alive"] = cl.bgnbd_p_alive(fit.params, x, t_x, T)
    ids = summary.index.to_numpy(dtype=object)
    model_id = _new_id(store, "clv")
    params = {"purchase": {model: fit.params}, "gamma_gamma": gg.params}
    metrics = {
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "customers": len(summary),
        "repeat_customers": int(repeaters.sum()),
        "unit": unit,
        "params": params,
        "total_clv": float(frames["clv"].sum()),
    }
    record(
        store,
        model_id=model_id,
        target="clv",
        model=model,
        horizon_days=cfg.horizon_days,
        as_of=at,
        cutoffs={"calibration_end": at.isoformat(sep=" ")},
        features=[],
        metrics=metrics,
        path=None,
        seconds=time.perf_counter() - started,
    )
    write_scores(
        store,
        {k: pd.DataFrame({"user_id": ids, "value": v}) for k, v in frames.items()},
        model_id=model_id,
        as_of=at,
    )
    return {
        "model_id": model_id,
        "model": model,
        "customers": len(summary),
        "params": params,
        "log_likelihood": round(fit.log_likelihood, 4),
        "converged": fit.converged,
        "total_clv": round(float(frames["clv"].sum()), 2),
        "mean_clv": round(float(frames["clv"].mean()), 2),
        "seconds": round(time.perf_counter() - started, 3),
    }


def report(store: Store) -> dict[str, Any]:
    """The active model of each target with its comparison, and a summary of each score."""
    models: dict[str, Any] = {}
    for (target,) in store.rows(
        "SELECT DISTINCT target FROM predict_models WHERE active ORDER BY target"
    ):
        row = resolve(store, target)
        models[target] = {
            "model_id": row["model_id"],
            "model": row["model"],
            "horizon_days": row["horizon_days"],
            "as_of": row["as_of"].isoformat(sep=" "),
            "cutoffs": row["cutoffs"],
            "metrics": row["metrics"],
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

"""``predict score`` on Spark (issue 19): a propensity or churn model trained on one machine,
applied to every user of a lake where the users are.

The model comes from a store's registry (:func:`prepare`), as a recommender does for
``recommend batch`` (:mod:`jingzhun.recommend.on_lake`): its ``.npz`` bytes (no pickle) are
broadcast, and each partition applies it with ``mapInPandas`` by the functions
:func:`~jingzhun.predict.classify.score` runs on one machine (:func:`~jingzhun.predict.
classify.probabilities`, :func:`~jingzhun.predict.classify.reasons_of`).

The users and their features are the lake's ``profiles`` (written by ``profile build`` on
Spark) through the selection the single machine applies to its point-in-time profile
(:func:`~jingzhun.predict.labels.feature_rows`); churn keeps the active customers
(:func:`~jingzhun.predict.labels.buyers_expr`). What needs every score at once is done
without gathering them on one machine: each user's percentile and the top share given
reasons come from one distributed ranking (:func:`~jingzhun.store.lake_frames.numbered`),
ties in the order of the user ids as on one machine. ``scores`` (this target's rows) and
``tags`` (this target's model tag) are replaced in the lake, the other rows kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.predict import labels as lb
from jingzhun.predict.classify import (
    REASONS,
    explained_count,
    feature_matrix,
    probabilities,
    reasons_of,
    scoring_model,
)
from jingzhun.predict.propensity import from_arrays
from jingzhun.predict.scores import (
    TAGS,
    Scored,
    find_model,
    nan_scores,
    reasons_json,
    tag_cuts,
)
from jingzhun.store import lake_frames as lf
from jingzhun.store.registry import Registry, npz_arrays

if TYPE_CHECKING:
    from pyspark.sql import Column

    from jingzhun.config import Settings
    from jingzhun.store.lake import Lake
    from jingzhun.store.registry import ModelRecord


@dataclass(frozen=True)
class Prepared:
    """A propensity or churn model read from a store's registry, for scoring elsewhere."""

    record: ModelRecord
    artefact: bytes  # the registry's .npz bytes


def prepare(
    store_path: str | Path, settings: Settings, target: str, model_id: str | None = None
) -> Prepared:
    """The model ``model_id`` (default: the active one of ``target``) of the store at
    ``store_path``, opened read-only and closed again; refused, naming it, when there is none,
    it is not a propensity or churn model, or its bytes do not load."""
    with lf.model_store(store_path, settings) as store:
        if find_model(store, target, model_id).kind == "uplift":
            raise InputError(
                "uplift scoring does not run on --engine spark yet",
                hint="score it on the DuckDB store: jingzhun --db STORE predict score "
                "--target uplift",
            )
        record = scoring_model(store, target, model_id)
        blob = Registry(store).artefact(record.model_id)
    from_arrays(npz_arrays(blob, where=f"model {record.model_id}"))  # loads, or refused here
    return Prepared(record, blob)


def score_on_lake(
    lake: Lake, settings: Settings, source: Prepared, as_of: datetime | None = None
) -> Scored:
    """Score every user of the lake's ``profiles`` (churn: every active customer) with
    ``source``'s model, as :func:`~jingzhun.predict.classify.score` scores a store's: the
    lake's ``scores`` of the target and its model tag in ``tags`` are replaced.

    The scores are as of the profiles' ``as_of``. ``as_of`` must be that time when given;
    without it, the profiles must be as of the lake's latest event (what the single machine
    scores as of by default): stale profiles are refused rather than scored.
    """
    from pyspark.sql import functions as F

    started = time.perf_counter()
    record = source.record
    target = record.kind
    lf.require(
        lake, "profiles", hint="build them first: jingzhun --engine spark --db LAKE profile build"
    )
    at = _profiles_as_of(lake, as_of)
    features = list(record.features)
    try:
        expr = lb.feature_rows(lake.table("profiles"), features)
    except InputError as exc:  # worded for segment's --features
        raise InputError(
            f"the lake's profiles lack a feature of {record.model_id} "
            f"({exc.message.removeprefix('--features: ')})",
            hint="build them with the [profile] settings the model was trained with",
        ) from None
    if target == "churn":
        active = lb.buyers_expr(lake.ibis(), *lb.active_window(at, settings.predict.active_days))
        expr = expr.semi_join(active, "user_id")
    lf.driver_python(lake.session)
    rows = lf.frame(lake, expr)
    shipped = lf.broadcast(lake.session, source.artefact)

    def values(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model, calibrator, _ = from_arrays(npz_arrays(shipped.value))
        for batch in batches:
            p = probabilities(model, calibrator, feature_matrix(batch, features))
            yield pd.DataFrame({"user_id": batch["user_id"], "value": p})

    scored = rows.mapInPandas(values, "user_id string, value double")
    # Highest first, ties by user id: np.argsort(-p, kind="stable") over rows in id order.
    ranked, users = lf.numbered(scored, [F.col("value").desc(), F.col("user_id").asc()])
    if users == 0:
        raise NotFoundError(f"no users to score as of {at:%Y-%m-%d}", hint="ingest events first")
    if ranked.filter(F.isnan("value")).limit(1).count():
        raise nan_scores(target)
    # The percentile of scores.py's _percentile: rank among the scored users with ties at
    # their highest rank, from the first position of each value (n - first) / (n - 1).
    first = ranked.groupBy("value").agg(F.min("_row").alias("_first"))
    percentile = F.lit(1.0) if users == 1 else (F.lit(users) - F.col("_first")) / F.lit(users - 1)
    out = ranked.join(first, "value").withColumn("percentile", percentile.cast("double"))
    share = settings.predict.reasons_share
    if REASONS > 0 and share > 0:
        top = ranked.filter(F.col("_row") <= explained_count(share, users)).select("user_id")

        def explain(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            _, _, explainer = from_arrays(npz_arrays(shipped.value))
            for batch in batches:
                found = reasons_of(explainer, feature_matrix(batch, features), features, REASONS)
                text = [None] * len(batch) if found is None else [reasons_json(r) for r in found]
                yield pd.DataFrame({"user_id": batch["user_id"], "reasons": text})

        reasons = rows.join(top, "user_id", "left_semi").mapInPandas(
            explain, "user_id string, reasons string"
        )
        out = out.join(reasons, "user_id", "left")
    else:
        out = out.withColumn("reasons", F.lit(None).cast("string"))
    now = utcnow()
    out = out.select(
        "user_id",
        F.lit(target).alias("score"),
        "value",
        "percentile",
        F.lit(record.model_id).alias("model_id"),
        "reasons",
        _instant(at).alias("as_of"),
        _instant(now).alias("computed_at"),
    )
    lf.replace_rows(lake, "scores", out, keep=F.col("score") != target)
    written = lake.session.read.parquet(str(lake.path / "scores")).filter(F.col("score") == target)
    tag = TAGS[target]
    high, medium = tag_cuts(settings)
    level = (
        F.when(F.col("percentile") >= high, "high")
        .when(F.col("percentile") >= medium, "medium")
        .otherwise("low")
    )
    tags = written.select(
        "user_id",
        F.lit(tag).alias("tag"),
        level.alias("value"),
        F.lit("model").alias("source"),
        _instant(now).alias("computed_at"),
    )
    lf.replace_rows(
        lake, "tags", tags, keep=~((F.col("tag") == tag) & (F.col("source") == "model"))
    )
    counted = written.select("value", level.alias("level")).agg(
        F.count("*").alias("n"),
        F.avg("value").alias("mean"),
        *(F.count_if(F.col("level") == v).alias(v) for v in ("high", "medium", "low")),
    )
    [summary] = counted.collect()
    counts = {v: int(summary[v]) for v in ("high", "medium", "low") if summary[v]}
    n, mean = int(summary["n"]), float(summary["mean"])
    return Scored(target, record.model_id, n, at, mean, counts, time.perf_counter() - started)


def _profiles_as_of(lake: Lake, as_of: datetime | None) -> datetime:
    """The time the lake's profiles describe, checked against ``as_of`` (or, without it,
    against the lake's latest event)."""
    t = lake.table("profiles")
    low, high = t.aggregate(low=t.as_of.min(), high=t.as_of.max()).execute().iloc[0]
    if low is None or low != low:
        raise NotFoundError(
            f"the lake at {lake.path} has no profiles",
            hint="build them first: jingzhun --engine spark --db LAKE profile build",
        )
    at, last = _naive(low), _naive(high)
    if at != last:  # pragma: no cover - a build writes one as_of
        raise InputError(f"the lake's profiles mix times ({at} to {last})", hint="build them again")
    if as_of is not None:
        if as_of != at:
            raise InputError(
                f"as_of {as_of.isoformat(sep=' ')}: the lake's profiles are as of "
                f"{at.isoformat(sep=' ')}",
                hint="build them as of that time first (profile build --as-of), or score as "
                "of theirs",
                param="as_of",
            )
        return at
    latest = lf.latest_as_of(lake)
    if at != latest:
        raise InputError(
            f"the lake's profiles are as of {at.isoformat(sep=' ')}, but its events run to "
            f"{(latest - timedelta(microseconds=1)).isoformat(sep=' ')}",
            hint="build them again (profile build), or score as of them: --as-of "
            f"'{at.isoformat(sep=' ')}'",
        )
    return at


def _instant(when: datetime) -> Column:
    """A naive UTC time as a Spark timestamp. PySpark reads a naive ``datetime`` literal in
    the machine's time zone, not the session's: given as UTC, it is the same instant on a
    laptop in Shanghai."""
    from pyspark.sql import functions as F

    return F.lit(when.replace(tzinfo=UTC)).cast("timestamp")


def _naive(value: object) -> datetime:
    when = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    assert isinstance(when, datetime)
    return when.replace(tzinfo=None)


__all__ = ["Prepared", "prepare", "score_on_lake"]

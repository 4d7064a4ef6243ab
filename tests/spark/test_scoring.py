"""Distributed batch scoring (issue 19, item 3), against real Spark in local[2]: models trained
on the DuckDB store, applied on the lake with ``mapInPandas``, write the rows the single
machine writes — ids exactly, floats to 1e-9 relative — and bad input is one line, exit 2.

The lake's ``profiles`` here are the store's, written as Parquet: that Spark builds the same
table is test_lake.py's proof, and a Spark build would cost this file most of its minute.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jingzhun.config import Settings
from jingzhun.errors import InputError, NotFoundError
from jingzhun.predict import on_lake as predict_on_lake
from jingzhun.recommend import on_lake as recommend_on_lake
from jingzhun.recommend import serving
from jingzhun.store import Registry
from jingzhun.workspace import Workspace
from tests.cli.subprocess_cli import error_line, run
from tests.spark.conftest import copy_lake

#: Floats from sums in another order on each engine: equal to this.
REL = 1e-9
#: Users per block in both batches: the test shop's 3,000 users make six blocks, so the
#: Spark batch ranks blocks in more than one partition.
BLOCK = 512


@dataclass
class Scored:
    db: Path  # the store: models trained, the single machine's rows written
    lake: Path  # a copy of the shop's lake with the store's profiles, Spark's rows written
    recs_model: str
    propensity_model: str
    seconds: dict[str, float]


def _frame(db: Path, query: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(query).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def scored(shop_pair, open_lake_module, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """The test shop's store copied, an RFM segment run, a recommender (the default hybrid,
    its popularity by segment) and a propensity model trained on it and a churn model registered (the propensity model's classifier as
    kind churn: scoring reads only its features and artefact; training another costs 10 s);
    each scored by the single machine and on Spark (one session for the module)."""
    import time

    folder = tmp_path_factory.mktemp("scoring")
    db = folder / "store.duckdb"
    shutil.copyfile(shop_pair.db, db)
    lake_dir = copy_lake(shop_pair.lake, folder / "lake")
    settings = Settings()
    seconds: dict[str, float] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving, "BATCH_USERS", BLOCK)
        with Workspace.open(db) as ws:
            ws.segments.run("rfm")  # the hybrid's popularity then ranks by segment
            recs_model = ws.recs.train().model_id
            trained = ws.predict.train("propensity", models=["lightgbm"], train_windows=1)
            registry = Registry(ws.store)
            record = registry.get(trained.model_id)
            registry.save(
                kind="churn",
                name="churn",
                method=record.method,
                features=record.features,
                info=record.info,
                as_of=record.as_of,
                artefact=registry.artefact(trained.model_id),
            )
            started = time.perf_counter()
            ws.recs.batch(settings.recommend.k)
            seconds["recommend duckdb"] = time.perf_counter() - started
            for target in ("propensity", "churn"):
                started = time.perf_counter()
                ws.predict.score(target)
                seconds[f"{target} duckdb"] = time.perf_counter() - started
            profiles = ws.store.con.sql("SELECT * FROM profiles").to_arrow_table()
        (lake_dir / "profiles").mkdir()
        pq.write_table(profiles, lake_dir / "profiles" / "part-0.parquet")
        lake = open_lake_module(lake_dir)
        started = time.perf_counter()
        job = recommend_on_lake.prepare(db, settings)
        recommend_on_lake.batch_on_lake(lake, settings, job)
        seconds["recommend spark"] = time.perf_counter() - started
        for target in ("propensity", "churn"):
            started = time.perf_counter()
            predict_on_lake.score_on_lake(
                lake, settings, predict_on_lake.prepare(db, settings, target)
            )
            seconds[f"{target} spark"] = time.perf_counter() - started
    print("\nscoring seconds:", {k: round(v, 2) for k, v in seconds.items()})
    return Scored(db, lake_dir, recs_model, trained.model_id, seconds)


@pytest.fixture(scope="module")
def open_lake_module(spark_session) -> Any:
    """``open_lake`` for the module's fixture (the shared one is per test)."""
    from jingzhun.store.lake import Lake

    opened: list[Lake] = []

    def _open(path: Path) -> Lake:
        lake = Lake.open(path, session=spark_session)
        opened.append(lake)
        return lake

    yield _open
    for lake in opened:
        lake.close()


# -- equal rows ----------------------------------------------------------------------------


def _null(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Where two columns differ: floats beyond REL (NaN equal to NaN), others as values."""
    if pd.api.types.is_float_dtype(a) and pd.api.types.is_float_dtype(b):
        x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
        return ~(np.isclose(x, y, rtol=REL, atol=0.0) | (np.isnan(x) & np.isnan(y)))
    return np.array([not (_null(u) and _null(v)) and u != v for u, v in zip(a, b, strict=True)])


def _assert_equal(duck: pd.DataFrame, spark: pd.DataFrame, key: list[str]) -> None:
    """The same rows: keys and text exactly, floats to REL (JSON compared as values)."""
    duck = duck.sort_values(key).reset_index(drop=True)
    spark = spark[list(duck.columns)].sort_values(key).reset_index(drop=True)
    assert len(duck) == len(spark) > 0
    differs = {}
    for column in duck.columns:
        bad = np.flatnonzero(_differs(duck[column], spark[column]))
        if len(bad):
            rows = [(duck.at[i, key[0]], duck.at[i, column], spark.at[i, column]) for i in bad[:3]]
            differs[column] = (len(bad), rows)
    assert differs == {}


def _lake(scored: Scored, table: str) -> pd.DataFrame:
    return pd.read_parquet(scored.lake / table)


def test_recommendations_on_spark_are_the_single_machine_rows(scored: Scored) -> None:
    columns = "user_id, rank, item_id, score, model, reason"
    duck = _frame(scored.db, f"SELECT {columns} FROM recommendations")
    spark = _lake(scored, "recommendations")
    assert duck["user_id"].nunique() > 2_000 and len(duck) > 20_000
    assert set(duck["model"]) == {scored.recs_model}
    assert duck["reason"].str.startswith("segment:").any()  # the members joined on Spark
    _assert_equal(duck, spark, ["user_id", "rank"])
    assert spark["rank"].dtype.name == "int32"  # INTEGER, as the store's column


def _json(value: object) -> object:
    return None if _null(value) else json.loads(str(value))


@pytest.mark.parametrize(
    ("target", "tag"), [("propensity", "likely_to_buy"), ("churn", "churn_risk")]
)
def test_scores_and_tags_on_spark_are_the_single_machine_rows(
    scored: Scored, target: str, tag: str
) -> None:
    query = (
        "SELECT user_id, score, value, percentile, model_id, reasons, as_of FROM scores "
        f"WHERE score = '{target}'"
    )
    duck = _frame(scored.db, query)
    spark = _lake(scored, "scores")
    spark = spark[spark["score"] == target]
    duck["reasons"] = duck["reasons"].map(_json)
    spark = spark.assign(reasons=spark["reasons"].map(_json))
    assert 500 < len(duck) <= 3_000
    assert duck["reasons"].notna().sum() == math.ceil(0.3 * len(duck))  # the top share
    if target == "propensity":  # users with the same features: ties, ranked as one machine does
        assert duck["value"].duplicated().any()
    _assert_equal(duck, spark, ["user_id"])
    # The model's tag (a tag rule of the same name writes its own rows, source 'rule').
    tags = f"SELECT user_id, tag, value, source FROM tags WHERE tag = '{tag}' AND source = 'model'"
    spark_tags = _lake(scored, "tags")
    _assert_equal(_frame(scored.db, tags), spark_tags[spark_tags["tag"] == tag], ["user_id"])


def test_a_target_replaces_only_its_own_rows(scored: Scored) -> None:
    # churn was scored after propensity: the lake keeps both, as the store does.
    scores = _lake(scored, "scores")
    assert sorted(scores["score"].unique()) == ["churn", "propensity"]
    assert sorted(_lake(scored, "tags")["tag"].unique()) == ["churn_risk", "likely_to_buy"]


# -- bad input: one line, exit code 2 --------------------------------------------------------


def test_a_lake_without_profiles_is_refused(shop_pair, open_lake, scored: Scored) -> None:
    lake = open_lake(shop_pair.lake)  # lake init's tables only
    job = predict_on_lake.prepare(scored.db, Settings(), "propensity")
    with pytest.raises(NotFoundError, match=r"has no profiles table.*profile build") as err:
        predict_on_lake.score_on_lake(lake, Settings(), job)
    assert err.value.exit_code == 2


def test_stale_profiles_or_another_as_of_are_refused(scored: Scored, open_lake) -> None:
    from datetime import timedelta

    lake = open_lake(scored.lake)
    job = predict_on_lake.prepare(scored.db, Settings(), "propensity")
    at = job.record.as_of
    with pytest.raises(InputError, match=r"as_of .*: the lake's profiles are as of") as err:
        predict_on_lake.score_on_lake(lake, Settings(), job, at - timedelta(days=1))
    assert err.value.param == "as_of"


def test_bad_models_are_one_line_before_spark_starts(scored: Scored, tmp_path: Path) -> None:
    spark = ("--engine", "spark", "--db", str(scored.lake))
    store = ("--from-store", str(scored.db))
    error_line(
        run(tmp_path, *spark, "recommend", "batch", *store, "--model", "nope-7"),
        "no trained model 'nope-7'",
        scored.recs_model,
    )
    error_line(
        run(tmp_path, *spark, "recommend", "batch", *store, "--model", scored.propensity_model),
        f"'{scored.propensity_model}' is a propensity model",
        "not a recommender",
    )
    error_line(
        run(tmp_path, *spark, "predict", "score", *store, "--model", scored.recs_model),
        f"'{scored.recs_model}' is a recommender model",
        "not a predict model",
    )
    error_line(run(tmp_path, *spark, "recommend", "batch"), "needs --from-store STORE")
    error_line(
        run(tmp_path, "--db", str(scored.db), "predict", "score", *store),
        "--from-store goes with --engine spark",
    )

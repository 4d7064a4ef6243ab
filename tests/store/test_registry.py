"""The one registry of trained things (``store/registry.py``, the ``models`` table).

Real DuckDB files on disk: ids, activation scopes, one transaction for a model and its
outputs, the upgrade of a pre-registry store (model files absorbed into the store, old tables
as views), and a trained store copied under another name that still serves.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from jingzhun.errors import InputError, NotFoundError
from jingzhun.store import Registry, Store
from jingzhun.store.registry import npz_arrays, npz_bytes
from jingzhun.store.store import migrations
from jingzhun.workspace import Workspace


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "shop.duckdb") as s:
        yield s


def _save(reg: Registry, kind: str, name: str, **more: object) -> str:
    return reg.save(kind=kind, name=name, method=more.pop("method", name), **more)


# -- ids, activation, reading ---------------------------------------------------------------------


def test_ids_count_up_per_series_and_never_collide_across_kinds(store: Store) -> None:
    reg = Registry(store)
    assert _save(reg, "recommender", "als") == "als-1"
    assert _save(reg, "recommender", "als") == "als-2"
    # A segment run named like a recommender takes the next free number of the series.
    assert _save(reg, "segment", "als", method="kmeans") == "als-3"
    assert _save(reg, "propensity", "propensity", method="lightgbm") == "propensity-1"
    # LIKE wildcards in a name are literal: "a_s" is not a series of "als".
    assert _save(reg, "segment", "a_s", method="kmeans") == "a_s-1"
    assert len({r.model_id for r in reg.list()}) == 5


def test_one_active_per_kind_and_per_name_for_segment_runs(store: Store) -> None:
    reg = Registry(store)
    _save(reg, "recommender", "itemknn")
    _save(reg, "recommender", "popularity")
    _save(reg, "segment", "value", method="kmeans")
    _save(reg, "segment", "life", method="rfm")
    _save(reg, "segment", "value", method="gmm")
    active = {(r.kind, r.model_id) for r in reg.list() if r.active}
    assert active == {
        ("recommender", "popularity-1"),
        ("segment", "life-1"),
        ("segment", "value-2"),
    }
    assert reg.activate("itemknn-1").active
    assert reg.active("recommender").model_id == "itemknn-1"
    assert not reg.get("popularity-1").active
    reg.activate("value-1")
    assert reg.active("segment", "value").model_id == "value-1"
    assert reg.active("segment", "life").model_id == "life-1"  # another name is untouched


def test_records_round_trip_their_fields_and_fitted_state(store: Store) -> None:
    reg = Registry(store)
    arrays = {"centroids": np.arange(6.0).reshape(2, 3), "labels": np.array(["a", "b"])}
    model_id = reg.save(
        kind="segment",
        name="value",
        method="kmeans",
        params={"k": np.int64(2), "scale": np.array([1.5, 2.0])},
        features=["recency_days", "frequency"],
        metrics={"silhouette": np.float32(0.25)},
        info={"users": 10, "segments": 2},
        fit_seconds=1.25,
        artefact=npz_bytes(arrays),
    )
    r = reg.get(model_id)
    assert (r.kind, r.name, r.method, r.active) == ("segment", "value", "kmeans", True)
    assert r.params == {"k": 2, "scale": [1.5, 2.0]}
    assert r.features == ["recency_days", "frequency"]
    assert r.metrics == {"silhouette": 0.25}
    assert r.info == {"users": 10, "segments": 2}
    back = reg.arrays(model_id)
    np.testing.assert_array_equal(back["centroids"], arrays["centroids"])
    np.testing.assert_array_equal(back["labels"], arrays["labels"])
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["artefact_bytes"] == len(reg.artefact(model_id))
    assert set(r.to_dict(full=False)) < set(d)


def test_unknown_ids_and_kinds_are_named_with_what_exists(store: Store) -> None:
    reg = Registry(store)
    with pytest.raises(NotFoundError, match="train one first"):
        reg.get("hybrid-1", kind="recommender")
    _save(reg, "recommender", "hybrid")
    with pytest.raises(NotFoundError, match=r"no trained model 'hybrid-9'.*known: hybrid-1"):
        reg.get("hybrid-9", kind="recommender")
    with pytest.raises(NotFoundError, match="'hybrid-1'"):
        reg.get("hybrid-1", kind="churn")  # exists, but of another kind
    with pytest.raises(
        InputError, match=r"kind 'recommend' is not a model kind.*segment, recommender"
    ):
        reg.list("recommend")
    with pytest.raises(InputError, match="not a saved jingzhun model"):
        npz_arrays(b"not an npz", where="model x")


def test_a_failure_while_writing_outputs_leaves_no_model(store: Store) -> None:
    reg = Registry(store)
    first = _save(reg, "clv", "clv", method="bgnbd")
    with (
        pytest.raises(RuntimeError, match="scores failed"),
        reg.saving(kind="clv", name="clv", method="bgnbd") as saved,
    ):
        saved.con.execute("CREATE TABLE written_inside (x INTEGER)")
        raise RuntimeError("scores failed")
    assert [r.model_id for r in reg.list()] == [first]
    assert reg.active("clv").model_id == first  # the previous model is still the active one
    assert not store.scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'written_inside'"
    )


def test_version_changes_when_the_active_models_change(store: Store) -> None:
    reg = Registry(store)
    _save(reg, "recommender", "itemknn")
    before = reg.version()
    assert reg.version() == before
    _save(reg, "recommender", "popularity")
    assert reg.version() != before


# -- upgrading a store written before the registry ----------------------------------------------


def _old_store(path: Path, *, file_present: bool = True) -> None:
    """A schema-5 store as jingzhun wrote it before the registry: three tables of models, and
    the recommender's and predict model's files beside the store."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER NOT NULL, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    for m in migrations()[:5]:
        con.execute(m.sql)
        con.execute(
            "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)", [m.version, m.name]
        )
    seg_model = npz_bytes({"model_means": np.ones((2, 2))})
    con.execute(
        "INSERT INTO segment_runs VALUES ('kmeans-1', 'kmeans', 'kmeans', '{\"k\": 2}', "
        "'[\"frequency\"]', '{\"silhouette\": 0.4}', 5, 2, '2026-01-01', ?, true, '2026-01-02')",
        [seg_model],
    )
    # A run named like a recommender model: its id is taken by the recommender after the upgrade.
    con.execute(
        "INSERT INTO segment_runs VALUES ('itemknn-1', 'itemknn', 'rfm', '{}', '[]', '{}', "
        "5, 3, '2026-01-01', NULL, true, '2026-01-02')"
    )
    con.execute(
        "INSERT INTO segment_members VALUES ('itemknn-1', 'u1', 'Champions', true, '2026-01-02')"
    )
    con.execute(
        "INSERT INTO segment_portraits VALUES ('itemknn-1', 'Champions', 'Champions', 1, 1.0, "
        "1.0, '{}', '[]')"
    )
    rel = f"{path.name}.models/recommend/itemknn-1.npz"
    con.execute(
        "INSERT INTO recommend_models VALUES ('itemknn-1', 'itemknn', '{\"neighbours\": 10}', ?, "
        "4, 6, 9, '2026-01-01', 'itemknn-1', 0.5, NULL, true, '2026-01-03')",
        [rel],
    )
    prel = f"{path.name}.models/predict/propensity-1.npz"
    con.execute(
        "INSERT INTO predict_models VALUES ('propensity-1', 'propensity', 'lightgbm', 30, "
        '\'2026-01-01\', \'{"test": "2025-12-01"}\', \'["frequency"]\', \'{"best": "lightgbm"}\', '
        "?, 2.0, true, '2026-01-04')",
        [prel],
    )
    con.execute(
        "INSERT INTO predict_models VALUES ('clv-1', 'clv', 'bgnbd', 30, '2026-01-01', '{}', "
        "'[]', '{}', '', 0.1, true, '2026-01-05')"
    )
    con.close()
    if file_present:
        for r, payload in ((rel, b"recommender bytes"), (prel, b"propensity bytes")):
            (path.parent / r).parent.mkdir(parents=True, exist_ok=True)
            (path.parent / r).write_bytes(payload)


def test_an_old_store_is_upgraded_and_its_model_files_move_inside(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _old_store(db)
    with Store.open(db) as store:
        reg = Registry(store)
        kinds = {r.model_id: r.kind for r in reg.list()}
        assert kinds == {
            "kmeans-1": "segment",
            "segment-itemknn-1": "segment",
            "itemknn-1": "recommender",
            "propensity-1": "propensity",
            "clv-1": "clv",
        }
        assert reg.artefact("itemknn-1") == b"recommender bytes"
        assert reg.artefact("propensity-1") == b"propensity bytes"
        assert npz_arrays(reg.artefact("kmeans-1"))["model_means"].shape == (2, 2)
        # The renamed run is renamed everywhere it was referred to.
        assert store.rows("SELECT DISTINCT run_id FROM segment_members") == [("segment-itemknn-1",)]
        assert store.rows("SELECT DISTINCT run_id FROM segment_portraits") == [
            ("segment-itemknn-1",)
        ]
        assert reg.get("itemknn-1").info["segment_run"] == "segment-itemknn-1"
        # The old tables read as before, as views.
        assert store.rows(
            "SELECT model_id, model, users, items, interactions FROM recommend_models"
        ) == [("itemknn-1", "itemknn", 4, 6, 9)]
        assert store.rows("SELECT run_id, users, segments FROM segment_runs ORDER BY 1") == [
            ("kmeans-1", 5, 2),
            ("segment-itemknn-1", 5, 3),
        ]
        assert store.rows(
            "SELECT model_id, target, horizon_days, json_extract_string(cutoffs, '$.test') "
            "FROM predict_models ORDER BY 1"
        ) == [("clv-1", "clv", 30.0, None), ("propensity-1", "propensity", 30.0, "2025-12-01")]
    # A store is one file: the folder beside it is gone.
    assert not (tmp_path / "old.duckdb.models").exists()


def test_an_old_store_copied_without_its_files_says_which_model_to_retrain(tmp_path: Path) -> None:
    db = tmp_path / "copied.duckdb"
    _old_store(db, file_present=False)
    with Store.open(db) as store:
        reg = Registry(store)
        with pytest.raises(
            NotFoundError,
            match=r"itemknn-1: its file .*itemknn-1\.npz was not found.*recommend train",
        ):
            reg.artefact("itemknn-1")
        with pytest.raises(NotFoundError, match="propensity-1"):
            reg.activate("propensity-1")
    # A later open with the files back absorbs them.
    _old_store(tmp_path / "again.duckdb")
    shutil.copytree(tmp_path / "again.duckdb.models", tmp_path / "copied.duckdb.models")
    with Store.open(db) as store:
        assert Registry(store).artefact("itemknn-1") == b"recommender bytes"


# -- a trained store is one file -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("registry") / "shop.duckdb"
    with Workspace.open(db) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest.files(kind, [shop.file(kind)])
        ws.profiles.build()
        ws.segments.run("kmeans", k=4, name="value", stability_resamples=0)
        ws.recs.train("itemknn")
        ws.predict.train("propensity", models=["logistic"])
        ws.predict.score("propensity")
    return db


def test_a_store_copied_under_a_new_name_serves_recommendations_and_scores(
    trained: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "elsewhere" / "renamed.duckdb"
    copy.parent.mkdir()
    shutil.copyfile(trained, copy)
    assert sorted(p.name for p in trained.parent.iterdir()) == ["shop.duckdb"]
    with Workspace.open(trained, read_only=True) as ws:
        user = ws.sql("SELECT user_id FROM scores ORDER BY value DESC LIMIT 1").iloc[0, 0]
        original = ws.recs.for_user(user, k=5)
    with Workspace.open(copy) as ws:
        again = ws.recs.for_user(user, k=5)
        assert again.items == original.items and len(again.items) == 5
        assert ws.segments.segmenter("value").assign({"frequency": 3}) in {"1", "2", "3", "4"}
        scored = ws.predict.score("propensity")
        assert scored.model_id == "propensity-1" and scored.users > 0
        assert {r.kind for r in ws.models.list()} == {"segment", "recommender", "propensity"}


def test_serving_keeps_the_loaded_model_until_the_active_one_changes(
    trained: Path, tmp_path: Path
) -> None:
    db = tmp_path / "serve.duckdb"
    shutil.copyfile(trained, db)
    with Workspace.open(db) as ws:
        first = ws.recs.recommender()
        assert ws.recs.recommender() is first  # cached: no second load
        ws.recs.train("popularity")
        second = ws.recs.recommender()
        assert second is not first and second.model_id == "popularity-1"
        ws.models.activate("itemknn-1")
        assert ws.recs.recommender().model_id == "itemknn-1"

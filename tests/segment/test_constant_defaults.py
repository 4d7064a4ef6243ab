"""A default feature that no user differs in is left out with a word, not an error.

A store without a catalog has no prices and no categories: every user's ``price_percentile``
and ``affinity_concentration`` is 0. ``segment run --method kmeans`` with the default features
failed there (``'price_percentile' is constant``); now such a default is dropped and named in
the result, and only a constant feature the user asked for is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.errors import InputError
from jingzhun.segment import features as F
from jingzhun.workspace import Workspace

#: The defaults that need the catalog: constant in a store of events alone.
NEED_CATALOG = ["price_percentile", "affinity_concentration"]


# -- the feature step --------------------------------------------------------------------------


def test_constant_features_apply_the_pipelines_own_test() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [
            rng.lognormal(size=200),  # skewed: log1p, and spread
            np.zeros(200),  # constant
            np.full(200, np.nan),  # missing for everyone: constant at 0
            np.full(200, 3.5),  # constant, not at 0
        ]
    )
    names = ["aov", "price_percentile", "discount_share", "tenure_days"]
    assert F.constant_features(names, X) == ["price_percentile", "discount_share", "tenure_days"]
    # the pipeline refuses the first of them, so the two never disagree
    with pytest.raises(InputError, match="'price_percentile' is constant"):
        F.FeaturePipeline(names).fit(X)
    kept = [0]
    F.FeaturePipeline(["aov"]).fit(X[:, kept])  # what is left fits
    assert F.constant_features(names, X[:0]) == []  # no rows: nothing to judge yet


def test_drop_constant_defaults_returns_the_traits_without_them() -> None:
    traits = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "aov": [1.0, 5.0, 9.0],
            "price_percentile": [0.0, 0.0, 0.0],
            "view_to_cart": [0.1, 0.2, 0.1],
        }
    )
    names = ["aov", "price_percentile", "view_to_cart"]
    frame, kept, dropped = F.drop_constant_defaults(traits, names)
    assert (kept, dropped) == (["aov", "view_to_cart"], ["price_percentile"])
    assert frame.columns.tolist() == ["user_id", "aov", "view_to_cart"]
    assert "price_percentile" in traits.columns  # the caller's frame is left as it was
    same, kept, dropped = F.drop_constant_defaults(traits, ["aov"])
    assert same is traits and (kept, dropped) == (["aov"], [])


def test_every_default_constant_is_an_input_error_naming_them() -> None:
    traits = pd.DataFrame({"user_id": ["a", "b"], "aov": [2.0, 2.0], "tenure_days": [0.0, 0.0]})
    with pytest.raises(InputError) as err:
        F.drop_constant_defaults(traits, ["aov", "tenure_days"])
    message = str(err.value)
    assert "--features" in message and "aov, tenure_days" in message
    assert err.value.exit_code == 2


# -- a run on a store without a catalog -----------------------------------------------------------


@pytest.fixture(scope="module")
def no_catalog(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated shop's events and users, without its items, with profiles built."""
    path = tmp_path_factory.mktemp("no_catalog") / "store.duckdb"
    with Workspace.open(path) as ws:
        for kind in ("users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
    return path


def test_the_default_run_leaves_out_what_the_catalog_would_give(no_catalog: Path) -> None:
    with Workspace.open(no_catalog) as ws:
        result = ws.segment_run("kmeans", k=3, stability_resamples=0)
        stored = json.loads(
            ws.store.scalar("SELECT features FROM segment_runs WHERE run_id = ?", [result.run_id])
        )
        members = ws.segment_members(result.run_id)
    assert result.dropped_features == NEED_CATALOG
    expected = [f for f in F.DEFAULT_FEATURES if f not in NEED_CATALOG]
    assert result.features == stored == expected
    assert result.to_dict()["dropped_features"] == NEED_CATALOG
    assert result.segments == 3 and len(members) == result.users
    for portrait in result.portraits:  # portraits describe the features used, no more
        assert set(portrait["traits"]) == set(expected)


def test_a_constant_feature_asked_for_is_still_an_error(no_catalog: Path) -> None:
    with Workspace.open(no_catalog) as ws:
        before = ws.store.count("segment_runs")
        with pytest.raises(InputError) as err:
            ws.segment_run("kmeans", features=["aov", "price_percentile"], stability_resamples=0)
        assert ws.store.count("segment_runs") == before
    assert "--features: 'price_percentile' is constant (every user has 0)" in str(err.value)


def test_nothing_is_dropped_when_the_catalog_is_there(shop, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "store.duckdb") as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
        result = ws.segment_run("kmeans", k=3, stability_resamples=0)
    assert result.dropped_features == []
    assert result.features == list(F.DEFAULT_FEATURES)
    assert "dropped_features" not in result.to_dict()  # said only when something was dropped

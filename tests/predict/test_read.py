"""The predict stage's read functions on scores written by the stage's own writer: every score
of a kind, one user's scores with their reasons, and a kind's values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import pytest

from jingzhun.predict import read
from jingzhun.predict.scores import write_scores
from jingzhun.workspace import Workspace

AS_OF = datetime(2024, 3, 10)
REASONS = [
    {"feature": "recency_days", "value": 2.0, "effect": 0.8},
    {"feature": "frequency", "value": 5.0, "effect": 0.3},
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Propensity scores (u1 with reasons) and CLV scores of three users."""
    folder = tmp_path_factory.mktemp("predict_read")
    with Workspace.open(folder / "store.duckdb") as ws:
        propensity = pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u3"],
                "value": [0.7, 0.2, 0.5],
                "reasons": [REASONS, None, []],
            }
        )
        clv = pd.DataFrame({"user_id": ["u1", "u3", "u4"], "value": [120.0, 15.5, 0.0]})
        write_scores(ws.store, {"propensity": propensity}, model_id="propensity-1", as_of=AS_OF)
        write_scores(ws.store, {"clv": clv}, model_id="clv-1", as_of=AS_OF)
        yield ws


def test_scores_of_one_kind_highest_first(scored: Workspace) -> None:
    p = read.scores(scored.store, "propensity")
    assert p["user_id"].tolist() == ["u1", "u3", "u2"]
    assert p["value"].tolist() == [0.7, 0.5, 0.2]
    assert p["percentile"].tolist() == [1.0, 0.5, 0.0]
    assert set(p["model_id"]) == {"propensity-1"}
    assert set(p["score"]) == {"propensity"}
    assert read.scores(scored.store, "uplift").empty


def test_scores_of_every_kind(scored: Workspace) -> None:
    every = read.scores(scored.store)
    assert list(every.columns) == [
        "user_id",
        "score",
        "value",
        "percentile",
        "model_id",
        "reasons",
        "as_of",
        "computed_at",
    ]
    assert list(zip(every["score"], every["user_id"], strict=True)) == [
        ("clv", "u1"),
        ("clv", "u3"),
        ("clv", "u4"),
        ("propensity", "u1"),
        ("propensity", "u3"),
        ("propensity", "u2"),
    ]
    assert (every["as_of"] == AS_OF).all()


def test_user_scores_one_row_per_kind_with_reasons(scored: Workspace) -> None:
    u1 = read.user_scores(scored.store, "u1")
    assert u1["score"].tolist() == ["clv", "propensity"]
    assert u1["value"].tolist() == [120.0, 0.7]
    assert u1["model_id"].tolist() == ["clv-1", "propensity-1"]
    assert u1["reasons"].tolist() == [None, REASONS]  # parsed, in the model's order
    assert read.user_scores(scored.store, "u3")["reasons"].tolist() == [None, []]
    u2 = read.user_scores(scored.store, "u2")
    assert u2[["score", "value", "percentile"]].to_dict("records") == [
        {"score": "propensity", "value": 0.2, "percentile": 0.0}
    ]
    assert read.user_scores(scored.store, "nobody").empty


def test_score_values(scored: Workspace) -> None:
    assert sorted(read.score_values(scored.store, "clv").tolist()) == [0.0, 15.5, 120.0]
    assert read.score_values(scored.store, "churn").empty

"""Offline evaluation: reading logs, the four splits, top-k metrics against hand-computed values
and properties, folds with unseen items, and the whole harness on a planted log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from jingzhun.errors import InputError
from jingzhun.recommend.evaluate import (
    METRICS,
    SPLITS,
    Fold,
    evaluate,
    metrics_at_k,
    parse_split,
    prepare,
    read_log,
    split,
    tune_weights,
)
from jingzhun.recommend.models import make


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


# -- metrics ----------------------------------------------------------------------------------


def _relevant(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    dense = np.zeros((len(sets), n_items), np.float32)
    for r, s in enumerate(sets):
        dense[r, list(s)] = 1
    return sp.csr_matrix(dense)


def test_metrics_match_hand_computed_values() -> None:
    rel = _relevant([{0, 1}, {1, 3, 4, 5}, {5}], 6)
    rec = np.asarray([[0, 2, 1], [2, 3, -1], [0, 1, 2]])
    share = np.asarray([0.5, 0.25, 0.25, 0.5, 0.125, 0.0])
    m = metrics_at_k(rec, rel, 3, share)
    assert set(m) == set(METRICS)
    lg = np.log2
    # user 0: hits at ranks 1 and 3 of 2 relevant; user 1: a hit at rank 2 of 4; user 2: none.
    ndcg0 = (1 + 1 / lg(4)) / (1 + 1 / lg(3))
    ndcg1 = (1 / lg(3)) / (1 + 1 / lg(3) + 1 / lg(4))  # ideal over min(k, 4) = 3 hits
    ap0 = (1 / 1 + 2 / 3) / 2
    ap1 = (1 / 2) / 4  # MAP divides by the number of relevant items, not of hits
    expect = {
        "precision": (2 / 3 + 1 / 3 + 0) / 3,
        "recall": (1 + 1 / 4 + 0) / 3,
        "ndcg": (ndcg0 + ndcg1 + 0) / 3,
        "map": (ap0 + ap1 + 0) / 3,
        "hit_rate": 2 / 3,
        "mrr": (1 + 1 / 2 + 0) / 3,
        # items 0, 1, 2, 3 shown; 5 items have a share > 0
        "coverage": 4 / 5,
        # shown: 0 2 1 | 2 3 | 0 1 2 -> -log2 share 1 2 2 2 1 1 2 2
        "novelty": 13 / 8,
    }
    for key, value in expect.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_metrics_use_only_the_first_k_columns() -> None:
    rel = _relevant([{3}], 5)
    share = np.full(5, 0.2)
    wide = np.asarray([[0, 1, 3, 4]])
    assert metrics_at_k(wide, rel, 2, share)["hit_rate"] == 0.0
    m = metrics_at_k(wide, rel, 3, share)
    assert m["hit_rate"] == 1.0
    assert m["mrr"] == pytest.approx(1 / 3)
    assert m["ndcg"] == pytest.approx(1 / np.log2(4))


@st.composite
def _cases(draw) -> tuple[np.ndarray, sp.csr_matrix, int, np.ndarray, list[set[int]]]:
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 5))
    k = draw(st.integers(1, 8))
    sets = [
        set(draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=n_items)))
        for _ in range(n_users)
    ]
    rows = []
    for _ in range(n_users):
        perm = draw(st.permutations(range(n_items)))
        shown = draw(st.integers(0, min(k, n_items)))
        rows.append(list(perm[:shown]) + [-1] * (k - shown))
    share = np.asarray(
        draw(st.lists(st.floats(1e-4, 1.0), min_size=n_items, max_size=n_items)), np.float64
    )
    return np.asarray(rows, np.int64), _relevant(sets, n_items), k, share, sets


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_metrics_stay_in_range(case) -> None:
    rec, rel, k, share, _ = case
    m = metrics_at_k(rec, rel, k, share)
    for key in METRICS:
        assert np.isfinite(m[key]), key
        if key == "novelty":
            assert m[key] >= 0
        else:
            assert -1e-12 <= m[key] <= 1 + 1e-12, (key, m[key])


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_perfect_recommendations_score_perfectly(case) -> None:
    _, rel, k, share, sets = case
    n_items = rel.shape[1]
    rows = []
    for s in sets:
        order = sorted(s) + [i for i in range(n_items) if i not in s]
        row = order[:k]
        rows.append(row + [-1] * (k - len(row)))
    m = metrics_at_k(np.asarray(rows, np.int64), rel, k, share)
    n_rel = np.asarray([len(s) for s in sets], np.float64)
    hits = np.minimum(n_rel, k)
    assert m["precision"] == pytest.approx(np.mean(hits / k))
    assert m["recall"] == pytest.approx(np.mean(hits / n_rel))
    assert m["map"] == pytest.approx(np.mean(hits / n_rel))
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["hit_rate"] == 1.0
    assert m["mrr"] == 1.0


def test_fold_counts_test_items_unseen_in_training() -> None:
    train = pd.DataFrame({"user": ["u1", "u1", "u2", "u2"], "item": ["a", "b", "b", "c"]})
    test = pd.DataFrame(
        {
            "user": ["u1", "u1", "u3", "u2"],
            "item": ["c", "new", "a", "a"],
            "relevant": [True, True, True, False],
        }
    )
    fold = Fold.make(train, test, None)
    assert fold.users.tolist() == ["u1"]  # u2's test row is not relevant, u3 is unknown
    assert fold.dropped_users == 1
    assert fold.n_relevant.tolist() == [2.0]
    assert fold.relevant.nnz == 1  # "new" is not a training item
    c = int(fold.train.items.index("c")[0])
    a = int(fold.train.items.index("a")[0])
    m = metrics_at_k(np.asarray([[c, a]]), fold._relevant_full(), 2, fold.train.item_popularity())
    assert m["recall"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    # A real model through Fold.score: u1 had a and b, so c is its only candidate.
    metrics, seconds = fold.score(make("pop").fit(fold.train), 1)
    assert metrics["precision"] == 1.0 and metrics["recall"] == pytest.approx(0.5)
    assert seconds >= 0


# -- reading and preparing the log ------------------------------------------------------------


def test_read_log_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,item_id,rating,ts,extra\nu1,i1,5,100,x\nu1,i2,3.5,200,y\nu2,i1,,300,z\n"
    )
    log = read_log(path, rating_col="rating", time_col="ts")
    assert list(log.columns) == ["user", "item", "rating", "time"]
    assert log["user"].tolist() == ["u1", "u1", "u2"]
    assert log["item"].tolist() == ["i1", "i2", "i1"]
    assert log["rating"].iloc[:2].tolist() == [5.0, 3.5]
    assert np.isnan(log["rating"].iloc[2])  # an empty rating is missing, not an error
    assert log["time"].tolist() == [100.0, 200.0, 300.0]
    plain = read_log(path)
    assert list(plain.columns) == ["user", "item"]


def test_read_log_numbered_columns_without_header(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text(
        "7\t101\t4\t2024-01-01T00:00:00Z\n7\t102\t2\t2024-01-02T00:00:00Z\n8\t101\t5\t2024-01-03T00:00:00Z\n"
    )
    log = read_log(path, sep="\t", user_col="1", item_col="2", rating_col="3", time_col="4")
    assert log["user"].tolist() == ["7", "7", "8"]  # ids stay strings
    assert log["item"].tolist() == ["101", "102", "101"]
    assert log["rating"].tolist() == [4.0, 2.0, 5.0]
    start = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert log["time"].tolist() == [start, start + 86400, start + 2 * 86400]


def test_read_log_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"customer": ["a", "b"], "sku": ["x", "y"], "r": [1.0, 2.0]}).to_parquet(path)
    log = read_log(path, user_col="customer", item_col="sku", rating_col="r")
    assert log.to_dict("list") == {"user": ["a", "b"], "item": ["x", "y"], "rating": [1.0, 2.0]}


def test_read_log_names_the_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating\nu1,i1,5\nu1,i2,4\nu2,i1,lots\n")
    with pytest.raises(InputError, match=r"log\.csv: row 4, rating='lots' is not a number"):
        read_log(path, rating_col="rating")
    numbered = tmp_path / "log2.csv"
    numbered.write_text("u1,i1,5\nu2,i2,bad\n")
    with pytest.raises(InputError, match=r"row 2, .*'bad' is not a number"):
        read_log(numbered, user_col="1", item_col="2", rating_col="3")
    times = tmp_path / "log3.csv"
    times.write_text("user_id,item_id,t\nu1,i1,2024-01-01\nu1,i2,yesterday\n")
    with pytest.raises(InputError, match=r"row 3, t='yesterday' is not a time"):
        read_log(times, time_col="t")


def test_read_log_unknown_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating\nu1,i1,5\n")
    with pytest.raises(InputError, match="--user-col 'customer'") as err:
        read_log(path, user_col="customer")
    assert "user_id, item_id, rating" in str(err.value)
    with pytest.raises(InputError, match="--rating-col '9'"):
        read_log(path, rating_col="9")
    with pytest.raises(InputError, match="no such file"):
        read_log(tmp_path / "missing.csv")


def test_prepare_keeps_one_row_per_pair() -> None:
    log = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b"],
            "item": ["x", "x", "y", "x"],
            "rating": [2.0, 5.0, 1.0, 3.0],
            "time": [10.0, 5.0, 7.0, 1.0],
        }
    )
    out = prepare(log, min_rating=3)
    assert len(out) == 3
    ax = out[(out["user"] == "a") & (out["item"] == "x")].iloc[0]
    assert (ax["rating"], ax["time"], ax["relevant"]) == (5.0, 10.0, True)
    assert out.set_index(["user", "item"])["relevant"].to_dict() == {
        ("a", "x"): True,
        ("a", "y"): False,
        ("b", "x"): True,
    }
    assert prepare(log[["user", "item"]])["relevant"].all()


def test_prepare_errors() -> None:
    with pytest.raises(InputError, match="empty"):
        prepare(pd.DataFrame({"user": [], "item": []}))
    with pytest.raises(InputError, match="1 user") as err:
        prepare(pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"]}))
    assert "at least 2 users" in str(err.value)
    with pytest.raises(InputError, match="--min-rating needs --rating-col"):
        prepare(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}), min_rating=3)


# -- splits -----------------------------------------------------------------------------------


def test_parse_split_accepts_the_valid_forms() -> None:
    assert parse_split("random-by-user:0.75") == ("random-by-user", 0.75)
    assert parse_split("stratified-by-item:0.5") == ("stratified-by-item", 0.5)
    assert parse_split("temporal-global:0.9") == ("temporal-global", 0.9)
    assert parse_split("leave-last-out") == ("leave-last-out", None)


def test_parse_split_unknown_name_lists_the_splits() -> None:
    with pytest.raises(InputError, match="unknown split") as err:
        parse_split("by-magic:0.5")
    for name in SPLITS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("random-by-user", "missing or not a number"),
        ("random-by-user:", "missing or not a number"),
        ("temporal-global:most", "missing or not a number"),
        ("random-by-user:1.5", "between 0 and 1"),
        ("random-by-user:0", "between 0 and 1"),
        ("stratified-by-item:1", "between 0 and 1"),
        ("random-by-user:-0.2", "between 0 and 1"),
        ("leave-last-out:0.5", "takes no ratio"),
    ],
)
def test_parse_split_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_split(text)
    assert repr(text) in str(err.value)
    assert err.value.hint  # says what to write instead


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """80 users with 1-15 distinct items each (out of 40), distinct times."""
    rng = np.random.default_rng(11)
    rows = []
    for u in range(80):
        for i in rng.choice(40, rng.integers(1, 16), replace=False):
            rows.append((f"u{u}", f"i{i}"))
    log = pd.DataFrame(rows, columns=["user", "item"])
    log["time"] = rng.permutation(len(log)).astype(float) * 60
    return prepare(log)


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["user"], df["item"], strict=True))


def _partition(frame: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame) -> None:
    assert len(train) + len(test) == len(frame)
    assert _pairs(train) | _pairs(test) == _pairs(frame)
    assert not _pairs(train) & _pairs(test)


@pytest.mark.parametrize(
    ("how", "key"), [("random-by-user", "user"), ("stratified-by-item", "item")]
)
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_random_splits_keep_each_groups_share(frame, how: str, key: str, ratio: float) -> None:
    train, test = split(frame, how, ratio, seed=1)
    _partition(frame, train, test)
    n = frame.groupby(key).size()
    n_train = train.groupby(key).size().reindex(n.index, fill_value=0)
    # Every user (item) keeps at least one training row ...
    assert (n_train >= 1).all()
    # ... and about RATIO of its rows in train.
    assert (np.abs(n_train - ratio * n) <= np.maximum(0.5, 1 - ratio * n) + 1e-9).all()
    assert len(train) / len(frame) == pytest.approx(ratio, abs=0.06)
    # Seeded: the same seed gives the same split, another seed another.
    again, _ = split(frame, how, ratio, seed=1)
    assert _pairs(again) == _pairs(train)
    other, _ = split(frame, how, ratio, seed=2)
    assert _pairs(other) != _pairs(train)


def test_temporal_global_puts_test_after_train(frame) -> None:
    train, test = split(frame, "temporal-global", 0.8)
    _partition(frame, train, test)
    assert test["time"].min() > train["time"].max()
    assert len(train) / len(frame) == pytest.approx(0.8, abs=0.02)
    with pytest.raises(InputError, match="needs --time-col"):
        split(frame.drop(columns="time"), "temporal-global", 0.8)


def test_leave_last_out_tests_each_users_latest_row(frame) -> None:
    train, test = split(frame, "leave-last-out", None)
    _partition(frame, train, test)
    n = frame.groupby("user").size()
    latest = frame.loc[frame.groupby("user")["time"].idxmax()]
    expect = _pairs(latest[latest["user"].isin(n[n >= 2].index)])
    assert _pairs(test) == expect
    assert test["user"].is_unique
    # Users with a single row stay in train.
    assert set(n[n == 1].index) <= set(train["user"])
    assert not set(n[n == 1].index) & set(test["user"])
    # Without times one row per user (with >= 2 rows) is still left out.
    train2, test2 = split(frame.drop(columns="time"), "leave-last-out", None, seed=3)
    assert sorted(test2["user"]) == sorted(n[n >= 2].index)
    _partition(frame.drop(columns="time"), train2, test2)


# -- the harness ------------------------------------------------------------------------------


def planted_log(seed: int = 0) -> pd.DataFrame:
    """Two groups of 30 users, each buying 8 of its own block's 12 items (and now and then one
    of the other block); popular items within each block are bought more often."""
    rng = np.random.default_rng(seed)
    p = np.linspace(2, 1, 12)
    p /= p.sum()
    rows = []
    for g in range(2):
        for u in range(30):
            for i in rng.choice(12, 8, replace=False, p=p) + 12 * g:
                rows.append((f"u{g}{u:02d}", f"i{i:02d}"))
            if rng.random() < 0.3:
                rows.append((f"u{g}{u:02d}", f"i{rng.integers(12) + 12 * (1 - g):02d}"))
    return pd.DataFrame(rows, columns=["user", "item"])


@pytest.fixture(scope="module")
def evaluation():
    return evaluate(
        planted_log(),
        split_spec="random-by-user:0.75",
        models=["pop", "itemknn", "ease", "hybrid"],
        k=5,
        seed=7,
        budget=4,
    )


def test_evaluate_end_to_end(evaluation) -> None:
    ev = evaluation
    assert set(ev.results) == {"popularity", "itemknn", "ease", "hybrid"}
    for r in ev.results.values():
        assert set(METRICS) <= set(r.metrics)
        for key in METRICS:
            assert np.isfinite(r.metrics[key])
        assert r.validation_ndcg is not None
        assert r.tried >= 1
        assert r.fit_seconds >= 0 and r.recommend_seconds >= 0
    assert ev.log["users"] == 60 and ev.log["items"] == 24
    assert ev.log["train"] + ev.log["test"] == ev.log["interactions"]
    assert ev.log["test_users"] == 60 and ev.log["test_users_unknown"] == 0
    # The planted blocks: collaborative models beat popularity on test.
    pop = ev.results["popularity"].metrics
    for name in ("itemknn", "ease", "hybrid"):
        assert ev.results[name].metrics["precision"] > pop["precision"] + 0.1, name
    out = ev.to_json()
    assert out["best"] in ("itemknn", "ease", "hybrid")
    assert set(out["models"]) == set(ev.results)
    assert out["split"] == "random-by-user:0.75" and out["k"] == 5


def test_hybrid_is_not_worse_than_its_components_on_validation(evaluation) -> None:
    """tune_weights starts from the best single component, so on validation the blend is at
    least as good as each component."""
    v = evaluation.results["hybrid"].validation_ndcg
    for name in ("popularity", "itemknn", "ease"):
        assert v >= evaluation.results[name].validation_ndcg - 1e-9, name


def test_tune_weights_starts_from_the_best_component() -> None:
    frame = prepare(planted_log(1))
    train, test = split(frame, "random-by-user", 0.75, seed=3)
    fold = Fold.make(train, test, None)
    comps = {
        "popularity": make("pop").fit(fold.train),
        "itemknn": make("itemknn").fit(fold.train),
        "ease": make("ease").fit(fold.train),
    }
    single = {name: fold.score(m, 5)[0]["ndcg"] for name, m in comps.items()}
    weights, best, tried = tune_weights(comps, fold, 5)
    assert set(weights) == set(comps)
    assert any(weights.values())
    assert tried > len(comps) + 1
    for name, value in single.items():
        assert best >= value - 1e-9, (name, best, value)
    # The reported score is the one the chosen weights give.
    from jingzhun.recommend.models.hybrid import Hybrid

    hybrid = Hybrid.from_components(comps, weights)
    assert fold.score(hybrid, 5)[0]["ndcg"] == pytest.approx(best, abs=1e-9)


def test_evaluate_input_errors() -> None:
    log = planted_log()
    with pytest.raises(InputError, match="unknown model"):
        evaluate(log, models=["pop", "magic"])
    with pytest.raises(InputError, match="--models is empty"):
        evaluate(log, models=[])
    with pytest.raises(InputError, match="needs item features"):
        evaluate(log, models=["content"])
    with pytest.raises(InputError, match="--k"):
        evaluate(log, models=["pop"], k=0)
    with pytest.raises(InputError, match="unknown split"):
        evaluate(log, models=["pop"], split_spec="sideways:0.5")


def test_evaluate_when_no_test_user_is_in_training() -> None:
    # u1's rows are all early, u2's all late: a temporal split trains on u1 and tests on u2.
    log = pd.DataFrame(
        {
            "user": ["u1", "u1", "u1", "u2", "u2", "u2"],
            "item": ["a", "b", "c", "a", "b", "d"],
            "time": [1.0, 2.0, 3.0, 10.0, 11.0, 12.0],
        }
    )
    with pytest.raises(InputError, match=r"no test user .* is also in the training part"):
        evaluate(log, split_spec="temporal-global:0.5", models=["pop"], k=2)
    with pytest.raises(InputError, match="lower --min-rating"):
        evaluate(
            log.assign(rating=[5.0, 5.0, 1.0, 5.0, 5.0, 1.0]),
            split_spec="leave-last-out",
            models=["pop"],
            k=2,
            min_rating=4.0,
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # numpy refuses negative seeds: a ValueError traceback
        ({"seed": -1}, "--seed must be between 0 and 4,294,967,295, not -1"),
        ({"seed": 2**32}, "--seed must be between 0 and 4,294,967,295"),
        ({"seed": 1.5}, "--seed must be a whole number"),
        # a budget of 0 asked the grid for -1 configurations (a traceback)
        ({"budget": 0}, "--budget must be between 1 and 1,000, not 0"),
        ({"budget": 10**20}, "--budget must be between 1 and 1,000, not 2**66 or more"),
        # NaN and infinite thresholds made every test item irrelevant: a misleading error
        ({"min_rating": float("nan")}, "--min-rating must be a finite number, not nan"),
        ({"min_rating": float("inf")}, "--min-rating must be a finite number, not inf"),
    ],
)
def test_evaluate_refuses_numbers_out_of_bounds_before_any_work(options, message) -> None:
    log = planted_log().assign(rating=4.0)
    with pytest.raises(InputError) as err:
        evaluate(log, models=["pop"], k=5, **options)
    assert str(err.value).startswith(message), str(err.value)

"""Recommender models on a small shop with planted structure: two groups of users, each buying
within its own block of items (plus a little noise), and one catalog item nobody touched.

Every model of the registry goes through one contract suite (ranking, filters, cold start,
persistence, parameters); then each model's own maths is checked against a direct computation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from jingzhun.errors import InputError
from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary
from jingzhun.recommend.models import MODELS, Recommender, load
from jingzhun.recommend.models.content import ContentBased
from jingzhun.recommend.models.ease import EASE
from jingzhun.recommend.models.hybrid import Hybrid, rank_normalise
from jingzhun.recommend.models.knn import ItemKNN
from jingzhun.recommend.models.popularity import Popularity

BLOCK = 12  # items per block
PER_GROUP = 30  # users per group
SEEN = 6  # items each user has in their own block
COLD_ITEM = f"i{2 * BLOCK:02d}"  # a tea item in the catalog that nobody touched
ITEM_IDS = [f"i{i:02d}" for i in range(2 * BLOCK + 1)]
K = 5

#: Parameters that suit 60 users x 25 items (ALS with 64 factors memorises a matrix this small).
SMALL_ALS = {"factors": 8, "regularization": 10.0}
PARAMS: dict[str, dict[str, Any]] = {
    "als": SMALL_ALS,
    "bpr": {"factors": 8},
    "hybrid": {"component_params": {"als": SMALL_ALS}},
}
ALL = tuple(MODELS)
PERSONAL = tuple(m for m in MODELS if m != "popularity")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny fits run fastest on one BLAS/OpenMP thread; results do not depend on it."""
    with threadpool_limits(limits=1):
        yield


def block_of(item_id: str) -> int:
    """0 for the tea block (and the cold tea item), 1 for the cookware block."""
    i = int(item_id[1:])
    return 0 if i == 2 * BLOCK else i // BLOCK


def planted_log(seed: int = 0) -> pd.DataFrame:
    """Users u0xx like items i00-i11 (tea), users u1xx like i12-i23 (cookware); weights 1/3/5;
    30% of users also viewed one item of the other block."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(2):
        for u in range(PER_GROUP):
            uid = f"u{g}{u:02d}"
            for i in rng.choice(BLOCK, SEEN, replace=False) + g * BLOCK:
                rows.append((uid, f"i{i:02d}", float(rng.choice([1.0, 3.0, 5.0]))))
            if rng.random() < 0.3:
                rows.append((uid, f"i{rng.integers(BLOCK) + (1 - g) * BLOCK:02d}", 1.0))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])


def catalog(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tea = [block_of(i) == 0 for i in ITEM_IDS]
    n = len(ITEM_IDS)
    return pd.DataFrame(
        {
            "item_id": ITEM_IDS,
            "title": [("green tea " if t else "steel pan ") + str(i) for i, t in enumerate(tea)],
            "description": ["loose leaf tea" if t else "cast iron pan" for t in tea],
            "category": ["tea" if t else "cookware" for t in tea],
            "brand": [
                ("leaf" if i % 2 else "brew") if t else ("iron" if i % 2 else "forge")
                for i, t in enumerate(tea)
            ],
            "price": rng.uniform(5, 50, n).round(2),
            "active": np.ones(n, int),
            "stock": np.full(n, 10),
        }
    )


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(planted_log(), weight_col="weight", items=ITEM_IDS)


@pytest.fixture(scope="module")
def features(data: Interactions) -> ItemFeatures:
    return ItemFeatures.from_frame(catalog(), data.items)


@pytest.fixture(scope="module")
def fitted(data: Interactions, features: ItemFeatures) -> dict[str, Recommender]:
    """Every registry model fitted once on the planted shop."""
    return {
        name: cls(**PARAMS.get(name, {})).fit(data, features=features)
        for name, cls in MODELS.items()
    }


def seen_sets(data: Interactions, users: np.ndarray) -> list[set[str]]:
    rows = data.rows(users)
    return [set(data.items.ids[rows[r].indices]) for r in range(rows.shape[0])]


def history_row(model: Recommender, item_ids: list[str]) -> sp.csr_matrix:
    idx = model.items_.index(item_ids)
    return sp.csr_matrix(
        (np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)),
        shape=(1, len(model.items_)),
    )


# -- the contract, for every model ------------------------------------------------------------


def test_the_registry_holds_every_model() -> None:
    assert set(MODELS) == {
        "popularity",
        "itemknn",
        "userknn",
        "als",
        "bpr",
        "ease",
        "content",
        "hybrid",
    }


@pytest.mark.parametrize("name", ALL)
def test_batch_gives_k_unseen_items_best_first(fitted, data, name: str) -> None:
    model = fitted[name]
    users = data.users.ids
    recs = model.recommend(users, K)
    assert recs.items.shape == recs.scores.shape == recs.index.shape == (len(users), K)
    assert list(recs.users) == list(users)
    assert not recs.cold.any()
    assert all(x is not None for x in recs.items.ravel())
    assert (recs.index >= 0).all()
    assert np.isfinite(recs.scores).all()
    # Best first: scores never increase along a row.
    assert (np.diff(recs.scores, axis=1) <= 1e-6).all()
    for row, seen in zip(recs.items, seen_sets(data, users), strict=True):
        assert len(set(row)) == K
        assert not set(row) & seen
    # Ids and indices agree.
    assert (model.items_.ids[recs.index] == recs.items).all()


@pytest.mark.parametrize("name", ALL)
def test_k_past_the_candidates_pads_and_never_repeats_seen_items(fitted, data, name: str) -> None:
    """With k as large as the catalog, a user's row holds every unseen item once, then
    empty slots (None / -1 / NaN): never a seen item to fill the row."""
    model = fitted[name]
    users = data.users.ids
    recs = model.recommend(users, len(ITEM_IDS))
    for r, seen in enumerate(seen_sets(data, users)):
        n_free = len(ITEM_IDS) - len(seen)
        row = recs.items[r]
        assert set(row[:n_free]) == set(ITEM_IDS) - seen
        assert all(x is None for x in row[n_free:])
        assert (recs.index[r, n_free:] == -1).all()
        assert np.isnan(recs.scores[r, n_free:]).all()


@pytest.mark.parametrize("name", ALL)
def test_exclude_seen_false_may_return_seen_items(fitted, data, name: str) -> None:
    model = fitted[name]
    users = data.users.ids
    recs = model.recommend(users, len(ITEM_IDS), exclude_seen=False)
    # With every item allowed, each user's whole catalog is ranked, seen items included.
    for row, seen in zip(recs.items, seen_sets(data, users), strict=True):
        assert seen <= set(row)


@pytest.mark.parametrize("name", ALL)
def test_filter_items_and_exclude_are_never_recommended(fitted, data, name: str) -> None:
    model = fitted[name]
    users = data.users.ids
    banned = ["i00", "i01", "i02", "i03", "i12", "i13", "i14", "i15"]
    # Per-user exclusions: the first user may not get i04, the others i16.
    more = sp.lil_matrix((len(users), len(model.items_)), dtype=np.float32)
    more[0, model.items_.index("i04")[0]] = 1
    more[1:, model.items_.index("i16")[0]] = 1
    recs = model.recommend(users, K, filter_items=banned, exclude=sp.csr_matrix(more))
    got = recs.items
    assert all(x is not None for x in got.ravel())
    assert not set(got.ravel()) & set(banned)
    assert "i04" not in set(got[0])
    assert "i16" not in set(got[1:].ravel())
    for row, seen in zip(got, seen_sets(data, users), strict=True):
        assert not set(row) & seen


@pytest.mark.parametrize("name", ALL)
def test_items_restricts_the_candidates(fitted, data, name: str) -> None:
    model = fitted[name]
    users = data.users.ids
    allowed = ["i05", "i06", "i07", "i08", "i17", "i18", "i19", "i20", "nope"]
    recs = model.recommend(users, 3, items=allowed)
    seen = seen_sets(data, users)
    for row, s in zip(recs.items, seen, strict=True):
        assert all(x is not None for x in row)
        assert set(row) <= set(allowed) - s
    # Fewer candidates than k: the row is padded with None / -1 / NaN.
    few = model.recommend(users[:3], K, items=["i05", "i17"], exclude_seen=False)
    assert (few.index[:, 2:] == -1).all()
    assert all(x is None for x in few.items[:, 2:].ravel())
    assert np.isnan(few.scores[:, 2:]).all()
    assert {set(r[:2]) == {"i05", "i17"} for r in few.items} == {True}


@pytest.mark.parametrize("name", ALL)
def test_single_user_call_matches_the_batch(fitted, data, name: str) -> None:
    model = fitted[name]
    users = data.users.ids
    batch = model.recommend(users, K)
    for pos in (0, len(users) - 1):
        one = model.recommend(str(users[pos]), K)
        assert one.items.shape == (1, K)
        assert list(one.users) == [users[pos]]
        np.testing.assert_allclose(one.scores[0], batch.scores[pos], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_unknown_user_is_cold_not_an_error(fitted, data, name: str) -> None:
    model = fitted[name]
    known = str(data.users.ids[0])
    recs = model.recommend(["nobody", known], K)
    assert recs.cold.tolist() == [True, False]
    assert all(x is not None for x in recs.items[0])
    assert len(set(recs.items[0])) == K


@pytest.mark.parametrize("name", ALL)
def test_history_row_folds_a_new_user_in(fitted, name: str) -> None:
    model = fitted[name]
    history = ["i00", "i01", "i02", "i03"]
    recs = model.recommend(["newcomer"], K, history=history_row(model, history))
    assert not recs.cold[0]
    assert not set(recs.items[0]) & set(history)
    if name != "popularity":
        # The first events are all tea: a personal model now recommends mostly tea.
        assert sum(block_of(x) == 0 for x in recs.items[0]) >= 4, recs.items[0]


@pytest.mark.parametrize("name", ALL)
def test_history_of_wrong_shape_is_an_input_error(fitted, name: str) -> None:
    model = fitted[name]
    with pytest.raises(InputError, match="history"):
        model.recommend(["a", "b"], K, history=sp.csr_matrix((1, len(model.items_))))


@pytest.mark.parametrize("name", ALL)
def test_bad_k_is_an_input_error(fitted, name: str) -> None:
    for k in (0, -1, 2.5):
        with pytest.raises(InputError, match="k"):
            fitted[name].recommend(["u000"], k)


@pytest.mark.parametrize("name", ALL)
def test_save_then_load_gives_identical_recommendations(
    fitted, data, tmp_path: Path, name: str
) -> None:
    model = fitted[name]
    path = model.save(tmp_path / "sub" / f"{name}.npz")
    assert path.is_file()
    assert not (tmp_path / "sub" / f"{name}.npz.tmp").exists()
    # No pickled objects in the file.
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    back = load(path)
    assert type(back) is type(model)
    assert back.params == model.params
    users = np.r_[data.users.ids, ["nobody"]]
    a, b = model.recommend(users, K), back.recommend(users, K)
    assert (a.items == b.items).all()
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.cold, b.cold)
    h = history_row(model, ["i12", "i13", "i14"])
    a, b = model.recommend(["new"], K, history=h), back.recommend(["new"], K, history=h)
    assert (a.items == b.items).all()
    sa, sb = model.similar_items(["i00", "i12"], 4), back.similar_items(["i00", "i12"], 4)
    assert (sa[0] == sb[0]).all()


def test_loading_a_file_that_is_not_a_model_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    with pytest.raises(InputError, match="not a saved jingzhun model"):
        load(bad)


@pytest.mark.parametrize("name", ALL)
def test_similar_items_gives_k_other_items(fitted, name: str) -> None:
    model = fitted[name]
    queries = ["i00", "i13", "nope"]
    ids, scores = model.similar_items(queries, 4)
    assert ids.shape == scores.shape == (3, 4)
    for q, row in zip(queries[:2], ids[:2], strict=True):
        assert all(x is not None for x in row)
        assert q not in set(row)
        assert len(set(row)) == 4
    assert (np.diff(scores[:2], axis=1) <= 1e-6).all()
    # An unknown item gets an empty row.
    assert all(x is None for x in ids[2])
    one, _ = model.similar_items("i00", 4)
    assert one.shape == (1, 4)


@pytest.mark.parametrize("name", PERSONAL)
def test_similar_items_stay_in_the_block(fitted, name: str) -> None:
    ids, _ = fitted[name].similar_items(["i00", "i13"], 3)
    assert sum(block_of(x) == 0 for x in ids[0]) >= 2
    assert sum(block_of(x) == 1 for x in ids[1]) >= 2


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter_lists_the_valid_ones(name: str) -> None:
    cls = MODELS[name]
    with pytest.raises(InputError) as err:
        cls(no_such_param=1)
    text = str(err.value)
    assert "no_such_param" in text
    assert err.value.hint is not None
    for p in cls.PARAMS:
        assert p in err.value.hint


@pytest.mark.parametrize("name", ALL)
def test_out_of_range_parameter_is_an_input_error(name: str) -> None:
    cls = MODELS[name]
    pname, p = next((k, p) for k, p in cls.PARAMS.items() if p.low is not None)
    with pytest.raises(InputError, match=pname):
        cls(**{pname: p.kind(p.low - 1)})
    if p.high is not None:
        with pytest.raises(InputError, match=f"{pname} must be between"):
            cls(**{pname: p.kind(p.high * 2 + 1)})
    # The bounds themselves are fine.
    cls(**{pname: p.kind(p.low)})


def test_non_numeric_and_bad_choice_parameters_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"l2 must be a number .*, not 'lots'"):
        EASE(l2="lots")
    with pytest.raises(InputError, match="l2 must be a finite number"):
        EASE(l2=float("nan"))
    with pytest.raises(InputError, match="users, weight"):
        Popularity(by="clicks")
    with pytest.raises(InputError, match="cosine, bm25"):
        ItemKNN(similarity="jaccard")
    with pytest.raises(InputError, match="unknown component"):
        Hybrid(components="als,magic")
    with pytest.raises(InputError, match="not a component"):
        Hybrid(components="als,popularity", weights="ease:1")
    with pytest.raises(InputError, match="JSON"):
        Hybrid(component_params="{als")


@pytest.mark.parametrize("name", ALL)
def test_fitting_on_an_empty_matrix_is_an_input_error(features, name: str) -> None:
    empty = Interactions(
        sp.csr_matrix((3, len(ITEM_IDS)), dtype=np.float32),
        Vocabulary(["a", "b", "c"]),
        Vocabulary(ITEM_IDS),
    )
    with pytest.raises(InputError, match="no interactions"):
        MODELS[name](**PARAMS.get(name, {})).fit(empty, features=features)


@pytest.mark.parametrize("name", ALL)
def test_an_unfitted_model_is_an_input_error(name: str) -> None:
    with pytest.raises(InputError, match="not fitted"):
        MODELS[name](**PARAMS.get(name, {})).recommend(["u000"], K)


def test_content_models_need_features(data) -> None:
    with pytest.raises(InputError, match="features"):
        ContentBased().fit(data)
    with pytest.raises(InputError, match="features"):
        Hybrid(components="itemknn,content").fit(data)


# -- planted structure ------------------------------------------------------------------------


def _full_ranking(model: Recommender, data: Interactions) -> list[list[str]]:
    """Every user's ranking of all unseen items of the two blocks (the cold item left out).

    Seen items are dropped here too, so that this test is about the planted structure only
    (whether k past the candidates pads correctly is the filter tests' business)."""
    users = data.users.ids
    recs = model.recommend(users, len(ITEM_IDS), filter_items=[COLD_ITEM]).items
    return [
        [x for x in row if x is not None and x not in seen and x != COLD_ITEM]
        for row, seen in zip(recs, seen_sets(data, users), strict=True)
    ]


@pytest.mark.parametrize("name", PERSONAL)
def test_each_user_ranks_their_own_block_above_the_other(fitted, data, name: str) -> None:
    ranking = _full_ranking(fitted[name], data)
    gaps = []
    for user, row in zip(data.users.ids, ranking, strict=True):
        own = int(user[1])
        ids = row
        pos_own = [r for r, x in enumerate(ids) if block_of(x) == own]
        pos_other = [r for r, x in enumerate(ids) if block_of(x) != own]
        gaps.append(np.mean(pos_other) - np.mean(pos_own))
    gaps = np.asarray(gaps)
    assert gaps.mean() > 3, gaps.mean()
    assert (gaps > 0).mean() >= 0.9, (gaps > 0).mean()


def _precision(model: Recommender, data: Interactions) -> float:
    """Precision@K against the planted truth: the unseen items of the user's own block."""
    recs = model.recommend(data.users.ids, K, filter_items=[COLD_ITEM]).items
    own = np.asarray([int(u[1]) for u in data.users.ids])
    return float(
        np.mean([[block_of(x) == o for x in row] for row, o in zip(recs, own, strict=True)])
    )


@pytest.mark.parametrize("name", ["itemknn", "als", "ease"])
def test_cf_precision_is_far_above_popularity(fitted, data, name: str) -> None:
    base = _precision(fitted["popularity"], data)
    p = _precision(fitted[name], data)
    assert base < 0.7
    assert p >= 0.9
    assert p - base >= 0.3


def test_als_fold_in_matches_the_trained_user_factors(fitted, data) -> None:
    """A new user with exactly a training user's history gets (nearly) that user's list."""
    model = fitted["als"]
    users = data.users.ids
    trained = model.recommend(users, K)
    folded = model.recommend(
        np.asarray([f"new-{u}" for u in users], dtype=object), K, history=data.rows(users)
    )
    assert not folded.cold.any()
    overlap = [len(set(a) & set(b)) for a, b in zip(trained.items, folded.items, strict=True)]
    assert np.mean(overlap) >= 4.5


# -- EASE -------------------------------------------------------------------------------------


def _tiny() -> Interactions:
    x = np.array(
        [
            [1, 1, 0, 0, 3],
            [0, 1, 1, 0, 0],
            [1, 0, 1, 1, 0],
            [5, 1, 0, 1, 1],
            [0, 0, 1, 1, 1],
            [1, 1, 1, 0, 0],
        ],
        dtype=np.float32,
    )
    return Interactions(
        sp.csr_matrix(x),
        Vocabulary([f"u{i}" for i in range(x.shape[0])]),
        Vocabulary([f"t{j}" for j in range(x.shape[1])]),
    )


@pytest.mark.parametrize("binary", [1, 0])
def test_ease_matches_the_closed_form(binary: int) -> None:
    tiny = _tiny()
    lam = 2.5
    model = EASE(l2=lam, binary=binary).fit(tiny)
    x = tiny.matrix.toarray().astype(np.float64)
    if binary:
        x = (x > 0).astype(np.float64)
    n = x.shape[1]
    p = np.linalg.inv(x.T @ x + lam * np.eye(n))
    b = np.eye(n) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.b_, b, rtol=1e-4, atol=1e-6)
    assert (np.diag(model.b_) == 0).all()
    # The same B by another road: each column is a ridge regression on the other items.
    for j in range(n):
        others = [i for i in range(n) if i != j]
        xo = x[:, others]
        coef = np.linalg.solve(xo.T @ xo + lam * np.eye(n - 1), xo.T @ x[:, j])
        np.testing.assert_allclose(model.b_[others, j], coef, rtol=1e-4, atol=1e-6)
    # Scores are X B (the seen items are the only ones left out).
    recs = model.recommend(["u1"], 3)
    expect = x[1] @ b
    unseen = np.flatnonzero(x[1] == 0)
    best = unseen[np.argsort(-expect[unseen], kind="stable")]
    np.testing.assert_allclose(recs.scores[0], expect[best][:3], rtol=1e-4, atol=1e-6)


def test_ease_refuses_more_items_than_max_items() -> None:
    with pytest.raises(InputError, match="max_items"):
        EASE(max_items=4).fit(_tiny())
    EASE(max_items=5).fit(_tiny())


# -- content ----------------------------------------------------------------------------------


def test_content_category_vector_is_the_weighted_category_share(fitted, data, features) -> None:
    model = fitted["content"]
    assert isinstance(model, ContentBased)
    users = data.users.ids
    rows = data.rows(users)
    vec = model.user_vectors(rows)["category"].toarray()
    names = list(model.names_["category"])
    assert sorted(names) == ["cookware", "tea"]
    log = planted_log()
    log["category"] = log["item_id"].map(dict(zip(ITEM_IDS, features.category, strict=True)))
    share = log.pivot_table(
        index="user_id", columns="category", values="weight", aggfunc="sum", fill_value=0.0
    )
    share = share.div(share.sum(axis=1), axis=0).reindex(index=users, columns=names).fillna(0.0)
    np.testing.assert_allclose(vec, share.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vec.sum(axis=1), 1.0, rtol=1e-5)


def test_content_reaches_an_item_nobody_touched(fitted, data) -> None:
    """The cold tea item shares category and brand with tea lovers' items: content ranks it
    above every cookware item for each tea user."""
    model = fitted["content"]
    assert data.matrix[:, data.items.index(COLD_ITEM)[0]].nnz == 0
    tea_users = [u for u in data.users.ids if u.startswith("u0")]
    ranking = model.recommend(tea_users, len(ITEM_IDS)).items
    for row in ranking:
        ids = [x for x in row if x is not None]
        assert COLD_ITEM in ids
        first_cookware = min(r for r, x in enumerate(ids) if block_of(x) == 1)
        assert ids.index(COLD_ITEM) < first_cookware
    # Among the tea users' top few, the new item shows up for someone.
    top = model.recommend(tea_users, K).items
    assert (top == COLD_ITEM).any()
    # A collaborative model cannot know it: it never scores above the tea items.
    knn_top = fitted["itemknn"].recommend(tea_users, K).items
    assert not (knn_top == COLD_ITEM).any()


# -- popularity with segments -----------------------------------------------------------------


def test_a_users_segment_gets_the_segments_favourites(data) -> None:
    groups = np.asarray(["tea" if u.startswith("u0") else "pan" for u in data.users.ids])
    model = Popularity().fit(data, groups=groups)
    assert list(model.groups_) == ["pan", "tea"]
    users = np.asarray(["u000", "u100", "stranger", "stranger2"], dtype=object)
    recs = model.recommend(users, K, groups=np.asarray(["tea", "pan", "tea", "pan"]))
    assert all(block_of(x) == 0 for x in recs.items[0])
    assert all(block_of(x) == 1 for x in recs.items[1])
    assert all(block_of(x) == 0 for x in recs.items[2])
    assert all(block_of(x) == 1 for x in recs.items[3])
    # Without a segment (or with one it does not know) the ranking is the global one.
    plain = model.recommend(["u000", "u000"], K, groups=np.asarray(["", "nope"], dtype=object))
    glob = model.recommend(["u000"], K)
    assert (plain.items == glob.items[0]).all()
    # Segments survive save / load through the groups.
    assert np.allclose(model.by_group_.sum(axis=1), 1.0)


def test_shrinkage_pulls_a_tiny_segment_toward_the_global_ranking(tmp_path: Path) -> None:
    rows = [(f"big{u}", f"a{i}") for u in range(20) for i in range(4)]
    rows += [("tiny0", f"b{i}") for i in range(4)]
    log = pd.DataFrame(rows, columns=["user_id", "item_id"])
    data = Interactions.from_frame(log)
    groups = np.asarray(["tiny" if u.startswith("tiny") else "big" for u in data.users.ids])
    distances = []
    for s in (0.0, 1.0, 10.0, 1000.0):
        model = Popularity(shrinkage=s).fit(data, groups=groups)
        tiny = model.by_group_[list(model.groups_).index("tiny")]
        share = np.asarray([0.25 if i.startswith("b") else 0.0 for i in data.items.ids])
        lam = 1 / (1 + s)
        np.testing.assert_allclose(tiny, lam * share + (1 - lam) * model.global_, atol=1e-6)
        distances.append(np.abs(tiny - model.global_).sum())
        top = model.recommend(["x"], 4, groups=np.asarray(["tiny"])).items[0]
        if s == 0.0:
            assert {x[0] for x in top} == {"b"}
        if s == 1000.0:
            assert {x[0] for x in top} == {"a"}
    assert all(a > b for a, b in itertools.pairwise(distances))
    back = load(model.save(tmp_path / "pop.npz"))
    again = back.recommend(["x"], 4, groups=np.asarray(["tiny"])).items
    assert (again == top).all()


# -- hybrid -----------------------------------------------------------------------------------


def test_rank_normalise_values() -> None:
    s = np.array(
        [
            [0.1, 0.5, np.nan, 0.3],
            [np.nan, np.nan, np.nan, np.nan],
            [-5.0, -np.inf, 2.0, 1.0],
        ],
        dtype=np.float32,
    )
    out = rank_normalise(s, 2)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(out[1], 0.0)
    np.testing.assert_allclose(out[2], [0.0, 0.0, 1.0, 0.5])
    deep = rank_normalise(s, 10)
    np.testing.assert_allclose(deep[0], [0.8, 1.0, 0.0, 0.9])
    np.testing.assert_allclose(deep[2], [0.8, 0.0, 1.0, 0.9])
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    "weights", ["als:nan", "als:inf", "als:-inf", "als:NaN,pop:1", "als:-1", "als:0,pop:0"]
)
def test_hybrid_weights_must_be_finite_and_not_negative(weights: str) -> None:
    """Issue 12: als:nan passed (NaN fails every comparison) and the active model then
    recommended nothing."""
    with pytest.raises(InputError, match="hybrid: weight"):
        Hybrid(components="als,popularity", weights=weights.replace("pop:", "popularity:"))


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e400, "1e999"])
def test_integer_parameters_refuse_infinities(value: object) -> None:
    with pytest.raises(InputError, match="factors"):
        MODELS["als"](factors=value)


def _kth_best(values: np.ndarray, banned: set[int], k: int) -> float:
    ok = np.asarray([v for i, v in enumerate(values) if i not in banned])
    return float(np.sort(ok)[::-1][k - 1])


def test_hybrid_from_components_uses_the_given_weights(fitted, data, tmp_path: Path) -> None:
    knn, pop = fitted["itemknn"], fitted["popularity"]
    users = data.users.ids
    rows = data.rows(users)
    knn_scores = knn._scores(rows, knn.users_.index(users), None)
    for weights, ref in (
        ({"itemknn": 1.0, "popularity": 0.0}, knn_scores),
        ({"itemknn": 0.0, "popularity": 1.0}, np.tile(pop.global_, (len(users), 1))),
    ):
        hybrid = Hybrid.from_components({"itemknn": knn, "popularity": pop}, weights)
        assert hybrid.weights == weights
        assert hybrid.components["itemknn"] is knn
        assert hybrid.components["popularity"] is pop
        recs = hybrid.recommend(users, K)
        for r, row in enumerate(recs.index):
            seen = set(rows[r].indices)
            assert not set(row) & seen
            # Every pick is among the k best of the weighted component (ties allowed).
            assert ref[r, row].min() >= _kth_best(ref[r], seen, K) - 1e-6
        back = load(hybrid.save(tmp_path / "hybrid.npz"))
        assert isinstance(back, Hybrid)
        assert back.weights == weights
        assert (back.recommend(users, K).items == recs.items).all()
    hybrid.set_weights({"itemknn": 2.0})
    assert hybrid.weights == {"itemknn": 2.0, "popularity": 0.0}
    assert hybrid.params["weights"] == "itemknn:2,popularity:0"


def test_hybrid_gives_a_user_without_history_popularity(fitted) -> None:
    hybrid = fitted["hybrid"]
    assert isinstance(hybrid, Hybrid)
    assert set(hybrid.components) == {"als", "itemknn", "content", "popularity"}
    recs = hybrid.recommend(["nobody", "u000"], K)
    assert recs.cold.tolist() == [True, False]
    glob = hybrid.components["popularity"].global_
    picked = glob[recs.index[0]]
    assert picked.min() >= np.sort(glob)[::-1][K - 1] - 1e-9
    # With first events the user is no longer cold and the list turns personal.
    warm = hybrid.recommend(["nobody"], K, history=history_row(hybrid, ["i12", "i13", "i14"]))
    assert not warm.cold[0]
    assert sum(block_of(x) == 1 for x in warm.items[0]) >= 4


# -- vocabulary and interactions --------------------------------------------------------------


def test_vocabulary_maps_ids_and_unknown_ids_to_minus_one() -> None:
    voc = Vocabulary(["b", "a", "c"])
    assert len(voc) == 3
    assert voc.index(["a", "zz", "c", "b"]).tolist() == [1, -1, 2, 0]
    assert voc.index("c").tolist() == [2]
    assert voc.index(np.asarray(["nope"], dtype=object)).tolist() == [-1]
    assert "a" in voc and "zz" not in voc
    assert voc.index([]).tolist() == []


def test_vocabulary_refuses_duplicate_ids() -> None:
    with pytest.raises(InputError, match="'a' appears twice"):
        Vocabulary(["a", "b", "a"])


def test_interactions_from_frame_keeps_catalog_items_and_adds_repeats() -> None:
    log = pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u1", "u2", "u1"],
            "item_id": ["x", "y", "x", "x", "new"],
            "w": [1.0, 2.0, 3.0, 4.0, 1.0],
        }
    )
    data = Interactions.from_frame(log, weight_col="w", items=["z", "y", "x"])
    # The catalog order first, then items outside it (sorted).
    assert data.items.ids.tolist() == ["z", "y", "x", "new"]
    assert data.users.ids.tolist() == ["u1", "u2"]
    dense = data.matrix.toarray()
    np.testing.assert_array_equal(dense, [[0, 2, 3, 1], [0, 0, 5, 0]])
    assert data.matrix.dtype == np.float32
    assert data.nnz == 4
    # A catalog item nobody touched has an empty column but a place.
    assert data.matrix[:, 0].nnz == 0
    np.testing.assert_allclose(data.item_popularity(), [0.0, 0.5, 1.0, 0.5])
    rows = data.rows(["u2", "ghost", "u1"]).toarray()
    np.testing.assert_array_equal(rows, [dense[1], np.zeros(4), dense[0]])
    np.testing.assert_array_equal(data.row_of_items(["x", "ghost", "z"]).toarray(), [[1, 0, 1, 0]])
    frame = data.to_frame()
    assert len(frame) == 4 and frame["weight"].sum() == 11.0


def test_interactions_purchased_flags_and_missing_columns() -> None:
    log = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "item_id": ["x", "x", "y", "y"],
            "bought": [True, True, False, True],
        }
    )
    data = Interactions.from_frame(log, purchased_col="bought")
    assert data.purchased is not None
    np.testing.assert_array_equal(data.purchased.toarray(), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(data.matrix.toarray(), [[2, 1], [0, 1]])
    with pytest.raises(InputError, match="no column 'item_id'") as err:
        Interactions.from_frame(log.rename(columns={"item_id": "sku"}))
    assert "user_id, sku, bought" in str(err.value)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_models_keep_stored_factors_only_for_an_unchanged_history(
    fitted, data, name: str
) -> None:
    """A training user's stored factors are used when the given history is their training
    row; a changed history is folded in; empty rows anywhere in the batch (the last one
    included) take the cold path."""
    model = fitted[name]
    users = data.users.ids[:4].astype(object)
    same = data.rows(users[:2])
    changed = data.rows(users[2:3])
    changed = sp.csr_matrix(changed.multiply(0.5))  # same items, other weights
    empty = sp.csr_matrix((1, data.n_items), dtype=np.float32)
    history = sp.vstack([same, changed, empty]).tocsr()
    given = model.recommend(users, 5, history=history)
    plain = model.recommend(users, 5)
    assert (given.items[:2] == plain.items[:2]).all()
    assert given.cold.tolist() == [False, False, False, True]
    vectors, ok = model._user_vectors(history, data.users.index(users))
    assert ok.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(vectors[:2], model.user_factors_[data.users.index(users[:2])])
    assert not np.allclose(vectors[2], model.user_factors_[data.users.index(users[2:3])][0])


# -- numbers through the one parameter check (issue 12) ----------------------------------------


@pytest.mark.parametrize(
    ("name", "param", "value", "message"),
    [
        # a whole-number parameter took 1.5 as 1 and true as 1, without a word
        ("als", "factors", 1.5, "als: factors must be a whole number between 1 and 1,024, not 1.5"),
        (
            "als",
            "factors",
            True,
            "als: factors must be a whole number between 1 and 1,024, not True",
        ),
        ("als", "factors", "64.5", "als: factors must be a whole number"),
        ("hybrid", "depth", float("nan"), "hybrid: depth must be a whole number"),
        ("bpr", "random_state", -1, "bpr: random_state must be between 0 and"),
        # every real-number parameter: finite and within its range
        ("als", "regularization", float("nan"), "als: regularization must be a finite number"),
        ("als", "alpha", "inf", "als: alpha must be a finite number between 0 and 1,000,000"),
        ("ease", "l2", float("-inf"), "ease: l2 must be a finite number"),
        ("popularity", "shrinkage", -1.0, "popularity: shrinkage must be between 0 and"),
        ("itemknn", "bm25_b", 1.5, "itemknn: bm25_b must be between 0 and 1, not 1.5"),
        ("content", "beta_text", True, "content: beta_text must be a number"),
    ],
)
def test_numeric_parameters_go_through_the_shared_checks(
    name: str, param: str, value: object, message: str
) -> None:
    with pytest.raises(InputError) as err:
        MODELS[name](**{param: value})
    assert str(err.value).startswith(message), str(err.value)


def test_numeric_parameters_given_as_text_or_whole_floats_are_read_as_numbers() -> None:
    """Settings and --param may give '64' or 64.0: read as the number they are."""
    model = MODELS["als"](factors="16", regularization="0.5", iterations=20.0)
    assert model.params["factors"] == 16 and isinstance(model.params["factors"], int)
    assert model.params["regularization"] == 0.5
    assert model.params["iterations"] == 20 and isinstance(model.params["iterations"], int)


@pytest.mark.parametrize("weight", ["nan", "inf", "-1", "1e400", "-0.5"])
def test_a_hybrid_weight_names_the_component_and_the_allowed_range(weight: str) -> None:
    with pytest.raises(InputError) as err:
        Hybrid(components="als,popularity", weights=f"popularity:1,als:{weight}")
    assert str(err.value).startswith("hybrid: weight of als must be"), str(err.value)

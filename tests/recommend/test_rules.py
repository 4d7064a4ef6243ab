"""Business rules: the item mask, purchase exclusions, the re-rank (boost, cap per category),
reason codes from a real item-kNN model and their sentences in English and Chinese."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary
from jingzhun.recommend.models.knn import ItemKNN
from jingzhun.recommend.rules import Rules, explain, reason_text, top_history

MASK_ITEMS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def mask_features() -> ItemFeatures:
    """a: tea 5 on sale; b: tea 20 inactive; c: pan 30 out of stock; d: pan 50, stock unknown;
    e: cup, price unknown; f: not in the catalog at all."""
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "title": ["A", "B", "C", "D", "E"],
            "description": ["", "", "", "", ""],
            "category": ["tea", "tea", "pan", "pan", "cup"],
            "brand": ["x", "x", "y", "y", "z"],
            "price": [5.0, 20.0, 30.0, 50.0, np.nan],
            "active": [1, 0, 1, 1, 1],
            "stock": [10, 10, 0, np.nan, 5],
        }
    )
    return ItemFeatures.from_frame(frame, Vocabulary(MASK_ITEMS))


def _allowed(rules: Rules, feats: ItemFeatures) -> list[str]:
    mask = rules.item_mask(feats, len(MASK_ITEMS))
    if mask is None:
        return list(MASK_ITEMS)
    return [i for i, ok in zip(MASK_ITEMS, mask, strict=True) if ok]


def test_item_mask_honours_each_rule(mask_features) -> None:
    f = mask_features
    assert f.available.tolist() == [True, False, False, True, True, True]
    assert _allowed(Rules(), f) == ["a", "d", "e", "f"]
    # Nothing to filter: None (all items).
    assert Rules(only_available=False).item_mask(f, 6) is None
    assert Rules().item_mask(None, 6) is None
    off = {"only_available": False}
    assert _allowed(Rules(**off, include_categories=("tea", "cup")), f) == ["a", "b", "e"]
    assert _allowed(Rules(**off, exclude_categories=("pan",)), f) == ["a", "b", "e", "f"]
    # A price range; an unknown price is not filtered out.
    assert _allowed(Rules(**off, price_min=10, price_max=40), f) == ["b", "c", "e", "f"]
    assert _allowed(Rules(**off, price_min=20), f) == ["b", "c", "d", "e", "f"]
    assert _allowed(Rules(**off, price_max=20), f) == ["a", "b", "e", "f"]
    # Rules combine.
    combined = Rules(include_categories=("tea", "pan"), price_max=45)
    assert _allowed(combined, f) == ["a"]


def test_exclusions_leave_out_purchases_except_rebuy_categories(mask_features) -> None:
    purchased = sp.csr_matrix(np.array([[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 0]], dtype=np.float32))
    plain = Rules().exclusions(purchased, mask_features)
    assert plain is not None
    np.testing.assert_array_equal(plain.toarray(), purchased.toarray())
    rebuy = Rules(rebuy_categories=("tea",)).exclusions(purchased, mask_features)
    assert rebuy is not None
    np.testing.assert_array_equal(rebuy.toarray(), [[0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]])
    assert rebuy.nnz == 3  # the zeroed tea purchases are gone, not stored zeros
    assert Rules(exclude_purchased=False).exclusions(purchased, mask_features) is None
    assert Rules().exclusions(None, mask_features) is None


# -- re-rank ----------------------------------------------------------------------------------

#: 10 items in 3 categories.
RERANK_CATS = ["tea", "tea", "tea", "tea", "pan", "pan", "pan", "cup", "cup", "cup"]
RERANK_ITEMS = np.asarray([f"r{i}" for i in range(len(RERANK_CATS))])


@pytest.fixture(scope="module")
def rerank_features() -> ItemFeatures:
    frame = pd.DataFrame(
        {"item_id": RERANK_ITEMS, "category": RERANK_CATS, "price": np.arange(10.0)}
    )
    return ItemFeatures.from_frame(frame, Vocabulary(RERANK_ITEMS))


def _capped(row: list[int], cap: int, k: int) -> list[int]:
    """The re-rank by hand: walk the candidates in order, keep at most ``cap`` per category."""
    count: dict[str, int] = {}
    out = []
    for i in row:
        if i < 0:
            continue
        c = RERANK_CATS[i]
        if count.get(c, 0) < cap:
            count[c] = count.get(c, 0) + 1
            out.append(i)
    out = out[:k]
    return out + [-1] * (k - len(out))


def test_rerank_caps_items_per_category_and_keeps_order(rerank_features) -> None:
    rng = np.random.default_rng(3)
    cands = np.stack([rng.permutation(10) for _ in range(20)])
    cands[3, 7:] = -1  # a short candidate list
    scores = -np.arange(10, dtype=np.float64)[None, :].repeat(20, axis=0)
    scores[cands < 0] = np.nan
    for cap in (1, 2, 3):
        idx, val = Rules(max_per_category=cap).rerank(
            cands, scores, 5, rerank_features, RERANK_ITEMS
        )
        assert idx.shape == val.shape == (20, 5)
        for r in range(20):
            expect = _capped(cands[r].tolist(), cap, 5)
            assert idx[r].tolist() == expect
            # Scores travel with their items.
            pos = {int(i): p for p, i in enumerate(cands[r])}
            for i, v in zip(idx[r], val[r], strict=True):
                if i >= 0:
                    assert v == scores[r, pos[int(i)]]
                else:
                    assert np.isnan(v)
    # With cap 1 there are only 3 categories: the other slots are empty.
    idx, _ = Rules(max_per_category=1).rerank(cands, scores, 5, rerank_features, RERANK_ITEMS)
    assert (idx[:, 3:] == -1).all()
    # No cap (or no features): just the first k.
    idx, _ = Rules(max_per_category=None).rerank(cands, scores, 4, rerank_features, RERANK_ITEMS)
    np.testing.assert_array_equal(idx, cands[:, :4])
    idx, _ = Rules(max_per_category=2).rerank(cands, scores, 4, None, RERANK_ITEMS)
    np.testing.assert_array_equal(idx, cands[:, :4])
    # Asking for more than the candidates pads.
    idx, val = Rules(max_per_category=None).rerank(
        cands[:1], scores[:1], 12, rerank_features, RERANK_ITEMS
    )
    assert idx[0, :10].tolist() == cands[0].tolist()
    assert idx[0, 10:].tolist() == [-1, -1]
    assert np.isnan(val[0, 10:]).all()


def test_rerank_input_is_left_untouched(rerank_features) -> None:
    cands = np.arange(10)[None, :]
    scores = np.linspace(1, 0, 10)[None, :]
    before = cands.copy(), scores.copy()
    Rules(max_per_category=1, boost={"r9": 5.0}).rerank(
        cands, scores, 3, rerank_features, RERANK_ITEMS
    )
    np.testing.assert_array_equal(cands, before[0])
    np.testing.assert_array_equal(scores, before[1])


def test_boost_lifts_a_boosted_item(rerank_features) -> None:
    cands = np.asarray([[0, 4, 7, 1, 5, 8]])  # tea, pan, cup, tea, pan, cup
    scores = np.asarray([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    plain = {"max_per_category": None}
    # r1 is 4th of 6 (rank key 3); boost 3 -> key 9, above the first (key 6).
    idx, val = Rules(**plain, boost={"r1": 3.0}).rerank(
        cands, scores, 6, rerank_features, RERANK_ITEMS
    )
    assert idx[0].tolist() == [1, 0, 4, 7, 5, 8]
    assert val[0].tolist() == [3.0, 6.0, 5.0, 4.0, 2.0, 1.0]
    # Boost 1.5 -> key 4.5: past the 3rd (key 4), not the 2nd (key 5).
    idx, _ = Rules(**plain, boost={"r1": 1.5}).rerank(
        cands, scores, 6, rerank_features, RERANK_ITEMS
    )
    assert idx[0].tolist() == [0, 4, 1, 7, 5, 8]
    # A boost below 1 demotes; an unknown item in boost is ignored.
    idx, _ = Rules(**plain, boost={"r0": 0.1, "nope": 9.0}).rerank(
        cands, scores, 6, rerank_features, RERANK_ITEMS
    )
    assert idx[0].tolist() == [4, 7, 1, 5, 8, 0]
    # Boost, then the cap: the lifted tea item takes tea's only slot.
    idx, _ = Rules(max_per_category=1, boost={"r1": 3.0}).rerank(
        cands, scores, 6, rerank_features, RERANK_ITEMS
    )
    assert idx[0].tolist() == [1, 4, 7, -1, -1, -1]
    # A boost does not move an item into an empty slot.
    short = np.asarray([[0, 4, -1]])
    idx, _ = Rules(**plain, boost={"r9": 10.0}).rerank(
        short, np.asarray([[2.0, 1.0, np.nan]]), 3, rerank_features, RERANK_ITEMS
    )
    assert idx[0].tolist() == [0, 4, -1]


def test_candidates_factor_and_from_settings() -> None:
    assert Rules().candidates_factor == 5
    assert Rules(max_per_category=None).candidates_factor == 1
    assert Rules(max_per_category=None, boost={"a": 2.0}).candidates_factor == 5
    s = SimpleNamespace(max_per_category=2, price_min=3.0, unrelated="x")
    r = Rules.from_settings(s, price_min=None, price_max=9.0)
    assert (r.max_per_category, r.price_min, r.price_max) == (2, 3.0, 9.0)


# -- reasons ----------------------------------------------------------------------------------


def test_reason_text_in_english_and_chinese() -> None:
    titles = {"x": "Red Tea Cup"}
    assert reason_text("bought:x", "en", titles) == "because you bought Red Tea Cup"
    assert reason_text("viewed:x", "en", titles) == "because you viewed Red Tea Cup"
    assert reason_text("viewed:y", "en", titles) == "because you viewed y"
    assert reason_text("interest:tea") == "matches your interest in tea"
    assert reason_text("segment:vip") == "popular in your segment vip"
    assert reason_text("popular") == "popular right now"
    assert reason_text("bought:x", "zh", titles) == "因为您购买了Red Tea Cup"
    assert reason_text("viewed:x", "zh") == "因为您浏览过x"
    assert reason_text("interest:茶", "zh") == "符合您对茶的兴趣"
    assert reason_text("segment:vip", "zh") == "在您所在的群体vip中很受欢迎"
    assert reason_text("popular", "zh") == "当前热门"
    # A segment named by its portrait, in the language; an unnamed one by its id.
    names = {"vip": "High spend · frequent buyers · toys"}
    assert (
        reason_text("segment:vip", "en", segments=names)
        == 'popular in your segment "High spend · frequent buyers · toys"'
    )
    assert (
        reason_text("segment:vip", "zh", segments=names)
        == "在您所在的群体「高消费 · 高频购买 · toys」中很受欢迎"
    )
    assert reason_text("segment:2", "zh", segments=names) == "在您所在的群体2中很受欢迎"
    assert reason_text("segment:vip", "fr", segments=names).startswith(
        'popular in your segment "High'
    )
    # Unknown language: English; unknown kind: the code itself; nothing: "".
    assert reason_text("popular", "fr") == "popular right now"
    assert reason_text("mystery:1") == "mystery:1"
    assert reason_text(None) == ""
    assert reason_text("") == ""


def test_top_history_orders_each_row_by_weight() -> None:
    rows = sp.csr_matrix(np.array([[0, 5, 1, 3], [0, 0, 0, 0], [2, 0, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(top_history(rows, 3), [[1, 3, 2], [-1, -1, -1], [0, -1, -1]])
    np.testing.assert_array_equal(top_history(rows, 1), [[1], [-1], [0]])


EXPLAIN_CATALOG = pd.DataFrame(
    {
        "item_id": ["x", "x2", "y", "z", "lonely"],
        "title": ["Red Tea", "Red Tea (2-pack)", "Iron Pan", "Steel Pan", "Odd Tea"],
        "category": ["tea", "tea", "pan", "pan", "tea"],
    }
)


@pytest.fixture(scope="module")
def explained() -> tuple[ItemKNN, Interactions, ItemFeatures]:
    """x2 is a near-duplicate of x (everyone who has x2 has x); lonely shares no user with
    anything else."""
    rows = []
    for u in range(8):
        rows += [(f"u{u}", "x", False), (f"u{u}", "x2", False)]
        rows.append((f"u{u}", "y" if u < 4 else "z", False))
    rows += [("solo", "lonely", False)]
    rows += [("buyer", "x", True), ("buyer", "y", False), ("viewer", "x", False)]
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "bought"])
    data = Interactions.from_frame(log, purchased_col="bought", items=EXPLAIN_CATALOG["item_id"])
    feats = ItemFeatures.from_frame(EXPLAIN_CATALOG, data.items)
    return ItemKNN().fit(data), data, feats


def test_explain_gives_bought_viewed_interest_segment_and_popular(explained) -> None:
    model, data, feats = explained
    ix = {i: int(data.items.index(i)[0]) for i in data.items.ids}
    assert model.pair_similarity(np.asarray([ix["x2"]]), np.asarray([ix["x"]]))[0] > 0.8
    users = ["buyer", "viewer", "newbie", "stranger"]
    rows = data.rows(users)
    purchased = data.purchased[data.users.index(["buyer", "viewer"])]
    purchased = sp.vstack([purchased, sp.csr_matrix((2, data.n_items))]).tocsr()
    rec = np.asarray(
        [
            [ix["x2"], ix["lonely"], -1],
            [ix["x2"], ix["lonely"], ix["y"]],
            [ix["x2"], ix["z"], -1],
            [ix["x2"], ix["z"], ix["y"]],
        ]
    )
    groups = np.asarray([None, "", "vip", None], dtype=object)
    codes = explain(model, rec, rows, purchased, feats, data.items.ids, groups)
    assert codes.shape == (4, 3)
    # The buyer bought x, the nearest item to x2; the viewer only viewed it.
    assert codes[0, 0] == "bought:x"
    assert codes[1, 0] == "viewed:x"
    # lonely resembles nothing they had, but is tea, one of their interests.
    assert codes[0, 1] == "interest:tea"
    assert codes[1, 1] == "interest:tea"
    # An empty slot has no reason.
    assert codes[0, 2] is None
    # y shares users (u0-u3) with x, the viewer's only item.
    assert codes[1, 2] == "viewed:x"
    # Without history: the segment, or "popular" without one.
    assert codes[2].tolist() == ["segment:vip", "segment:vip", None]
    assert codes[3].tolist() == ["popular", "popular", "popular"]
    # The codes read as sentences with the items' titles.
    titles = dict(zip(feats.items.ids, feats.titles, strict=True))
    assert reason_text(codes[0, 0], "en", titles) == "because you bought Red Tea"
    assert reason_text(codes[1, 0], "zh", titles) == "因为您浏览过Red Tea"


def test_explain_without_features_or_purchases(explained) -> None:
    model, data, _ = explained
    ix = {i: int(data.items.index(i)[0]) for i in data.items.ids}
    rows = data.rows(["buyer"])
    rec = np.asarray([[ix["x2"], ix["lonely"]]])
    codes = explain(model, rec, rows, None, None, data.items.ids, None)
    # No purchase record: a viewed reason; no features: no interest reason.
    assert codes.tolist() == [["viewed:x", "popular"]]

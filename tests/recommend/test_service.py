"""The recommend stage on a real store: training on the stitched events, model versions, serving
with rules, segments and cold start, the batch table, and the content model's link to profiles.

The simulated shop is ingested, profiled and segmented once per module into a DuckDB file;
each test works on a copy of its own through :class:`jingzhun.workspace.Workspace`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from jingzhun.config import Settings
from jingzhun.recommend import interactions, serving, training
from jingzhun.recommend.models.content import ContentBased
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.recommend.models.popularity import Popularity
from jingzhun.store import Registry, Store
from jingzhun.workspace import Workspace

#: Profiles and the content model both see the events before this (mid-way through the shop).
AS_OF = datetime(2026, 7, 1)
NEW_ITEM = "sku-new-1"


@pytest.fixture(scope="module")
def base(shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop ingested, profiled and segmented (k-means, 3 segments), the store closed."""
    db = tmp_path_factory.mktemp("recommend_service") / "store.duckdb"
    settings = Settings()
    with Workspace(Store.open(db, settings), settings) as ws:
        for kind in ("items", "users", "events"):
            ws.ingest(kind, [shop.file(kind)])
        ws.profile_build()
        ws.segment_run("kmeans", k=3, stability_resamples=0)
    return db


@pytest.fixture
def shop_ws(base: Path, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on a copy of the base store."""
    db = tmp_path / "store.duckdb"
    shutil.copyfile(base, db)
    settings = Settings()
    ws = Workspace(Store.open(db, settings), settings)
    try:
        yield ws
    finally:
        ws.close()


def buyers(ws: Workspace, n: int) -> list[str]:
    """The ``n`` users of the users table with the most purchases."""
    return ws.sql(
        "SELECT user_id FROM stitched_events WHERE event = 'order_completed' "
        "AND user_id IN (SELECT user_id FROM users) GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?",
        [n],
    )["user_id"].tolist()


def catalog(ws: Workspace) -> pd.DataFrame:
    return ws.sql("SELECT * FROM items").set_index("item_id")


def ids(result: dict) -> list[str]:
    return [i["item_id"] for i in result["items"]]


# -- the content model and the profiles ------------------------------------------------------


def test_content_category_vector_is_the_profile_affinity(shop_ws: Workspace) -> None:
    """C(u, category) of the content model is A(u) of the profiles, built at the same as_of,
    for users whose every item has a category."""
    ws = shop_ws
    ws.profile_build(as_of=AS_OF)
    trained = training.train(ws.store, ws.settings, "content", as_of=AS_OF)
    assert trained.as_of == AS_OF
    model = ws.recommender(trained.model_id).model
    assert isinstance(model, ContentBased)

    affinity = ws.sql("SELECT user_id, category, score FROM profile_affinity")
    users = sorted(affinity["user_id"].unique())[:60]
    frame = interactions.interactions_frame(ws.store, ws.settings, AS_OF, users)
    cats = ws.sql("SELECT item_id, category FROM items")
    touched = frame.merge(cats, on="item_id", how="left")
    complete = touched.groupby("user_id")["category"].agg(
        lambda c: bool(c.notna().all() and (c != "").all())
    )
    users = [u for u in users if complete.get(u, False)]
    assert len(users) >= 30

    pos = pd.Index(users).get_indexer(frame["user_id"])
    cols = model.items_.index(frame["item_id"].to_numpy(dtype=object))
    ok = (pos >= 0) & (cols >= 0)
    rows = sp.csr_matrix(
        (frame["weight"].to_numpy(np.float32)[ok], (pos[ok], cols[ok])),
        shape=(len(users), len(model.items_)),
    )
    c = model.user_vectors(rows)["category"].toarray()
    names = [str(n) for n in model.names_["category"]]
    for i, user in enumerate(users):
        a = affinity[affinity["user_id"] == user].set_index("category")["score"]
        assert set(a.index) <= set(names), user
        expected = np.asarray([a.get(n, 0.0) for n in names])
        np.testing.assert_allclose(c[i], expected, atol=1e-5, err_msg=user)
        assert c[i].sum() == pytest.approx(1.0, abs=1e-5)


# -- a new item -----------------------------------------------------------------------------------


def _add_twin(ws: Workspace, item_id: str, folder: Path) -> None:
    """Ingest a new catalog item that copies ``item_id``'s title, text, category, brand and
    price (and has no events)."""
    row = ws.sql(
        "SELECT item_id, title, description, category, brand, price FROM items WHERE item_id = ?",
        [item_id],
    )
    path = folder / "new_item.csv"
    row.assign(item_id=NEW_ITEM, active=True, stock=10).to_csv(path, index=False)
    ws.ingest("items", [str(path)])


def test_a_new_item_is_reached_through_content(shop_ws: Workspace, tmp_path: Path) -> None:
    ws = shop_ws
    (user,) = buyers(ws, 1)
    ws.recommend_train("content")
    before = ws.recommender().for_user(user, k=10)
    twin = ids(before)[0]  # the user's best content match
    _add_twin(ws, twin, tmp_path)
    assert ws.sql("SELECT count(*) FROM events WHERE item_id = ?", [NEW_ITEM]).iloc[0, 0] == 0

    # The model trained before the item came knows nothing of it, and still serves.
    assert NEW_ITEM not in ids(ws.recommender("content-1").for_user(user, k=10))

    trained = ws.recommend_train("content")
    assert trained.model_id == "content-2"
    assert trained.items == ws.sql("SELECT count(*) FROM items").iloc[0, 0]  # the whole catalog
    rec = ws.recommender()
    result = rec.for_user(user, k=10)
    assert NEW_ITEM in ids(result)
    (item,) = [i for i in result["items"] if i["item_id"] == NEW_ITEM]
    assert item["reason"] != "popular"

    # Its nearest items by content: its twin first, all of the twin's category.
    similar, scores = rec.model.similar_items([NEW_ITEM], k=5)
    assert similar[0][0] == twin
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5)
    cats = ws.sql("SELECT item_id, category FROM items").set_index("item_id")["category"]
    assert {cats[i] for i in similar[0]} == {cats[twin]}

    # The hybrid reaches it through its content component.
    hybrid = ws.recommend_train(
        "hybrid", components="content,popularity", weights="content:1,popularity:0.01"
    )
    assert hybrid.model_id == "hybrid-1" and hybrid.validation is None  # weights given
    assert NEW_ITEM in ids(ws.recommender().for_user(user, k=10))


# -- cold start -------------------------------------------------------------------------------


def _popularity_part(model) -> Popularity:
    if isinstance(model, Hybrid):
        return model.components["popularity"]
    assert isinstance(model, Popularity)
    return model


def _top_allowed(scores: np.ndarray, rec: serving.Recommend, k: int) -> list[str]:
    s = np.asarray(scores, np.float64).copy()
    if rec.mask is not None:
        s[~rec.mask] = -np.inf
    order = np.argsort(-s, kind="stable")[:k]
    return rec.model.items_.ids[order].tolist()


def _no_history_member(ws: Workspace) -> tuple[str, str]:
    frame = interactions.interactions_frame(
        ws.store, ws.settings, interactions.default_as_of(ws.store)
    )
    members = ws.sql("SELECT user_id, segment FROM segment_members ORDER BY user_id")
    members = members[~members["user_id"].isin(frame["user_id"])]
    assert len(members) > 0, "the shop has segmented users without any item event"
    user, segment = members.iloc[0]
    return str(user), str(segment)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("popularity", {}),
        ("hybrid", {"components": "itemknn,popularity", "weights": "itemknn:1,popularity:1"}),
    ],
)
def test_a_user_without_history_gets_their_segments_favourites(
    shop_ws: Workspace, model: str, params: dict
) -> None:
    ws = shop_ws
    user, segment = _no_history_member(ws)
    trained = ws.recommend_train(model, **params)
    assert trained.segment_run == "kmeans-1"
    rec = ws.recommender(max_per_category=1000)  # no cap: the pure segment ranking
    result = rec.for_user(user, k=5)
    assert result["cold_start"] is True and result["segment"] == segment
    assert [i["reason"] for i in result["items"]] == [f"segment:{segment}"] * 5
    # the segment named by its portrait
    label = ws.sql(
        "SELECT label FROM segment_portraits WHERE run_id = 'kmeans-1' AND segment = ?", [segment]
    )["label"].iloc[0]
    assert result["items"][0]["explanation"] == f'popular in your segment "{label}"'
    zh = rec.for_user(user, k=1, lang="zh")["items"][0]["explanation"]
    assert zh.startswith("在您所在的群体「") and zh.endswith("」中很受欢迎")
    pop = _popularity_part(rec.model)
    g = list(pop.groups_).index(segment)
    assert ids(result) == _top_allowed(pop.by_group_[g], rec, 5)
    # an unknown user: the global ranking, "popular"
    unknown = rec.for_user("nobody-at-all", k=5)
    assert unknown["cold_start"] is True and unknown["segment"] is None
    assert {i["reason"] for i in unknown["items"]} == {"popular"}
    assert ids(unknown) == _top_allowed(pop.global_, rec, 5)


def test_a_segment_reason_is_only_given_for_the_segments_ranking(shop_ws: Workspace) -> None:
    """A model without segment popularity (item-kNN) answers a user without history from
    popularity: the reason must not claim the segment unless the list is the segment's."""
    ws = shop_ws
    user, segment = _no_history_member(ws)
    ws.recommend_train("popularity")  # the segment ranking, to compare with
    pop = ws.recommender(max_per_category=1000)
    segment_list = ids(pop.for_user(user, k=5))
    ws.recommend_train("itemknn")
    result = ws.recommender(max_per_category=1000).for_user(user, k=5)
    assert result["cold_start"] is True
    reasons = {i["reason"] for i in result["items"]}
    if reasons == {f"segment:{segment}"}:
        assert ids(result) == segment_list, (
            "the reason says 'popular in your segment' but the list is not the segment's"
        )
    else:
        assert reasons == {"popular"}


# -- versions ---------------------------------------------------------------------------------


def test_retraining_makes_a_new_version_and_keeps_the_old_one(shop_ws: Workspace) -> None:
    ws = shop_ws
    (user,) = buyers(ws, 1)
    first = ws.recommend_train("itemknn")
    second = ws.recommend_train("itemknn", neighbours=10)
    assert (first.model_id, second.model_id) == ("itemknn-1", "itemknn-2")
    # Both versions are kept inside the store (issue 13: a store is one file).
    registry = Registry(ws.store)
    assert registry.artefact("itemknn-1") != registry.artefact("itemknn-2")
    assert not ws.path.with_name(ws.path.name + ".models").exists()
    models = ws.recommend_models().set_index("model_id")
    assert models["active"].to_dict() == {"itemknn-1": False, "itemknn-2": True}
    assert models.loc["itemknn-2", "params"]["neighbours"] == 10

    old = ws.recommender("itemknn-1")
    assert old.model_id == "itemknn-1" and old.model.params["neighbours"] == 100
    assert old.for_user(user, k=5)["model"] == "itemknn-1"
    assert ws.recommender().model_id == "itemknn-2"
    assert ws.recommender("itemknn").model_id == "itemknn-2"  # a name: its active version
    assert ws.recommender("itemknn").model.params["neighbours"] == 10

    other = ws.recommend_train("pop")
    assert other.model_id == "popularity-1"
    active = ws.sql("SELECT model_id FROM recommend_models WHERE active")["model_id"].tolist()
    assert active == ["popularity-1"]
    assert ws.recommender("itemknn").model_id == "itemknn-2"  # the latest of the name


# -- the batch --------------------------------------------------------------------------------


def _recommendations(ws: Workspace) -> pd.DataFrame:
    return ws.sql("SELECT * FROM recommendations ORDER BY user_id, rank")


def test_a_failing_batch_leaves_the_previous_batch(
    shop_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = shop_ws
    ws.recommend_train("itemknn")
    rows = ws.recommend_batch(3)
    before = _recommendations(ws)
    assert len(before) == rows > 0
    users = before["user_id"].nunique()
    monkeypatch.setattr(serving, "BATCH_USERS", 500)
    assert users > 2 * 500  # several blocks
    real = serving.Recommend._block

    # 1. the second block raises while the blocks are computed
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("block failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(serving.Recommend, "_block", failing)
    with pytest.raises(RuntimeError, match="block failed"):
        ws.recommend_batch(5)
    pd.testing.assert_frame_equal(_recommendations(ws), before)

    # 2. the last block holds a bad row: the insert fails after the old rows were deleted
    def bad_row(self, users, *args, **kwargs):
        frame = real(self, users, *args, **kwargs)
        if len(users) < 500:
            frame.loc[frame.index[-1], "item_id"] = None
        return frame

    monkeypatch.setattr(serving.Recommend, "_block", bad_row)
    with pytest.raises(Exception):  # noqa: B017 - DuckDB's constraint error
        ws.recommend_batch(5)
    pd.testing.assert_frame_equal(_recommendations(ws), before)

    # the store is still usable: a good batch replaces the rows
    monkeypatch.setattr(serving.Recommend, "_block", real)
    assert ws.recommend_batch(2) == 2 * users
    assert ws.sql("SELECT max(rank) FROM recommendations").iloc[0, 0] == 2


# -- rules ------------------------------------------------------------------------------------


@pytest.fixture
def itemknn_ws(shop_ws: Workspace) -> Workspace:
    shop_ws.recommend_train("itemknn")
    return shop_ws


def test_max_per_category_override(itemknn_ws: Workspace) -> None:
    ws = itemknn_ws
    users = buyers(ws, 15)
    cats = catalog(ws)["category"]
    default = ws.recommender()
    capped = ws.recommender(max_per_category=1)
    repeats = 0
    for user in users:
        base = [cats[i] for i in ids(default.for_user(user, k=10))]
        assert max(pd.Series(base).value_counts()) <= 3
        repeats += len(base) - len(set(base))
        one = [cats[i] for i in ids(capped.for_user(user, k=10))]
        assert one and len(one) == len(set(one)), user
    assert repeats > 0  # the default cap (3) lets categories repeat: the override changed lists


@pytest.mark.parametrize("model", ["itemknn", "content"])
def test_the_category_cap_still_fills_k_items(shop_ws: Workspace, model: str) -> None:
    """With 12 categories of available items, a cap of one item per category still leaves
    enough candidates for 10 items: the list is not cut short."""
    ws = shop_ws
    ws.recommend_train(model)
    cats = catalog(ws)
    available = cats[cats["active"] & ~(cats["stock"] <= 0)]
    assert available["category"].nunique() >= 10
    capped = ws.recommender(max_per_category=1)
    short = {}
    for user in buyers(ws, 10):
        got = ids(capped.for_user(user, k=10))
        if len(got) < 10:
            short[user] = len(got)
    assert not short, f"lists cut short (user: length): {short}"


def test_price_max_and_include_categories(itemknn_ws: Workspace) -> None:
    ws = itemknn_ws
    users = [*buyers(ws, 10), "nobody-at-all"]
    items = catalog(ws)
    limit = float(items["price"].median())
    cheap = ws.recommender(price_max=limit)
    dearer = 0
    for user in users:
        got = ids(cheap.for_user(user, k=10))
        assert got and (items.loc[got, "price"] <= limit).all(), user
        dearer += int(
            (items.loc[ids(ws.recommender().for_user(user, k=10)), "price"] > limit).sum()
        )
    assert dearer > 0  # without the rule, dearer items do come up

    wanted = sorted(items["category"].unique())[:2]
    only = ws.recommender(include_categories=wanted)
    for user in users:
        got = ids(only.for_user(user, k=6))
        assert got and set(items.loc[got, "category"]) <= set(wanted), user


# -- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params"),
    [("itemknn", {}), ("hybrid", {"components": "itemknn,popularity", "weights": ""})],
)
def test_session_leaves_the_session_items_out(shop_ws: Workspace, model: str, params) -> None:
    ws = shop_ws
    ws.recommend_train(model, **params)
    viewed = ws.sql(
        "SELECT item_id FROM events WHERE event = 'product_viewed' AND item_id IS NOT NULL "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3"
    )["item_id"].tolist()
    rec = ws.recommender()
    items = catalog(ws)
    for session in (viewed[:1], viewed[:2], viewed):
        frame = rec.session(session, k=5)
        got = frame["item_id"].tolist()
        assert len(got) == 5 and len(set(got)) == 5
        assert not set(got) & set(session), session
        assert frame["rank"].tolist() == [1, 2, 3, 4, 5]
        assert (frame["session_items"] == len(session)).all()
        listed = items.loc[got]
        assert (listed["active"] & ~(listed["stock"] <= 0)).all()
        assert frame["reason"].str.len().gt(0).all()


def test_a_batch_is_stamped_in_utc_whatever_the_local_time_zone(
    itemknn_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every writer stores naive UTC; the batch used the machine's local time (issue 13)."""
    import time
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8, no daylight saving
    time.tzset()
    try:
        before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        itemknn_ws.recommend_batch(2)
        after = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    finally:
        monkeypatch.undo()
        time.tzset()
    stamped = itemknn_ws.sql("SELECT DISTINCT created_at FROM recommendations")["created_at"]
    assert len(stamped) == 1
    assert before <= stamped.iloc[0].to_pydatetime() <= after

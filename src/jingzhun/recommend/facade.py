"""``ws.recs``: the recommend stage's facade — train, evaluate, serve (user, session, batch).

Serving keeps the loaded model, its catalog features and its segment map in memory per active
model, so a call costs the user's history query and the scoring, not a model load: the server
and a notebook loop call ``ws.recs.for_user`` thousands of times. The cache is checked on every
call against the registry's active models, the catalog and the run's members, so a model
activated, items ingested or users assigned — by this process or another — are seen at once.

Examples
--------
>>> ws.recs.train("hybrid")                                          # doctest: +SKIP
>>> ws.recs.for_user("u123", k=5).items[0]["explanation"]            # doctest: +SKIP
>>> ws.recs.session(["sku-1", "sku-9"], k=5)                         # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jingzhun.contracts.results import Result

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.config import Settings
    from jingzhun.recommend.evaluate import Evaluation
    from jingzhun.recommend.read import BatchOverview
    from jingzhun.recommend.serving import Recommend
    from jingzhun.recommend.training import Trained
    from jingzhun.store import Store

# Stage modules are imported when first used (Ibis, SciPy and implicit take seconds).


@dataclass
class UserRecommendations(Result):
    """Top items for one user, each with its reason in words."""

    user_id: str
    model: str
    cold_start: bool
    known_to_model: bool
    segment: str | None
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ContextRecommendations(UserRecommendations):
    """Top items after the items a user is looking at now (with their history when the user
    is given), explained."""

    context: list[str] = field(default_factory=list)
    unknown_items: list[str] = field(default_factory=list)


@dataclass
class SimilarItems(Result):
    """The items most like one item, by the model's item neighbours."""

    item_id: str
    model: str
    known_to_model: bool
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RuleOverrides:
    """Business rules for one call, replacing ``[recommend]``'s (None: the setting's)."""

    exclude_purchased: bool | None = None
    rebuy_categories: tuple[str, ...] | None = None
    only_available: bool | None = None
    include_categories: tuple[str, ...] | None = None
    exclude_categories: tuple[str, ...] | None = None
    price_min: float | None = None
    price_max: float | None = None
    max_per_category: int | None = None

    def given(self) -> dict[str, Any]:
        """The rules given (sequences as tuples, so the set can key a cache)."""
        return {
            k: tuple(v) if isinstance(v, (list, set)) else v
            for k, v in self.__dict__.items()
            if v is not None
        }


class Recs:
    """The recommend stage on one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        ``[recommend]`` (model, weights, rules) is used.
    """

    #: Loaded serving models kept at once (each holds a model and its catalog features).
    CACHED = 4

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings
        self._cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], Recommend]] = {}
        self._pinned = False
        self._loading = threading.Lock()

    def pin(self) -> None:
        """Serve the loaded models without checking the store on each call (three queries,
        ~2 ms): for a caller that is the store's only writer and calls :meth:`refresh` when it
        trains or activates a model, changes the catalog or segments (the server). Safe to
        share between threads: a model is loaded once, under a lock."""
        self._pinned = True

    def refresh(self) -> None:
        """Load again what the store holds now, for every model served so far, and then swap
        them in: callers go on with the models they had until the new ones are ready (a
        model no longer there is dropped; the next call for it says so)."""
        from jingzhun.errors import NotFoundError
        from jingzhun.recommend.serving import Recommend, serving_version

        with self._loading:
            fresh: dict[tuple[Any, ...], tuple[tuple[Any, ...], Recommend]] = {}
            for model, given in list(self._cache):
                try:
                    version = serving_version(self._store, model)
                    rec = Recommend(self._store, self._settings, model, **dict(given))
                except NotFoundError:
                    continue
                fresh[(model, given)] = (version, rec)
            self._cache = fresh

    # -- fitting ------------------------------------------------------------------------------

    def train(
        self,
        model: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        as_of: datetime | None = None,
    ) -> Trained:
        """Fit a recommender (default ``[recommend] model``) on the store's interactions; it is
        kept in the store's registry and becomes the active one."""
        from jingzhun.recommend.training import train

        return train(self._store, self._settings, model, dict(params or {}), as_of)

    def models(self) -> pd.DataFrame:
        """Every trained recommender, newest first."""
        from jingzhun.recommend.training import list_models

        return list_models(self._store)

    def evaluate(
        self,
        log: pd.DataFrame | None = None,
        *,
        item_features: pd.DataFrame | None = None,
        split_spec: str = "random-by-user:0.75",
        models: Sequence[str] | None = None,
        k: int = 10,
        seed: int = 42,
        min_rating: float | None = None,
        budget: int = 12,
        progress: Any = None,
    ) -> Evaluation:
        """Compare models offline on ``log`` (user, item[, rating][, time]); without ``log``,
        on the store's interactions and catalog, and the result is kept in
        ``recommend_evaluations``."""
        from jingzhun.recommend.evaluate import evaluate
        from jingzhun.recommend.interactions import store_log
        from jingzhun.recommend.training import save_evaluation

        from_store = log is None
        if log is None:
            log, item_features = store_log(self._store, self._settings)
        result = evaluate(
            log,
            item_features=item_features,
            split_spec=split_spec,
            models=models,
            k=k,
            seed=seed,
            min_rating=min_rating,
            budget=budget,
            progress=progress,
        )
        if from_store and not self._store.read_only:
            save_evaluation(self._store, "store", result.to_json())
        return result

    # -- serving ------------------------------------------------------------------------------

    def recommender(
        self, model: str | None = None, rules: RuleOverrides | None = None
    ) -> Recommend:
        """The active (or a named) model in memory with the catalog, rules and segments;
        loaded once and kept while the registry's active models, the catalog and the run's
        members stay as they are."""
        from jingzhun.recommend.serving import Recommend, serving_version

        given = (rules or RuleOverrides()).given()
        key = (model, tuple(sorted(given.items())))
        hit = self._cache.get(key)
        if self._pinned and hit is not None:
            self._cache[key] = self._cache.pop(key, hit)  # most recently used: kept longest
            return hit[1]
        with self._loading:
            version = serving_version(self._store, model)
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version:
                self._cache[key] = self._cache.pop(key)  # most recently used: kept longest
                return hit[1]
            rec = Recommend(self._store, self._settings, model, **given)
            self._cache.pop(key, None)
            while len(self._cache) >= self.CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (version, rec)
            return rec

    def for_user(
        self,
        user_id: str,
        k: int = 10,
        *,
        model: str | None = None,
        lang: str = "en",
        history: pd.DataFrame | None = None,
    ) -> UserRecommendations:
        """Top ``k`` for one user with explanations; an unknown user takes the cold-start
        path. ``history``: the user's interactions when the caller holds them (the server's
        live profiles, :meth:`jingzhun.profile.live.LiveProfiles.interactions`), instead of
        a query on the store's events."""
        from jingzhun.store.desensitize import user_key

        rec = self.recommender(model)
        user_id = user_key(self._store, user_id)
        return UserRecommendations(**rec.for_user(user_id, k, lang=lang, history=history))

    def session(
        self, item_ids: Sequence[str], k: int = 10, *, model: str | None = None
    ) -> pd.DataFrame:
        """Real-time recommendations after the items of the current session."""
        return self.recommender(model).session(list(item_ids), k)

    def in_context(
        self,
        item_ids: Sequence[str],
        k: int = 10,
        *,
        user_id: str | None = None,
        model: str | None = None,
        lang: str = "en",
        history: pd.DataFrame | None = None,
    ) -> ContextRecommendations:
        """Top ``k`` after the items a user is looking at now (oldest first; the latest counts
        most), with explanations. With ``user_id``, the whole model scores their history and
        the context together (each weighing the same; bought items left out by the rules:
        :meth:`~jingzhun.recommend.serving.Recommend.in_context`; ``history`` as for
        :meth:`for_user`); without, the session path (:meth:`session`). The user's segment
        and whether the model knows them are reported; the list is ``cold_start`` when the
        model knows none of the context items and there is no history (popular items)."""
        from jingzhun.recommend.rules import reason_text
        from jingzhun.store.desensitize import user_key

        rec = self.recommender(model)
        items = list(item_ids)
        if user_id is not None:
            user_id = user_key(self._store, user_id)
        if user_id is None:
            frame = rec.session(items, k)
            had_history = False
        else:
            frame = rec.in_context(user_id, items, k, history)
            had_history = frame.attrs["history"]
        unknown = list(frame.attrs["unknown_items"])
        return ContextRecommendations(
            user_id=user_id or "",
            model=rec.model_id,
            cold_start=len(unknown) == len(item_ids) and not had_history,
            known_to_model=user_id is not None and user_id in rec.model.users_,
            segment=None if rec.groups is None or user_id is None else rec.groups.get(user_id),
            items=[
                {
                    "rank": int(r.rank),
                    "item_id": r.item_id,
                    "title": rec.titles.get(r.item_id) or None,
                    "score": float(f"{float(r.score):.6g}"),  # as for_user rounds
                    "reason": r.reason,
                    "explanation": reason_text(r.reason, lang, rec.titles, rec.segment_names),
                }
                for r in frame.itertuples()
            ],
            context=list(item_ids),
            unknown_items=unknown,
        )

    def similar(self, item_id: str, k: int = 10, *, model: str | None = None) -> SimilarItems:
        """The ``k`` items most like ``item_id``: the model's item neighbours (a hybrid's
        item-kNN part, as in :meth:`session`), with the rules' filters (availability,
        categories, price) applied and the item itself left out. A model without item
        neighbours (popularity) answers with its popular items. An item the catalog has but
        the model does not know (new since training) gets an empty list.

        Raises
        ------
        NotFoundError
            If neither the catalog nor the model knows ``item_id``.
        """
        from jingzhun.errors import NotFoundError

        rec = self.recommender(model)
        known = item_id in rec.model.items_
        if not known and item_id not in rec.titles:
            raise NotFoundError(
                f"no item {item_id!r} in the catalog or the model",
                hint="check the id; items come from ingested items and the events' item_id",
            )
        frame = rec.session([item_id], k) if known else None
        return SimilarItems(
            item_id=item_id,
            model=rec.model_id,
            known_to_model=known,
            items=[]
            if frame is None
            else [
                {
                    "rank": int(r.rank),
                    "item_id": r.item_id,
                    "title": rec.titles.get(r.item_id) or None,
                    "score": float(f"{float(r.score):.6g}"),
                }
                for r in frame.itertuples()
            ],
        )

    def batch(self, k: int | None = None, *, model: str | None = None, progress: Any = None) -> int:
        """Write top ``k`` (default ``[recommend] k``) for every user to ``recommendations``;
        the rows written."""
        chosen = self._settings.recommend.k if k is None else k
        return self.recommender(model).batch(chosen, progress=progress)

    def latest_batch(self) -> BatchOverview | None:
        """The latest batch at a glance (model, users, items shown …); None before any."""
        from jingzhun.recommend.read import batch_overview

        return batch_overview(self._store)

    def items(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Catalog entries (title, category, brand, price) of some items, by id; ids the
        catalog does not have are left out: :func:`jingzhun.recommend.read.catalog_items`."""
        from jingzhun.recommend.read import catalog_items

        return catalog_items(self._store, item_ids)

    def popular(self, limit: int = 10, *, days: int = 30) -> pd.DataFrame:
        """The items most visitors viewed, carted or bought lately (``item_id``, ``title``,
        ``category``, ``visitors``): :func:`jingzhun.recommend.read.popular_items`."""
        from jingzhun.recommend.read import popular_items

        return popular_items(self._store, limit=limit, days=days)

    def example_users(self, limit: int = 5) -> list[str]:
        """Users whose list in the latest batch mixes items explained by a purchase with
        others: good examples of what the recommender does (empty before a batch)."""
        from jingzhun.recommend.read import example_users

        return example_users(self._store, limit=limit)

    def of_user(self, user_id: str) -> pd.DataFrame:
        """The user's list in the latest batch (rank, item, score, reason)."""
        from jingzhun.recommend.read import user_recommendations
        from jingzhun.store.desensitize import user_key

        return user_recommendations(self._store, user_key(self._store, user_id))

"""Serving: the active model with the catalog, rules and segments — for one user, a session,
or every user (``recommendations`` holds the latest batch).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from jingzhun.contracts.time import utcnow
from jingzhun.errors import InputError, NotFoundError
from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary
from jingzhun.recommend.interactions import HistoryQuery, catalog, default_as_of, interactions_frame
from jingzhun.recommend.models import Recommender, load
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.recommend.rules import Rules, explain
from jingzhun.store import ModelRecord, Registry, Store

if TYPE_CHECKING:
    from jingzhun.config import Settings


BATCH_USERS = 4096


class Ranker:
    """A trained model with the catalog's rules: ranks and explains blocks of users, and
    nothing here reads a store. :class:`Recommend` is one on a store; each Spark partition of
    a distributed batch builds one from the broadcast model and the lake's catalog
    (:mod:`jingzhun.recommend.on_lake`), so both write rows by the same code.

    Parameters
    ----------
    model_id : str
        The registry's id of ``model`` (written with each row).
    model : Recommender
        The fitted model.
    rules : Rules
        The business rules (item mask, exclusions, re-rank).
    items : DataFrame
        The catalog (:func:`~jingzhun.recommend.interactions.catalog`).
    """

    def __init__(
        self, model_id: str, model: Recommender, rules: Rules, items: pd.DataFrame
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.rules = rules
        self.features = (
            ItemFeatures.from_frame(items, self.model.items_, text=False) if len(items) else None
        )
        self.mask = self.rules.item_mask(self.features, len(self.model.items_))

    def _block(
        self,
        users: np.ndarray,
        rows: sp.csr_matrix,
        purchased: sp.csr_matrix | None,
        k: int,
        groups: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Top ``k`` of each user (rank, item, score, reason) from their interaction rows;
        ``groups``: each user's segment, when the model ranks by segment."""
        m = self.model
        exclude = self.rules.exclusions(purchased, self.features)
        uidx = np.full(len(users), -1)  # always score from the given (fresh) history
        idx, val = self._ranked(m, rows, uidx, k, None, exclude, groups)
        # Only a model that ranks by segment may say "popular in your segment".
        said = groups if ranks_by_segment(m) else None
        reasons = explain(m, idx, rows, purchased, self.features, m.items_.ids, said)
        n = len(users)
        keep = idx.ravel() >= 0
        return pd.DataFrame(
            {
                "user_id": np.repeat(users, k)[keep],
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[keep],
                "item_id": m.items_.ids[np.maximum(idx, 0)].ravel()[keep],
                "score": np.nan_to_num(val.ravel()[keep].astype(np.float64)),
                "reason": reasons.ravel()[keep].astype(str),
            }
        )

    def batch_rows(
        self,
        users: np.ndarray,
        rows: sp.csr_matrix,
        purchased: sp.csr_matrix | None,
        k: int,
        groups: np.ndarray | None,
        created_at: datetime,
    ) -> pd.DataFrame:
        """One block of a batch as ``recommendations`` rows (the table's columns, in order):
        what :meth:`Recommend.batch` and every Spark partition write."""
        part = self._block(users, rows, purchased, k, groups)
        return part.assign(model=self.model_id, created_at=created_at)[list(BATCH_COLUMNS)]

    def _ranked(
        self,
        model: Recommender,
        rows: sp.csr_matrix,
        uidx: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        more: sp.csr_matrix | None,
        groups: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's candidates re-ranked by the rules. When the category cap leaves a list
        short, its user is ranked again from a pool four times deeper, up to the catalog."""
        n_items = len(model.items_)
        kk = min(k * self.rules.candidates_factor, n_items)
        idx, val, _ = model.topk_block(
            rows, uidx, kk, self.mask, exclude=exclude, more=more, groups=groups
        )
        out_idx, out_val = self.rules.rerank(idx, val, k, self.features, model.items_.ids)
        short = np.flatnonzero((out_idx < 0).any(axis=1) & (idx >= 0).all(axis=1))
        while len(short) and kk < n_items:
            kk = min(kk * 4, n_items)
            g = None if groups is None else groups[short]
            idx, val, _ = model.topk_block(
                rows[short],
                uidx[short],
                kk,
                self.mask,
                exclude=None if exclude is None else exclude[short],
                more=None if more is None else more[short],
                groups=g,
            )
            out_idx[short], out_val[short] = self.rules.rerank(
                idx, val, k, self.features, model.items_.ids
            )
            short = short[(out_idx[short] < 0).any(axis=1) & (idx >= 0).all(axis=1)]
        return out_idx, out_val

    def matrices(
        self, frame: pd.DataFrame, user_ids: list[str]
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Interaction rows (and purchases) of ``user_ids`` over the model's items from an
        interactions frame (user_id, item_id, weight, purchased); unknown items drop out."""
        pos = pd.Index(user_ids).get_indexer(frame["user_id"])
        cols = self.model.items_.index(frame["item_id"].to_numpy(dtype=object))
        ok = cols >= 0
        shape = (len(user_ids), len(self.model.items_))
        rows = sp.csr_matrix(
            (frame["weight"].to_numpy(np.float32)[ok], (pos[ok], cols[ok])), shape=shape
        )
        bought = ok & frame["purchased"].to_numpy(bool)
        purchased = sp.csr_matrix(
            (np.ones(int(bought.sum()), np.float32), (pos[bought], cols[bought])), shape=shape
        )
        return rows, purchased


#: The columns of ``recommendations``, in order.
BATCH_COLUMNS = ("user_id", "rank", "item_id", "score", "model", "reason", "created_at")


class Recommend(Ranker):
    """The active (or a named) model with its catalog, rules and segments, in memory.

    Examples
    --------
    >>> r = ws.recommender()                                   # doctest: +SKIP
    >>> r.for_user("u123", k=5)                                # a list of dicts with reasons
    >>> r.session(["sku-1", "sku-9"], k=5)                     # real-time, < 5 ms
    """

    def __init__(
        self, store: Store, settings: Settings, ref: str | None = None, **rule_overrides: Any
    ) -> None:
        self.store = store
        self.settings = settings
        record = resolve_model(store, ref)
        self.as_of: datetime = record.as_of or default_as_of(store)
        items = catalog(store)
        super().__init__(
            record.model_id,
            load(Registry(store).artefact(record.model_id)),
            Rules.from_settings(settings.recommend, **rule_overrides),
            items,
        )
        self.titles = dict(zip(items["item_id"], items["title"].fillna(""), strict=True))
        self._history = HistoryQuery(store, settings)
        self.groups = None
        #: Segment -> its portrait's name (English, as stored), for "popular in your segment".
        self.segment_names: dict[str, str] = {}
        members = model_segments(store, record)
        if members is not None:
            self.groups = dict(zip(members["user_id"], members["segment"], strict=True))
            named = members.dropna(subset=["label"]).drop_duplicates("segment")
            self.segment_names = dict(zip(named["segment"], named["label"], strict=True))

    def _groups_of(self, users: np.ndarray) -> np.ndarray | None:
        """Each user's segment in the model's run (None: the model has no run)."""
        if self.groups is None:
            return None
        return np.asarray([self.groups.get(u) for u in users], dtype=object)

    def history(self, user_ids: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Fresh interaction rows (and purchases) of users from the store, up to now."""
        at = default_as_of(self.store)
        if len(user_ids) == 1:
            frame = self._history(user_ids[0], at)
        else:
            frame = interactions_frame(self.store, self.settings, at, user_ids)
        return self.matrices(frame, user_ids)

    def _rows(
        self, user_id: str, history: pd.DataFrame | None
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """One user's rows: from ``history`` when the caller holds it, else from the store."""
        if history is None:
            return self.history([user_id])
        return self.matrices(history, [user_id])

    def for_user(
        self, user_id: str, k: int = 10, lang: str = "en", history: pd.DataFrame | None = None
    ) -> dict[str, Any]:
        """Top ``k`` for one user, from their history up to now (an unknown user, or one with
        no history, takes the cold-start path). ``history``: the user's interactions as
        :func:`~jingzhun.recommend.interactions.interactions_frame` gives them, when the
        caller holds them already (a server's live profiles), instead of a query."""
        from jingzhun.recommend.rules import reason_text

        _check_k(k)
        rows, purchased = self._rows(user_id, history)
        users = np.asarray([user_id], dtype=object)
        frame = self._block(users, rows, purchased, k, self._groups_of(users))
        known = user_id in self.model.users_
        return {
            "user_id": user_id,
            "model": self.model_id,
            "cold_start": bool(rows.nnz == 0),
            "known_to_model": bool(known),
            "segment": None if self.groups is None else self.groups.get(user_id),
            "items": [
                {
                    "rank": int(r.rank),
                    "item_id": r.item_id,
                    "title": self.titles.get(r.item_id) or None,
                    # Six significant digits, not decimals: a cold-start blend ranks by
                    # scores of 1e-6 and less, which six decimals turned into 1e-06 and 0.
                    "score": float(f"{float(r.score):.6g}"),
                    "reason": r.reason,
                    "explanation": reason_text(r.reason, lang, self.titles, self.segment_names),
                }
                for r in frame.itertuples()
            ],
        }

    def session(self, item_ids: list[str], k: int = 10, user_id: str | None = None) -> pd.DataFrame:
        """Real-time: top ``k`` after the items of the current session (the latest counts
        most), from the model's item neighbours; session items and the rules' filters are
        left out. Items the model does not know (new since training, or misspelt) cannot
        count: they are listed, in the order given, in ``frame.attrs["unknown_items"]``; with
        none known the list is popular items."""
        _check_k(k)
        n = len(item_ids)
        w = 0.5 ** np.arange(n - 1, -1, -1, dtype=np.float32)  # newest item weight 1
        base = self._session_model()
        unknown = [i for i, j in zip(item_ids, base.items_.index(item_ids), strict=True) if j < 0]
        row = _row_of(base.items_, item_ids, w)
        idx, val = self._ranked(base, row, np.array([-1]), k, row, None, None)
        keep = idx[0] >= 0
        src = np.asarray(item_ids, dtype=object)
        reasons = explain(base, idx, row, None, None, base.items_.ids, None)
        frame = pd.DataFrame(
            {
                "rank": np.arange(1, k + 1)[keep],
                "item_id": base.items_.ids[idx[0][keep]],
                "score": val[0][keep],
                "reason": reasons[0][keep].astype(str),
            }
        ).assign(session_items=len(src))
        frame.attrs["unknown_items"] = unknown
        return frame

    def in_context(
        self,
        user_id: str,
        item_ids: list[str],
        k: int = 10,
        history: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Real-time for a known visitor: top ``k`` for ``user_id`` looking at ``item_ids``
        now (oldest first, the latest counts most), scored by the whole model from their
        history and the context together — each normalised to sum 1, so the context weighs
        as much as everything before it, whatever the history's size. The context items and
        the rules' exclusions (bought items) are left out. Without history this is the
        context alone; without known context items, the user's list. ``history`` as for
        :meth:`for_user`; unknown context items in ``frame.attrs["unknown_items"]``."""
        _check_k(k)
        m = self.model
        rows, purchased = self._rows(user_id, history)
        n = len(item_ids)
        w = 0.5 ** np.arange(n - 1, -1, -1, dtype=np.float32)  # newest item weight 1
        context = _row_of(m.items_, item_ids, w)
        parts = [part / part.sum() for part in (rows, context) if part.nnz and part.sum() > 0]
        blended = sp.csr_matrix(sum(parts[1:], parts[0]) if parts else rows, dtype=np.float32)
        groups = (
            None if self.groups is None else np.asarray([self.groups.get(user_id)], dtype=object)
        )
        exclude = self.rules.exclusions(purchased, self.features)
        idx, val = self._ranked(m, blended, np.array([-1]), k, context, exclude, groups)
        said = groups if ranks_by_segment(m) else None
        reasons = explain(m, idx, blended, purchased, self.features, m.items_.ids, said)
        keep = idx[0] >= 0
        frame = pd.DataFrame(
            {
                "rank": np.arange(1, k + 1)[keep],
                "item_id": m.items_.ids[idx[0][keep]],
                "score": np.nan_to_num(val[0][keep].astype(np.float64)),
                "reason": reasons[0][keep].astype(str),
            }
        )
        frame.attrs["unknown_items"] = [
            i for i, j in zip(item_ids, m.items_.index(item_ids), strict=True) if j < 0
        ]
        frame.attrs["history"] = bool(rows.nnz)
        return frame

    def _session_model(self) -> Recommender:
        m = self.model
        if isinstance(m, Hybrid) and "itemknn" in m.components:
            return m.components["itemknn"]
        return m

    def batch(self, k: int, progress: Any = None) -> int:
        """Top ``k`` for every known user (users table and interaction history), written to
        ``recommendations`` in one transaction (replacing the previous batch)."""
        _check_k(k)
        frame = interactions_frame(self.store, self.settings, default_as_of(self.store))
        extra = (
            self.store.sql("SELECT DISTINCT user_id FROM users")
            .df()["user_id"]
            .to_numpy(dtype=object)
        )
        users = pd.unique(np.concatenate([frame["user_id"].to_numpy(dtype=object), extra]))
        users.sort()
        data = Interactions.from_frame(
            frame,
            weight_col="weight",
            purchased_col="purchased",
            items=self.model.items_.ids,
            users=users,
        )
        if len(data.items) != len(self.model.items_):  # items added since training: not scorable
            keep = data.items.index(self.model.items_.ids)
            data = Interactions(
                data.matrix[:, keep],
                data.users,
                self.model.items_,
                None if data.purchased is None else data.purchased[:, keep],
            )
        now = utcnow().replace(microsecond=0)
        tables = []
        for lo in range(0, len(users), BATCH_USERS):
            hi = min(lo + BATCH_USERS, len(users))
            block = data.users.ids[lo:hi].astype(object)
            part = self.batch_rows(
                block,
                data.matrix[lo:hi],
                None if data.purchased is None else data.purchased[lo:hi],
                k,
                self._groups_of(block),
                now,
            )
            tables.append(pa.Table.from_pandas(part, preserve_index=False))
            if progress:
                progress(hi, len(users))
        result = pa.concat_tables(tables) if tables else None
        with self.store.transaction() as con:
            con.execute("DELETE FROM recommendations")
            if result is not None and result.num_rows:
                con.register("_recs", result)
                con.execute(
                    "INSERT INTO recommendations SELECT user_id, rank::INTEGER, item_id, score, model, reason, created_at FROM _recs"
                )
                con.unregister("_recs")
        return 0 if result is None else result.num_rows


def serving_version(store: Store, ref: str | None) -> tuple[Any, ...]:
    """What a loaded :class:`Recommend` for ``ref`` depends on: the registry's models and
    which are active, the catalog, and the segment members its popularity may split by. Equal
    versions mean a cached instance still serves what a fresh one would."""
    (models, active), (items, updated), (members,) = (
        store.rows(
            "SELECT count(*), string_agg(model_id, ',' ORDER BY model_id) FILTER (WHERE active) FROM models"
        )[0],
        store.rows("SELECT count(*), max(updated_at) FROM items")[0],
        store.rows("SELECT count(*) FROM segment_members")[0],
    )
    return (ref, models, active, items, updated, members)


def ranks_by_segment(model: Recommender) -> bool:
    """Whether the model's lists follow the user's segment (its popularity part has one)."""
    from jingzhun.recommend.models.popularity import Popularity

    if isinstance(model, Popularity):
        return len(model.groups_) > 0
    if isinstance(model, Hybrid):
        pop = model.components.get("popularity")
        return pop is not None and model.weights.get("popularity", 0) > 0 and ranks_by_segment(pop)
    return False


def _row_of(items: Vocabulary, item_ids: list[str], weights: np.ndarray) -> sp.csr_matrix:
    idx = items.index(item_ids)
    ok = idx >= 0
    row = sp.csr_matrix(
        (weights[ok], (np.zeros(int(ok.sum()), np.int64), idx[ok])), shape=(1, len(items))
    )
    row.sum_duplicates()
    return row


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1 or k > 1000:
        raise InputError(f"--k {k!r}", hint="use a k between 1 and 1000")


def model_segments(store: Store, record: ModelRecord) -> pd.DataFrame | None:
    """The members (user_id, segment, label) of the segment run ``record`` was trained with,
    whose segments its popularity ranks by; None for a model trained without one."""
    run = record.info.get("segment_run")
    if not run:
        return None
    from jingzhun.segment.runs import members_of

    return members_of(store, run)


def resolve_model(store: Store, ref: str | None) -> ModelRecord:
    """A trained model by model id or model name (its active/latest version)."""
    registry = Registry(store)
    if ref is None:
        record = registry.active("recommender")
        if record is None:
            raise NotFoundError(
                "no trained recommendation model yet", hint="run jingzhun recommend train"
            )
        return record
    return registry.find(ref, kind="recommender")

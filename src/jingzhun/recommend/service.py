"""The recommend stage on a store: train, batch, show, session.

Interactions come from the same stitched events the profiles read (anonymous history under
the known user, events before ``as_of``), weighted per event type and decayed by age. Models
are versioned as ``.npz`` files in ``<store>.models/recommend/`` with a row in
``recommend_models``; ``recommendations`` holds the latest batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from jingzhun.errors import InputError, NotFoundError
from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary
from jingzhun.recommend.models import Recommender, load, make, model_name
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.recommend.rules import Rules, explain
from jingzhun.store import Store

if TYPE_CHECKING:
    from jingzhun.config import RecommendSettings, Settings

BATCH_USERS = 4096


# -- data from the store ----------------------------------------------------------------------


def interaction_weights(settings: Settings) -> tuple[dict[str, float], float]:
    """Event weights and half-life of the interactions: ``[recommend]``'s, else the profile's,
    so that by default the content model's C(u, category) is the profile's affinity A(u)."""
    rs = settings.recommend
    return dict(
        rs.weights or settings.profile.weights
    ), rs.half_life_days or settings.profile.half_life_days


def interactions_frame(
    store: Store, settings: Settings, as_of: datetime, user_ids: list[str] | None = None
) -> pd.DataFrame:
    """(user_id, item_id, weight, purchased, last_seen) from the stitched events before
    ``as_of``, each event weighted by its type and halved every half-life of age (the
    profile's A(u) rule)."""
    return interactions_expr(store, settings, as_of, user_ids).to_pyarrow().to_pandas()


def interactions_expr(
    store: Store,
    settings: Settings,
    as_of: datetime,
    user_ids: list[str] | None = None,
    *,
    decay: bool = True,
) -> Any:
    """The Ibis expression of :func:`interactions_frame` (``decay=False``: plain sums of the
    event weights)."""
    import ibis

    from jingzhun.profile.traits import stitched

    backend = ibis.duckdb.from_connection(store.con)
    at = ibis.literal(as_of)
    e = stitched(backend, at, user_ids)
    weights, half_life = interaction_weights(settings)
    e = e.filter(e.user_id.notnull() & e.item_id.notnull() & e.event.isin(list(weights)))
    w = ibis.cases(*((e.event == k, float(v)) for k, v in weights.items()), else_=0.0)
    if decay:
        age_days = (at.epoch_seconds() - e.ts.epoch_seconds()).cast("float64") / 86400.0
        w = w * (ibis.literal(0.5).log() * age_days / half_life).exp()
    agg = (
        e.mutate(_w=w)
        .group_by(["user_id", "item_id"])
        .aggregate(
            weight=ibis._._w.sum(),
            purchased=(ibis._.event == "order_completed").any(),
            last_seen=ibis._.ts.max().epoch_seconds().cast("float64"),
        )
        .filter(ibis._.weight > 0)
    )
    return agg


class HistoryQuery:
    """One user's interactions, compiled to SQL once per ``as_of`` and run with the user id
    as a parameter: compiling the Ibis expression costs ~80 ms, running it a few ms."""

    _SENTINEL = "\x00jingzhun-user\x00"

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._sql: tuple[datetime, str] | None = None

    def __call__(self, user_id: str, as_of: datetime) -> pd.DataFrame:
        if self._sql is None or self._sql[0] != as_of:
            import ibis

            expr = interactions_expr(self.store, self.settings, as_of, [self._SENTINEL])
            sql = str(ibis.to_sql(expr, dialect="duckdb"))
            quoted = "'" + self._SENTINEL + "'"
            if quoted not in sql:  # pragma: no cover - Ibis changed how it writes literals
                raise RuntimeError("cannot parametrise the history query")
            self._sql = (as_of, sql.replace(quoted, "$user"))
        return self.store.con.execute(self._sql[1], {"user": user_id}).df()


def catalog(store: Store) -> pd.DataFrame:
    return store.sql(
        "SELECT item_id, title, description, category, brand, price, active, stock FROM items ORDER BY item_id"
    ).df()


def default_as_of(store: Store) -> datetime:
    from jingzhun.profile.build import default_as_of as profile_as_of

    return profile_as_of(store)


def segment_labels(
    store: Store, rs: RecommendSettings, users: Vocabulary
) -> tuple[np.ndarray | None, str | None]:
    """Each user's segment in the configured (or latest active) run; None without runs."""
    from jingzhun.segment.runs import members_of, resolve

    if not store.scalar("SELECT count(*) FROM segment_runs"):
        if rs.segment_run:
            raise NotFoundError(
                f"[recommend] segment_run {rs.segment_run!r}: no segment runs yet",
                hint="run jingzhun segment run",
            )
        return None, None
    run_id = resolve(store, rs.segment_run)["run_id"]
    members = members_of(store, run_id)
    labels = np.full(len(users), None, dtype=object)
    pos = users.index(members["user_id"].to_numpy(dtype=object))
    ok = pos >= 0
    labels[pos[ok]] = members["segment"].to_numpy(dtype=object)[ok]
    return labels, run_id


@dataclass
class Trained:
    model_id: str
    model: str
    params: dict[str, Any]
    users: int
    items: int
    interactions: int
    fit_seconds: float
    path: Path
    segment_run: str | None
    as_of: datetime
    validation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["path"] = str(self.path)
        d["as_of"] = self.as_of.isoformat(sep=" ")
        d["fit_seconds"] = round(self.fit_seconds, 3)
        return d


def models_dir(store: Store) -> Path:
    return store.path.with_name(store.path.name + ".models") / "recommend"


def train(
    store: Store,
    settings: Settings,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    as_of: datetime | None = None,
) -> Trained:
    """Fit a model on the store's interactions and make it the active one."""
    rs = settings.recommend
    name = model_name(model or rs.model)
    merged = dict(rs.params.get(name, {})) | dict(params or {})
    if name == "hybrid" and "component_params" not in merged:
        merged["component_params"] = {c: dict(v) for c, v in rs.params.items() if c != "hybrid"}
    at = as_of or default_as_of(store)
    frame = interactions_frame(store, settings, at)
    if frame.empty:
        raise NotFoundError(
            "no interactions to train on (no item events of known users)",
            hint="ingest events with item_id, then train",
        )
    items = catalog(store)
    data = Interactions.from_frame(
        frame, weight_col="weight", purchased_col="purchased", items=items["item_id"].tolist()
    )
    features = ItemFeatures.from_frame(items, data.items) if len(items) else None
    if name == "hybrid" and "components" not in merged:
        from jingzhun.recommend.evaluate import hybrid_components

        merged["components"] = ",".join(hybrid_components(data.n_items, features is not None))
    rec = make(name, **merged)
    groups, run_id = segment_labels(store, rs, data.users)
    t = time.perf_counter()
    validation = None
    if isinstance(rec, Hybrid) and "weights" not in merged:
        validation = tune_hybrid(rec, frame, items if features is not None else None)
    rec.fit(data, features=features, groups=groups)
    seconds = time.perf_counter() - t
    n = int(store.scalar("SELECT count(*) FROM recommend_models WHERE model = ?", [name])) + 1
    model_id = f"{name}-{n}"
    while store.scalar("SELECT count(*) FROM recommend_models WHERE model_id = ?", [model_id]):
        n += 1
        model_id = f"{name}-{n}"
    path = models_dir(store) / f"{model_id}.npz"
    rec.save(path)
    rel = str(path.relative_to(store.path.parent))
    try:
        with store.transaction() as con:
            con.execute("UPDATE recommend_models SET active = false WHERE active")
            con.execute(
                "INSERT INTO recommend_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true, now()::TIMESTAMP)",
                [
                    model_id,
                    name,
                    json.dumps(rec.params),
                    rel,
                    data.n_users,
                    data.n_items,
                    data.nnz,
                    at,
                    run_id,
                    seconds,
                    None if validation is None else json.dumps({"validation": validation}),
                ],
            )
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return Trained(
        model_id,
        name,
        rec.params,
        data.n_users,
        data.n_items,
        data.nnz,
        seconds,
        path,
        run_id,
        at,
        validation,
    )


#: Cells (users x items) of the dense score blocks the hybrid's weight tuning holds per component.
TUNING_CELLS = 50_000_000


def tune_hybrid(
    model: Hybrid,
    frame: pd.DataFrame,
    catalog_frame: pd.DataFrame | None,
    k: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose the hybrid's blend weights on a validation split of the store's interactions:
    each sampled user's latest item is held out (leave-last-out), the components are fitted
    on the rest, and the weights that maximise nDCG@k on the held-out items win."""
    from jingzhun.recommend.evaluate import Fold, split, tune_weights

    log = frame.rename(columns={"user_id": "user", "item_id": "item", "last_seen": "time"})
    log = log.assign(relevant=True)
    train_part, held = split(log, "leave-last-out", None, seed)
    n_items = max(int(log["item"].nunique()), 1)
    users = pd.unique(held["user"])
    cap = max(100, min(5000, TUNING_CELLS // n_items))
    if len(users) > cap:
        users = np.random.default_rng(seed).choice(users, cap, replace=False)
        held = held[held["user"].isin(users)]
    fold = Fold.make(train_part, held, catalog_frame)
    if len(fold.users) == 0:
        return {"skipped": "no user with two or more items to hold out"}
    comps = {
        name: make(name, **c.params).fit(fold.train, features=fold.features)
        for name, c in model.components.items()
    }
    weights, best, tried = tune_weights(comps, fold, k)
    model.set_weights(weights)
    return {
        "weights": weights,
        f"ndcg@{k}": round(best, 6),
        "users": len(fold.users),
        "tried": tried,
    }


def list_models(store: Store) -> pd.DataFrame:
    frame = store.sql(
        "SELECT model_id, model, active, users, items, interactions, round(fit_seconds, 3) AS fit_seconds, as_of, segment_run, created_at, params, metrics FROM recommend_models ORDER BY created_at DESC"
    ).df()
    for col in ("params", "metrics"):
        frame[col] = [json.loads(v) if isinstance(v, str) else None for v in frame[col]]
    return frame


# -- serving ----------------------------------------------------------------------------------


class Recommend:
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
        row = resolve_model(store, ref)
        self.model_id: str = row["model_id"]
        self.as_of: datetime = row["as_of"]
        self.model: Recommender = load(store.path.parent / row["path"])
        self.rules = Rules.from_settings(settings.recommend, **rule_overrides)
        items = catalog(store)
        self.features = (
            ItemFeatures.from_frame(items, self.model.items_, text=False) if len(items) else None
        )
        self.titles = dict(zip(items["item_id"], items["title"].fillna(""), strict=True))
        self.mask = self.rules.item_mask(self.features, len(self.model.items_))
        self._history = HistoryQuery(store, settings)
        self.groups = None
        if row.get("segment_run"):
            from jingzhun.segment.runs import members_of

            members = members_of(store, row["segment_run"])
            self.groups = dict(zip(members["user_id"], members["segment"], strict=True))

    def _block(
        self, users: np.ndarray, rows: sp.csr_matrix, purchased: sp.csr_matrix | None, k: int
    ) -> pd.DataFrame:
        m = self.model
        groups = (
            None
            if self.groups is None
            else np.asarray([self.groups.get(u) for u in users], dtype=object)
        )
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

    def history(self, user_ids: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Fresh interaction rows (and purchases) of users from the store, up to now."""
        at = default_as_of(self.store)
        if len(user_ids) == 1:
            frame = self._history(user_ids[0], at)
        else:
            frame = interactions_frame(self.store, self.settings, at, user_ids)
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

    def for_user(self, user_id: str, k: int = 10, lang: str = "en") -> dict[str, Any]:
        """Top ``k`` for one user, from their history up to now (an unknown user, or one with
        no history, takes the cold-start path)."""
        from jingzhun.recommend.rules import reason_text

        _check_k(k)
        rows, purchased = self.history([user_id])
        frame = self._block(np.asarray([user_id], dtype=object), rows, purchased, k)
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
                    "score": round(float(r.score), 6),
                    "reason": r.reason,
                    "explanation": reason_text(r.reason, lang, self.titles),
                }
                for r in frame.itertuples()
            ],
        }

    def session(self, item_ids: list[str], k: int = 10, user_id: str | None = None) -> pd.DataFrame:
        """Real-time: top ``k`` after the items of the current session (the latest counts
        most), from the model's item neighbours; session items and the rules' filters are
        left out."""
        _check_k(k)
        n = len(item_ids)
        w = 0.5 ** np.arange(n - 1, -1, -1, dtype=np.float32)  # newest item weight 1
        base = self._session_model()
        row = _row_of(base.items_, item_ids, w)
        idx, val = self._ranked(base, row, np.array([-1]), k, row, None, None)
        keep = idx[0] >= 0
        src = np.asarray(item_ids, dtype=object)
        reasons = explain(base, idx, row, None, None, base.items_.ids, None)
        return pd.DataFrame(
            {
                "rank": np.arange(1, k + 1)[keep],
                "item_id": base.items_.ids[idx[0][keep]],
                "score": val[0][keep],
                "reason": reasons[0][keep].astype(str),
            }
        ).assign(session_items=len(src))

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
        now = datetime.now().replace(microsecond=0)
        tables = []
        for lo in range(0, len(users), BATCH_USERS):
            hi = min(lo + BATCH_USERS, len(users))
            part = self._block(
                data.users.ids[lo:hi].astype(object),
                data.matrix[lo:hi],
                None if data.purchased is None else data.purchased[lo:hi],
                k,
            )
            tables.append(
                pa.Table.from_pandas(
                    part.assign(model=self.model_id, created_at=now)[
                        ["user_id", "rank", "item_id", "score", "model", "reason", "created_at"]
                    ],
                    preserve_index=False,
                )
            )
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


def resolve_model(store: Store, ref: str | None) -> dict[str, Any]:
    """A trained model by model id or model name (its active/latest version)."""
    if ref is None:
        rows = store.sql("SELECT * FROM recommend_models WHERE active LIMIT 1").df()
        if rows.empty:
            raise NotFoundError(
                "no trained recommendation model yet", hint="run jingzhun recommend train"
            )
    else:
        rows = store.sql(
            "SELECT * FROM recommend_models WHERE model_id = ? OR model = ? ORDER BY model_id = ? DESC, active DESC, created_at DESC LIMIT 1",
            [ref, ref, ref],
        ).df()
        if rows.empty:
            known = [
                r[0]
                for r in store.rows("SELECT model_id FROM recommend_models ORDER BY created_at")
            ]
            raise NotFoundError(
                f"no trained model {ref!r}",
                hint=("trained: " + ", ".join(known)) if known else "run jingzhun recommend train",
            )
    row = rows.iloc[0].to_dict()
    row["as_of"] = pd.Timestamp(row["as_of"]).to_pydatetime()
    return row


def store_log(store: Store, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's interactions as an evaluation log (user, item, rating = summed event
    weights without decay, time = last interaction) and the catalog as item features: the
    training interactions' own definition, undecayed."""
    expr = interactions_expr(store, settings, default_as_of(store), decay=False)
    log = (
        expr.select(user="user_id", item="item_id", rating="weight", time="last_seen")
        .to_pyarrow()
        .to_pandas()
    )
    return log, catalog(store)


def save_evaluation(store: Store, source: str, result: dict[str, Any]) -> None:
    store.run(
        "INSERT INTO recommend_evaluations VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?)",
        [source, result["split"], result["k"], result.get("best"), json.dumps(result)],
    )


def latest_evaluation(store: Store) -> dict[str, Any] | None:
    rows = store.rows("SELECT result FROM recommend_evaluations ORDER BY evaluated_at DESC LIMIT 1")
    return json.loads(rows[0][0]) if rows else None

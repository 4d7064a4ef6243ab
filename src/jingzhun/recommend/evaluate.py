"""Offline evaluation: interaction logs, splits, top-k metrics and the model comparison.

Kept apart from the models (as LensKit does): any model of the registry, any log.

Protocol
--------
- The log is split into train and test (``random-by-user``, ``stratified-by-item``,
  ``temporal-global`` or ``leave-last-out``); a validation split is carved from the train part
  the same way, and hyperparameters (and the hybrid's weights) are chosen on it only.
- The chosen configuration is refitted on the whole train part and scored on test: for each
  test user known in training, the top k of all training items except those they had in
  training. Every test interaction is relevant, unless ``min_rating`` sets a threshold.
- MAP divides each user's summed precision-at-hits by the number of relevant items (the
  convention of Microsoft Recommenders' ``map`` and of LensKit), nDCG uses binary gains and
  the ideal DCG of min(k, relevant) hits; coverage is the share of training items that appear
  in anyone's top k; novelty is the mean -log2 of a recommended item's share of users.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jingzhun.checks import bounded_int, finite
from jingzhun.errors import InputError
from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models import MODELS, Recommender, make, model_name
from jingzhun.recommend.models.hybrid import Hybrid

SPLITS = ("random-by-user", "stratified-by-item", "temporal-global", "leave-last-out")
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty")
#: The columns of a model comparison, as the CLI and the report show it.
COMPARISON_COLUMNS = ("model", *METRICS, "fit_seconds")


def comparison_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per model of an evaluation's JSON (``Evaluation.to_json()``)."""
    frame = pd.DataFrame(result["models"]).T.reset_index(names="model")
    return frame[list(COMPARISON_COLUMNS)]


DEFAULT_MODELS = ("pop", "itemknn", "userknn", "als", "bpr", "ease", "content", "hybrid")
#: Seeds numpy takes: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Most configurations tuned per model (the largest grid has 108).
MAX_BUDGET = 1000


# -- the log ----------------------------------------------------------------------------------


def read_log(
    path: str | Path,
    *,
    sep: str | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = None,
    time_col: str | None = None,
    header: bool | None = None,
) -> pd.DataFrame:
    """Read an interaction log (CSV/TSV/any separator, or Parquet) into columns
    user, item[, rating][, time]. Columns are named, or numbered from 1 for a file without
    a header (``--user-col 1``)."""
    from jingzhun.ingest.logs import read_file

    path = Path(path)
    if header is None:  # numbered columns mean a file without a header
        header = not all(
            c is None or str(c).isdigit() for c in (user_col, item_col, rating_col, time_col)
        )
    frame = read_file(path, "--interactions", sep=sep, header=header)
    cols = list(frame.columns)

    def pick(flag: str, name: str | None) -> str | None:
        if name is None:
            return None
        if name in cols:
            return name
        if str(name).isdigit() and 1 <= int(name) <= len(cols):
            return cols[int(name) - 1]
        raise InputError(
            f"--{flag} {name!r}: no such column in {path.name}",
            hint=f"the columns are: {', '.join(map(str, cols))} (or a number from 1)",
        )

    names = {"user": pick("user-col", user_col), "item": pick("item-col", item_col)}
    if rating_col is not None:
        names["rating"] = pick("rating-col", rating_col)
    if time_col is not None:
        names["time"] = pick("time-col", time_col)
    out = pd.DataFrame({k: frame[v] for k, v in names.items()})
    out = out.dropna(subset=["user", "item"])
    out["user"], out["item"] = out["user"].astype(str), out["item"].astype(str)
    if "rating" in out:
        r = pd.to_numeric(out["rating"], errors="coerce")
        bad = r.isna() & out["rating"].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{path.name}: row {row + 1 + int(bool(header))}, {names['rating']}={out['rating'].iloc[row]!r} is not a number",
                hint="fix the row or pick another --rating-col",
            )
        out["rating"] = r.astype(np.float64)
    if "time" in out:
        raw = out["time"]
        t = pd.to_numeric(raw, errors="coerce")
        if t.isna().any():
            t = pd.to_datetime(raw, errors="coerce", utc=True)
            if t.isna().any():
                row = int(np.flatnonzero(t.isna().to_numpy())[0])
                raise InputError(
                    f"{path.name}: row {row + 1 + int(bool(header))}, {names['time']}={raw.iloc[row]!r} is not a time",
                    hint="give epoch seconds or ISO 8601 times",
                )
            t = (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        out["time"] = t.astype(np.float64)
    return out.reset_index(drop=True)


def prepare(log: pd.DataFrame, *, min_rating: float | None = None) -> pd.DataFrame:
    """One row per (user, item): repeated pairs keep their best rating and last time.
    Adds ``relevant`` (rating ≥ min_rating, or always)."""
    if log.empty:
        raise InputError("the interaction log is empty", hint="give a file with rows")
    agg: dict[str, Any] = {}
    if "rating" in log:
        agg["rating"] = "max"
    if "time" in log:
        agg["time"] = "max"
    out = (
        log.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
        if agg
        else log.drop_duplicates(["user", "item"])
    )
    if min_rating is not None:
        if "rating" not in out:
            raise InputError("--min-rating needs --rating-col", hint="name the rating column")
        out["relevant"] = out["rating"] >= min_rating
    else:
        out["relevant"] = True
    if out["user"].nunique() < 2:
        raise InputError(
            f"the log has {out['user'].nunique()} user(s)",
            hint="evaluation needs at least 2 users with interactions",
        )
    return out.reset_index(drop=True)


# -- splits -----------------------------------------------------------------------------------


def parse_split(text: str) -> tuple[str, float | None]:
    """``NAME:RATIO`` (the train share) or ``leave-last-out``."""
    name, _, ratio = text.partition(":")
    if name not in SPLITS:
        raise InputError(
            f"--split {text!r}: unknown split",
            hint=f"use one of: {', '.join(s + ('' if s == 'leave-last-out' else ':RATIO') for s in SPLITS)}",
        )
    if name == "leave-last-out":
        if ratio:
            raise InputError(
                f"--split {text!r}: leave-last-out takes no ratio", hint="write leave-last-out"
            )
        return name, None
    try:
        r = float(ratio)
    except ValueError:
        raise InputError(
            f"--split {text!r}: the ratio is missing or not a number",
            hint=f"write {name}:0.75 (the train share)",
        ) from None
    if not 0 < r < 1:
        raise InputError(
            f"--split {text!r}: the ratio must be between 0 and 1",
            hint=f"write {name}:0.75 (the train share)",
        )
    return name, r


def split(
    frame: pd.DataFrame, how: str, ratio: float | None, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one-row-per-pair interactions into (train, test)."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    if how in ("random-by-user", "stratified-by-item"):
        key = "user" if how == "random-by-user" else "item"
        # Shuffle, then the first round(ratio · n_group) rows of each group train (at least
        # one row of each group trains, as Microsoft Recommenders' stratified split does).
        order = rng.permutation(n)
        shuffled = frame.iloc[order]
        pos = shuffled.groupby(key, sort=False).cumcount().to_numpy()
        size = shuffled.groupby(key, sort=False)[key].transform("size").to_numpy()
        cut = np.maximum(np.round(size * ratio), 1)
        is_train = np.empty(n, bool)
        is_train[order] = pos < cut
    elif how == "temporal-global":
        if "time" not in frame:
            raise InputError(
                "--split temporal-global needs --time-col",
                hint="name the time column, or use random-by-user",
            )
        cutoff = np.quantile(frame["time"].to_numpy(), ratio)
        is_train = frame["time"].to_numpy() <= cutoff
    else:  # leave-last-out
        t = frame["time"].to_numpy() if "time" in frame else rng.random(n)
        tie = rng.random(n)
        order = np.lexsort((tie, t, frame["user"].to_numpy()))
        last = np.zeros(n, bool)
        users = frame["user"].to_numpy()[order]
        is_last = np.r_[users[1:] != users[:-1], True]
        many = np.r_[True, users[1:] == users[:-1]] | np.r_[users[1:] == users[:-1], False]
        last[order[is_last & many]] = True
        is_train = ~last
    train, test = frame[is_train], frame[~is_train]
    return train.reset_index(drop=True), test.reset_index(drop=True)


# -- metrics ----------------------------------------------------------------------------------


def metrics_at_k(
    rec_idx: np.ndarray, relevant: sp.csr_matrix, k: int, item_share: np.ndarray
) -> dict[str, float]:
    """Top-k metrics for recommended item indices (users x k, -1 = empty) against a
    users x items 0/1 matrix of relevant test items (only users with ≥ 1 relevant item)."""
    n = rec_idx.shape[0]
    rec = rec_idx[:, :k]
    n_items = relevant.shape[1]
    rel_counts = np.diff(relevant.indptr).astype(np.float64)
    coo = relevant.tocoo()
    keys = np.sort(coo.row.astype(np.int64) * n_items + coo.col)
    rkeys = np.arange(n, dtype=np.int64)[:, None] * n_items + np.maximum(rec, 0)
    pos = np.clip(np.searchsorted(keys, rkeys), 0, max(len(keys) - 1, 0))
    hits = (rec >= 0) & (keys[pos] == rkeys) if len(keys) else np.zeros(rec.shape, bool)
    h = hits.astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    n_hits = h.sum(axis=1)
    disc = 1 / np.log2(ranks + 1)
    dcg = (h * disc).sum(axis=1)
    ideal = np.cumsum(disc)[np.minimum(rel_counts, k).astype(int) - 1]
    prec_at = np.cumsum(h, axis=1) / ranks
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    shown = rec[rec >= 0]
    share = np.maximum(item_share[shown], 1e-12) if len(shown) else np.array([1.0])
    return {
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / rel_counts)),
        "ndcg": float(np.mean(dcg / ideal)),
        "map": float(np.mean((prec_at * h).sum(axis=1) / rel_counts)),
        "hit_rate": float(np.mean(n_hits > 0)),
        "mrr": float(np.mean(1 / first)),
        "coverage": float(len(np.unique(shown)) / max(int((item_share > 0).sum()), 1)),
        "novelty": float(np.mean(-np.log2(share))),
    }


# -- the harness ------------------------------------------------------------------------------


@dataclass
class Fold:
    """A train part as Interactions and the relevant test items of its evaluable users."""

    train: Interactions
    users: np.ndarray  # test users known in training, with ≥ 1 relevant test item
    relevant: sp.csr_matrix  # users x train items (test items unseen in training drop out of the matrix but count in recall)
    n_relevant: np.ndarray
    dropped_users: int
    features: ItemFeatures | None = None

    @classmethod
    def make(cls, train: pd.DataFrame, test: pd.DataFrame, features: pd.DataFrame | None) -> Fold:
        # Binary feedback unless the log carries interaction weights (the store's do).
        data = Interactions.from_frame(
            train if "weight" in train else train.assign(weight=1.0),
            user_col="user",
            item_col="item",
            weight_col="weight",
        )
        rel = test[test["relevant"]]
        known = data.users.index(rel["user"].to_numpy(dtype=object)) >= 0
        users_all = pd.unique(rel["user"])
        users = pd.unique(rel.loc[known, "user"]).astype(object)
        rel = rel[known]
        uidx = pd.Index(users).get_indexer(rel["user"].to_numpy(dtype=object))
        iidx = data.items.index(rel["item"].to_numpy(dtype=object))
        n_rel = np.bincount(uidx, minlength=len(users)).astype(np.float64)
        ok = iidx >= 0
        relevant = sp.csr_matrix(
            (np.ones(int(ok.sum()), np.float32), (uidx[ok], iidx[ok])),
            shape=(len(users), data.n_items),
        )
        feats = None
        if features is not None:
            feats = ItemFeatures.from_frame(features, data.items)
        return cls(
            data,
            np.asarray(users, dtype=object),
            relevant,
            n_rel,
            len(users_all) - len(users),
            feats,
        )

    def score(self, model: Recommender, k: int) -> tuple[dict[str, float], float]:
        t = time.perf_counter()
        recs = model.recommend(self.users, k)
        seconds = time.perf_counter() - t
        m = metrics_at_k(recs.index, self._relevant_full(), k, self.train.item_popularity())
        return m, seconds

    def _relevant_full(self) -> sp.csr_matrix:
        """Relevant items with the unseen-in-training ones counted: they can never be hit,
        but they are in each user's denominator (recall, MAP, ideal DCG)."""
        extra = (self.n_relevant - np.diff(self.relevant.indptr)).astype(int)
        if not extra.any():
            return self.relevant
        # Phantom columns past the item range stand for those items: never recommended.
        width = int(extra.max())
        rows = np.repeat(np.arange(len(extra)), extra)
        cols = self.relevant.shape[1] + np.concatenate([np.arange(e) for e in extra])
        phantom = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)),
            shape=(len(extra), self.relevant.shape[1] + width),
        )
        base = sp.csr_matrix(self.relevant, shape=self.relevant.shape)
        base.resize((len(extra), self.relevant.shape[1] + width))
        return sp.csr_matrix(base + phantom)


def _grid(model: str, budget: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    cls = MODELS[model]
    axes = {k: p.grid for k, p in cls.PARAMS.items() if p.grid}
    if not axes:
        return [{}]
    combos = [dict(zip(axes, vals, strict=True)) for vals in itertools.product(*axes.values())]
    if len(combos) <= budget:
        return combos
    pick = rng.choice(len(combos), size=budget - 1, replace=False)
    return [{}] + [combos[i] for i in pick]


@dataclass
class ModelResult:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    recommend_seconds: float
    validation_ndcg: float | None = None
    tried: int = 1


@dataclass
class Evaluation:
    k: int
    split: str
    seed: int
    log: dict[str, int]
    results: dict[str, ModelResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The comparison as a JSON-ready dict (what ``recommend evaluate --json`` prints)."""
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "split": self.split,
            "seed": self.seed,
            "log": self.log,
            "models": {
                n: {
                    **{m: round(r.metrics[m], 6) for m in METRICS},
                    "fit_seconds": round(r.fit_seconds, 3),
                    "recommend_seconds": round(r.recommend_seconds, 3),
                    "params": r.params,
                    "validation_ndcg": None
                    if r.validation_ndcg is None
                    else round(r.validation_ndcg, 6),
                    "configurations_tried": r.tried,
                }
                for n, r in self.results.items()
            },
            "best": max(self.results, key=lambda n: self.results[n].metrics["ndcg"])
            if self.results
            else None,
        }


def evaluate(
    log: pd.DataFrame,
    *,
    split_spec: str = "random-by-user:0.75",
    models: Sequence[str] | None = None,
    k: int = 10,
    seed: int = 42,
    min_rating: float | None = None,
    item_features: pd.DataFrame | None = None,
    tune: bool = True,
    budget: int = 12,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Compare ``models`` on ``log`` (columns user, item[, rating][, time]) under one split.

    Each model's hyperparameters are chosen by nDCG@k on a validation split carved from the
    training part (up to ``budget`` configurations from its grid); the hybrid blends the tuned
    components with weights chosen the same way.
    """
    say = progress or (lambda _m: None)
    # A k of 2**31 tried to allocate 4.3 TiB of scores (issue 12); lists past 1000 items
    # measure nothing a shop shows.
    if not isinstance(k, int) or k < 1 or k > 1000:
        raise InputError(f"--k {k!r}", hint="use a k between 1 and 1000")
    # numpy refuses a negative seed, and a budget of 0 asked the grid for -1 configurations
    # (tracebacks); a NaN or infinite --min-rating made no item relevant (issue 12).
    seed = bounded_int(seed, "--seed", lo=0, hi=MAX_SEED)
    budget = bounded_int(budget, "--budget", lo=1, hi=MAX_BUDGET)
    if min_rating is not None:
        min_rating = finite(min_rating, "--min-rating")
    if models is None:  # every model that applies (content needs item features)
        models = [m for m in DEFAULT_MODELS if m != "content" or item_features is not None]
    names = [model_name(m) for m in models]
    if not names:
        raise InputError("--models is empty", hint=f"use some of: {', '.join(DEFAULT_MODELS)}")
    if "content" in names and item_features is None:
        raise InputError(
            "--models content needs item features",
            hint="give --item-features FILE, or leave content out",
        )
    how, ratio = parse_split(split_spec)
    frame = prepare(log, min_rating=min_rating)
    train, test = split(frame, how, ratio, seed)
    outer = Fold.make(train, test, item_features)
    if len(outer.users) == 0:
        raise InputError(
            f"--split {split_spec}: no test user with a relevant item is also in the training part",
            hint="use a larger log, another split or ratio"
            + (", or a lower --min-rating" if min_rating is not None else ""),
        )
    vtrain, vtest = split(train, how, ratio, seed + 1)
    inner = Fold.make(vtrain, vtest, item_features)
    can_tune = tune and len(inner.users) > 0
    ev = Evaluation(
        k,
        split_spec,
        seed,
        {
            "interactions": len(frame),
            "users": int(frame["user"].nunique()),
            "items": int(frame["item"].nunique()),
            "train": len(train),
            "test": len(test),
            "test_users": len(outer.users),
            "test_users_unknown": outer.dropped_users,
        },
    )
    rng = np.random.default_rng(seed)
    tuned: dict[str, tuple[dict[str, Any], float | None, int]] = {}
    inner_models: dict[str, Recommender] = {}
    comps = (
        hybrid_components(outer.train.n_items, item_features is not None)
        if "hybrid" in names
        else []
    )
    for name in [n for n in names if n != "hybrid"] + [c for c in comps if c not in names]:
        params, best, tried = {}, None, 1
        if can_tune:
            configs = _grid(name, budget, rng)
            tried = len(configs)
            for cfg in configs:
                m = make(name, **cfg).fit(inner.train, features=inner.features)
                score = inner.score(m, k)[0]["ndcg"]
                if best is None or score > best:
                    params, best, inner_models[name] = cfg, score, m
            say(f"{name}: tuned on validation ({tried} configurations), nDCG@{k} {best:.4f}")
        tuned[name] = (params, best, tried)
    for name in names:
        if name == "hybrid":
            continue
        params = tuned[name][0]
        t = time.perf_counter()
        model = make(name, **params).fit(outer.train, features=outer.features)
        fit_s = time.perf_counter() - t
        m, rec_s = outer.score(model, k)
        ev.results[name] = ModelResult(
            name, make(name, **params).params, m, fit_s, rec_s, tuned[name][1], tuned[name][2]
        )
        say(f"{name}: nDCG@{k} {m['ndcg']:.4f}")
    if "hybrid" in names:
        weights, vbest, tried = {c: 1.0 for c in comps}, None, 1
        if can_tune:
            weights, vbest, tried = tune_weights({c: inner_models[c] for c in comps}, inner, k)
            say(f"hybrid: weights {weights} on validation, nDCG@{k} {vbest:.4f}")
        t = time.perf_counter()
        fitted = {
            c: make(c, **tuned[c][0]).fit(outer.train, features=outer.features) for c in comps
        }
        model = Hybrid.from_components(fitted, weights)
        fit_s = time.perf_counter() - t
        m, rec_s = outer.score(model, k)
        ev.results["hybrid"] = ModelResult("hybrid", model.params, m, fit_s, rec_s, vbest, tried)
        say(f"hybrid: nDCG@{k} {m['ndcg']:.4f}")
    return ev


def hybrid_components(n_items: int, has_features: bool) -> list[str]:
    """The hybrid's candidate components: EASE where the catalog fits its items² matrix,
    ALS, item-kNN, content (with item features) and popularity; tuning may zero any out."""
    from jingzhun.recommend.models.ease import EASE

    comps = ["ease"] if n_items <= EASE.PARAMS["max_items"].default else []
    comps += ["als", "itemknn"] + (["content"] if has_features else []) + ["popularity"]
    return comps


def tune_weights(
    components: Mapping[str, Recommender],
    fold: Fold,
    k: int,
    levels: Iterable[float] = (0.0, 0.25, 0.5, 1.0, 2.0),
) -> tuple[dict[str, float], float, int]:
    """Coordinate search over the blend weights on a validation fold (two sweeps)."""
    hybrid = Hybrid.from_components(components, {c: 1.0 for c in components})
    hybrid._all_components = True
    rows, uidx = hybrid.user_rows(fold.users, None)
    ranks = hybrid.component_ranks(rows, uidx, None, [rows], None)
    rel = fold._relevant_full()
    share = fold.train.item_popularity()
    seen = rows.tocoo()

    def ndcg(weights: Mapping[str, float]) -> float:
        from jingzhun.recommend.models.base import topk_dense

        s = Hybrid.blend(ranks, weights) + 1e-6 * (
            hybrid.popularity_ / max(float(hybrid.popularity_.max()), 1.0)
        )
        s[seen.row, seen.col] = -np.inf
        idx, _ = topk_dense(s, k)
        return metrics_at_k(idx, rel, k, share)["ndcg"]

    # Start from the better of the equal blend and the best single component, so the blend
    # is never worse on validation than its best part.
    starts = [{c: 1.0 for c in components}] + [
        {c: float(c == one) for c in components} for one in components
    ]
    scored = [(ndcg(w), w) for w in starts]
    best, weights = max(scored, key=lambda t: t[0])
    tried = len(starts)
    for _sweep in range(2):
        for c in components:
            for level in levels:
                trial = weights | {c: level}
                if trial == weights or not any(trial.values()):
                    continue
                score = ndcg(trial)
                tried += 1
                if score > best + 1e-9:
                    best, weights = score, trial
    return weights, best, tried

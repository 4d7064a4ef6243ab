"""Business rules on top of any model, and the explanation of each recommended item.

Rules act in three places, all vectorised over a block of users:

- an item mask (active and in stock, include/exclude categories, price range), passed to the
  model so that filtered items never take a top-k slot;
- per-user exclusions (items already bought, except in re-buy categories);
- a re-rank of the model's top candidates: boosts, then at most N items per category.

Each kept item gets a reason code, rendered in the user's language by :func:`reason_text`:
``bought:ITEM`` / ``viewed:ITEM`` (the most similar item in the user's history), ``interest:CAT``
(the item's category is among the user's top categories), ``segment:SEG`` (popular in the
user's segment) or ``popular``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jingzhun.recommend.data import ItemFeatures

HISTORY_FOR_REASONS = 20  # the user's strongest items compared with each recommendation
TOP_INTERESTS = 3


@dataclass(frozen=True)
class Rules:
    exclude_purchased: bool = True
    rebuy_categories: Sequence[str] = ()
    only_available: bool = True
    include_categories: Sequence[str] = ()
    exclude_categories: Sequence[str] = ()
    price_min: float | None = None
    price_max: float | None = None
    max_per_category: int | None = 3
    boost: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: object, **overrides: object) -> Rules:
        names = cls.__dataclass_fields__
        values = {n: getattr(s, n) for n in names if hasattr(s, n)}
        values |= {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)  # type: ignore[arg-type]

    def item_mask(self, features: ItemFeatures | None, n_items: int) -> np.ndarray | None:
        """Items any user may get (None: all)."""
        if features is None:
            return None
        mask = np.ones(n_items, bool)
        if self.only_available:
            mask &= features.available
        if self.include_categories:
            mask &= np.isin(features.category, list(self.include_categories))
        if self.exclude_categories:
            mask &= ~np.isin(features.category, list(self.exclude_categories))
        if self.price_min is not None:
            mask &= ~(features.price < self.price_min)
        if self.price_max is not None:
            mask &= ~(features.price > self.price_max)
        return None if mask.all() else mask

    def exclusions(
        self, purchased: sp.csr_matrix | None, features: ItemFeatures | None
    ) -> sp.csr_matrix | None:
        """Per-user items to leave out: purchases outside the re-buy categories."""
        if not self.exclude_purchased or purchased is None:
            return None
        if self.rebuy_categories and features is not None:
            keep = ~np.isin(features.category, list(self.rebuy_categories))
            purchased = sp.csr_matrix(purchased @ sp.diags(keep.astype(np.float32)))
            purchased.eliminate_zeros()
        return purchased

    @property
    def candidates_factor(self) -> int:
        """How many more candidates than k the re-rank needs."""
        return 5 if (self.max_per_category or self.boost) else 1

    def rerank(
        self,
        idx: np.ndarray,
        scores: np.ndarray,
        k: int,
        features: ItemFeatures | None,
        items: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boost, cap items per category, keep the first k (idx -1 = empty)."""
        idx = idx.copy()
        val = scores.astype(np.float64).copy()
        if self.boost:
            b = np.ones(len(items))
            pos = pd.Index(items).get_indexer(list(self.boost))
            ok = pos >= 0
            b[pos[ok]] = np.asarray(list(self.boost.values()), np.float64)[ok]
            # Boost on rank, not raw score (scores may be negative or on any scale): an item's
            # candidate rank r gets (M - r) · boost, so boost 2 lifts it past items ranked
            # up to twice as well.
            m = idx.shape[1]
            base = np.broadcast_to(np.arange(m, 0, -1, dtype=np.float64), idx.shape).copy()
            key = base * np.where(idx >= 0, b[np.maximum(idx, 0)], 0)
            key[idx < 0] = -np.inf
            order = np.argsort(-key, axis=1, kind="stable")
            idx = np.take_along_axis(idx, order, axis=1)
            val = np.take_along_axis(val, order, axis=1)
        keep = idx >= 0
        if self.max_per_category and features is not None:
            # Items without a category (code -1) are not capped together.
            codes = pd.factorize(pd.Series(features.category, dtype=object).replace("", None))[0]
            cat = np.where(keep, codes[np.maximum(idx, 0)], -1)
            # Position of each candidate among its row's candidates of the same category.
            n, m = idx.shape
            flat_key = np.arange(n)[:, None] * (cat.max(initial=0) + 2) + (cat + 1)
            order = np.lexsort((np.broadcast_to(np.arange(m), (n, m)).ravel(), flat_key.ravel()))
            sk = flat_key.ravel()[order]
            start = np.r_[True, sk[1:] != sk[:-1]]
            grp = np.cumsum(start) - 1
            first = np.flatnonzero(start)
            within = np.empty(n * m, np.int64)
            within[order] = np.arange(n * m) - first[grp]
            keep &= (within.reshape(n, m) < self.max_per_category) | (cat < 0)
        # Move kept candidates to the front, in order, and cut at k.
        order = np.argsort(~keep, axis=1, kind="stable")
        idx = np.take_along_axis(np.where(keep, idx, -1), order, axis=1)[:, :k]
        val = np.take_along_axis(np.where(keep, val, np.nan), order, axis=1)[:, :k]
        if idx.shape[1] < k:
            pad = k - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
            val = np.pad(val, ((0, 0), (0, pad)), constant_values=np.nan)
        return idx, val


def top_history(rows: sp.csr_matrix, h: int = HISTORY_FOR_REASONS) -> np.ndarray:
    """Each row's h strongest items (n x h indices, -1 pad), vectorised."""
    coo = rows.tocoo()
    order = np.lexsort((-coo.data, coo.row))
    r, c = coo.row[order], coo.col[order]
    start = np.r_[0, np.cumsum(np.bincount(r, minlength=rows.shape[0]))[:-1]]
    pos = np.arange(len(r)) - start[r]
    out = np.full((rows.shape[0], h), -1, np.int64)
    ok = pos < h
    out[r[ok], pos[ok]] = c[ok]
    return out


def explain(
    model: object,
    rec: np.ndarray,
    rows: sp.csr_matrix,
    purchased_rows: sp.csr_matrix | None,
    features: ItemFeatures | None,
    items: np.ndarray,
    groups: np.ndarray | None,
) -> np.ndarray:
    """A reason code per recommended item (n x k object array; None where empty)."""
    n, k = rec.shape
    out = np.full((n, k), "popular", dtype=object)
    if groups is not None:
        g = np.asarray(groups, dtype=object)
        has = np.asarray([x is not None and x == x and str(x) != "" for x in g])
        seg = np.where(has, np.char.add("segment:", g.astype(str)), "popular")
        out[:] = seg[:, None]
    hist = top_history(rows)
    if features is not None and rows.nnz:
        cats, codes = np.unique(features.category, return_inverse=True)
        onehot = sp.csr_matrix(
            (np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)),
            shape=(len(codes), len(cats)),
        )
        interest = (rows @ onehot).toarray()
        interest[:, cats == ""] = 0
        t = min(TOP_INTERESTS, interest.shape[1])
        top = np.argpartition(-interest, t - 1, axis=1)[:, :t]
        top_ok = np.take_along_axis(interest, top, axis=1) > 0
        item_cat = codes[np.maximum(rec, 0)]
        match = ((item_cat[:, :, None] == top[:, None, :]) & top_ok[:, None, :]).any(axis=2) & (
            rec >= 0
        )
        out[match] = np.char.add("interest:", cats[item_cat[match]].astype(str))
    if (hist >= 0).any():
        a = np.broadcast_to(np.maximum(rec, 0)[:, :, None], (n, k, hist.shape[1]))
        b = np.broadcast_to(np.maximum(hist, 0)[:, None, :], (n, k, hist.shape[1]))
        sim = np.asarray(
            model.pair_similarity(np.ascontiguousarray(a), np.ascontiguousarray(b)), np.float64
        )  # type: ignore[attr-defined]
        sim[np.broadcast_to((hist < 0)[:, None, :], sim.shape)] = -np.inf
        sim[a == b] = -np.inf
        best = sim.argmax(axis=2)
        best_sim = np.take_along_axis(sim, best[:, :, None], axis=2)[:, :, 0]
        src = np.take_along_axis(hist, best, axis=1)
        ok = (best_sim > 0) & np.isfinite(best_sim) & (rec >= 0)
        bought = np.zeros_like(ok)
        if purchased_rows is not None and purchased_rows.nnz:
            pr = sp.csr_matrix(purchased_rows)
            rr = np.broadcast_to(np.arange(n)[:, None], src.shape)
            bought = np.asarray(pr[rr.ravel(), np.maximum(src, 0).ravel()]).reshape(src.shape) > 0
        verb = np.where(bought, "bought:", "viewed:")
        out[ok] = np.char.add(verb[ok].astype(str), items[src[ok]].astype(str))
    out[rec < 0] = None
    return out


_TEXT = {
    "en": {
        "bought": "because you bought {}",
        "viewed": "because you viewed {}",
        "interest": "matches your interest in {}",
        "segment": "popular in your segment {}",
        "popular": "popular right now",
    },
    "zh": {
        "bought": "因为您购买了{}",
        "viewed": "因为您浏览过{}",
        "interest": "符合您对{}的兴趣",
        "segment": "在您所在的群体{}中很受欢迎",
        "popular": "当前热门",
    },
}


def reason_text(
    code: str | None,
    lang: str = "en",
    titles: Mapping[str, str] | None = None,
    segments: Mapping[str, str] | None = None,
) -> str:
    """A reason code as a sentence ("because you bought Red Tea Cup").

    ``titles`` (item id -> title) names the items of ``bought:``/``viewed:``; ``segments``
    (segment -> its portrait's name, as stored: English) names the segment of ``segment:``,
    quoted and in ``lang`` ('popular in your segment "High spend · toys"'). Without them, the
    id is said as it is."""
    if not code:
        return ""
    kind, _, arg = code.partition(":")
    text = _TEXT.get(lang, _TEXT["en"]).get(kind)
    if text is None:
        return code
    if kind in ("bought", "viewed") and titles:
        arg = titles.get(arg) or arg
    if kind == "segment" and segments and segments.get(arg):
        from jingzhun.segment.read import label_text

        name = label_text(segments[arg], lang if lang == "zh" else "en")
        arg = f"「{name}」" if lang == "zh" else f'"{name}"'
    return text.format(arg)

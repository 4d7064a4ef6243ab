"""Interaction data: an id <-> index :class:`Vocabulary` and the :class:`Interactions` matrix.

Models see matrix indices; callers never do. Every public model method takes and returns ids,
and the vocabularies travel with a saved model so that a loaded model maps the same ids.

Examples
--------
>>> import pandas as pd
>>> from jingzhun.recommend.data import Interactions
>>> log = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
>>> data = Interactions.from_frame(log)
>>> data.matrix.shape, data.users.ids.tolist(), data.items.index(["y", "zz"]).tolist()
((2, 2), ['a', 'b'], [1, -1])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jingzhun.errors import InputError

#: The catalog's columns training and serving read.
CATALOG_COLUMNS = (
    "item_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "active",
    "stock",
)


class Vocabulary:
    """A fixed, ordered set of ids and their matrix indices (0 … n-1).

    Parameters
    ----------
    ids : iterable of str
        Distinct ids, in index order.
    """

    def __init__(self, ids: Iterable[str] | np.ndarray) -> None:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).astype(str)
        self._index = pd.Index(arr)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise InputError(f"vocabulary: id {dup!r} appears twice", hint="pass distinct ids")
        self.ids: np.ndarray = arr

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._index

    def index(self, ids: Iterable[str] | np.ndarray | str) -> np.ndarray:
        """Matrix indices of ``ids``; -1 for an id this vocabulary does not hold."""
        if isinstance(ids, str):
            ids = [ids]
        return self._index.get_indexer(
            np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object)
        ).astype(np.int64)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"


@dataclass
class Interactions:
    """A user x item matrix of interaction weights with its two vocabularies.

    ``matrix`` is CSR float32 (users x items); ``last_seen`` (optional, same shape and
    pattern) holds each pair's last time as epoch seconds, for temporal splits and recency;
    ``purchased`` marks pairs that include a purchase (rules exclude them from offers).
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    purchased: sp.csr_matrix | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.users), len(self.items)):
            raise ValueError("matrix shape does not match the vocabularies")
        self.matrix = sp.csr_matrix(self.matrix, dtype=np.float32)
        self.matrix.sum_duplicates()
        self.matrix.sort_indices()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        weight_col: str | None = None,
        purchased_col: str | None = None,
        items: Iterable[str] | None = None,
        users: Iterable[str] | None = None,
    ) -> Interactions:
        """Build from a long table of (user, item[, weight]) rows; repeated pairs add up.

        ``items`` / ``users`` fix the vocabularies (e.g. the whole catalog, so that items
        nobody touched yet are still reachable by content); ids outside them are added.
        """
        for col in (user_col, item_col):
            if col not in frame.columns:
                raise InputError(
                    f"interactions: no column {col!r}",
                    hint=f"the columns are: {', '.join(map(str, frame.columns))}",
                )
        u = frame[user_col].astype(str).to_numpy(dtype=object)
        i = frame[item_col].astype(str).to_numpy(dtype=object)
        uvoc = _vocab(users, u)
        ivoc = _vocab(items, i)
        rows, cols = uvoc.index(u), ivoc.index(i)
        w = (
            np.ones(len(frame), np.float32)
            if weight_col is None
            else frame[weight_col].to_numpy(dtype=np.float32)
        )
        shape = (len(uvoc), len(ivoc))
        matrix = sp.csr_matrix((w, (rows, cols)), shape=shape, dtype=np.float32)
        purchased = None
        if purchased_col is not None:
            flag = frame[purchased_col].to_numpy(dtype=bool)
            purchased = sp.csr_matrix(
                (np.ones(int(flag.sum()), np.float32), (rows[flag], cols[flag])), shape=shape
            )
            purchased.data[:] = 1.0
            purchased.sum_duplicates()
            purchased.data[:] = 1.0
        return cls(matrix, uvoc, ivoc, purchased)

    def rows(self, user_ids: Iterable[str] | np.ndarray) -> sp.csr_matrix:
        """The interaction rows of ``user_ids``; an unknown user gets an empty row."""
        return take_rows(self.matrix, self.users.index(user_ids))

    def row_of_items(
        self, item_ids: Iterable[str], weights: Iterable[float] | None = None
    ) -> sp.csr_matrix:
        """A one-row matrix for an ad-hoc history (a session, a new user's first events)."""
        idx = self.items.index(list(item_ids))
        w = (
            np.ones(len(idx), np.float32)
            if weights is None
            else np.asarray(list(weights), np.float32)
        )
        keep = idx >= 0
        return sp.csr_matrix(
            (w[keep], (np.zeros(int(keep.sum()), np.int64), idx[keep])), shape=(1, self.n_items)
        )

    def to_frame(self) -> pd.DataFrame:
        coo = self.matrix.tocoo()
        return pd.DataFrame(
            {
                "user_id": self.users.ids[coo.row],
                "item_id": self.items.ids[coo.col],
                "weight": coo.data,
            }
        )

    def item_popularity(self) -> np.ndarray:
        """Share of users who interacted with each item."""
        counts = np.diff(self.matrix.tocsc().indptr).astype(np.float64)
        return counts / max(self.n_users, 1)


def take_rows(matrix: sp.csr_matrix, idx: np.ndarray) -> sp.csr_matrix:
    """Rows ``idx`` of a CSR matrix, an empty row where ``idx`` is -1. Row slicing costs the
    rows taken, not the matrix's height (a selection-matrix product would touch every row)."""
    idx = np.asarray(idx, dtype=np.int64)
    known = idx >= 0
    if not len(idx) or not known.any():
        return sp.csr_matrix((len(idx), matrix.shape[1]), dtype=matrix.dtype)
    picked = matrix[np.where(known, idx, 0)]
    if known.all():
        return sp.csr_matrix(picked)
    lengths = np.where(known, np.diff(picked.indptr), 0)
    keep = np.repeat(known, np.diff(picked.indptr))
    indptr = np.r_[0, np.cumsum(lengths)]
    return sp.csr_matrix((picked.data[keep], picked.indices[keep], indptr), shape=picked.shape)


def _vocab(fixed: Iterable[str] | None, seen: np.ndarray) -> Vocabulary:
    seen_u = pd.unique(pd.Series(seen, dtype=object))
    if fixed is None:
        return Vocabulary(np.sort(seen_u.astype(str)))
    base = np.asarray(list(fixed), dtype=str)
    extra = np.setdiff1d(seen_u.astype(str), base)
    return Vocabulary(np.concatenate([base, np.sort(extra)]))


@dataclass
class ItemFeatures:
    """Item side information for content scores: one sparse block per feature kind.

    Each block (category one-hot, brand one-hot, price band one-hot, TF-IDF of text) is an
    items x features CSR matrix aligned with ``items``; ``names`` label its columns.
    """

    items: Vocabulary
    blocks: dict[str, sp.csr_matrix]
    names: dict[str, np.ndarray]
    category: np.ndarray  # per item, "" when unknown (rules and explanations use it)
    price: np.ndarray  # per item, NaN when unknown
    available: np.ndarray  # bool per item: active and in stock (or unknown)
    titles: np.ndarray

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        items: Vocabulary,
        *,
        price_bands: int = 5,
        max_text_features: int = 5000,
        text: bool = True,
    ) -> ItemFeatures:
        """Build from a catalog table (item_id, title, description, category, brand, price,
        active, stock); items of ``items`` missing from ``frame`` get empty features.
        ``text=False`` skips the TF-IDF block (serving needs only categories, prices and
        availability; a fitted content model keeps its own blocks)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        n = len(items)
        cat = frame.reindex(columns=list(CATALOG_COLUMNS))
        pos = items.index(cat["item_id"].astype(str).to_numpy(dtype=object))
        keep = pos >= 0
        cat, pos = cat[keep], pos[keep]

        def column(name: str, fill: Any, dtype: Any) -> np.ndarray:
            out = np.full(n, fill, dtype=dtype)
            values = cat[name]
            if dtype is object:
                out[pos] = values.astype(object).where(values.notna(), fill).to_numpy(dtype=object)
            else:
                out[pos] = values.to_numpy(dtype=dtype, na_value=fill)
            return out

        category = column("category", "", object)
        brand = column("brand", "", object)
        price = column("price", np.nan, np.float64)
        active = column("active", 1.0, np.float64) != 0
        stock = column("stock", np.nan, np.float64)
        available = active & ~(stock <= 0)
        titles = column("title", "", object)
        documents = titles.astype(str) + " " + column("description", "", object).astype(str)

        blocks: dict[str, sp.csr_matrix] = {}
        names: dict[str, np.ndarray] = {}
        for key, values in (("category", category), ("brand", brand)):
            blocks[key], names[key] = _one_hot(values)
        # Price bands are quantiles within the item's category: "cheap for a laptop" is what
        # a shopper's price level is about, not the absolute price.
        band = _price_band(price, category, price_bands)
        blocks["price_band"], names["price_band"] = _one_hot(band)
        if text and np.char.str_len(documents.astype(str)).max(initial=0) > 1:
            vec = TfidfVectorizer(
                max_features=max_text_features, min_df=2, sublinear_tf=True, dtype=np.float32
            )
            try:
                blocks["text"] = sp.csr_matrix(
                    vec.fit_transform(documents.astype(str)), dtype=np.float32
                )
                names["text"] = vec.get_feature_names_out().astype(str)
            except ValueError:  # every document empty after stop words / min_df
                pass
        return cls(items, blocks, names, category.astype(str), price, available, titles.astype(str))


def _one_hot(values: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object).replace("", None))
    rows = np.flatnonzero(codes >= 0)
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, codes[rows])), shape=(len(values), len(uniques))
    )
    return m, np.asarray(uniques, dtype=str)


def _price_band(price: np.ndarray, category: np.ndarray, bands: int) -> np.ndarray:
    frame = pd.DataFrame({"p": price, "c": category})
    pct = frame.groupby("c")["p"].rank(pct=True)
    code = np.ceil(pct.to_numpy() * bands).clip(1, bands)
    out = np.where(np.isnan(code), "", "band" + np.nan_to_num(code).astype(int).astype(str))
    return out.astype(object)

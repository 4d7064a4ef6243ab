"""Neighbourhood models: item-kNN and user-kNN on implicit's cosine / BM25 similarity."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender, sparse_restore, sparse_state


def _neighbours(
    matrix: sp.csr_matrix, k: int, similarity: str, k1: float, b: float
) -> sp.csr_matrix:
    """Top-``k`` neighbour similarity between the columns of ``matrix`` (rows x cols),
    computed by implicit (which wants float64 input)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight
    from sklearn.preprocessing import normalize

    x = sp.csr_matrix(matrix, dtype=np.float64)
    # implicit's Cosine/BM25 recommenders hand a COO matrix to its kNN (and warn): weight
    # the columns here, as they do, and give ItemItemRecommender a CSR matrix.
    if similarity == "cosine":
        x = sp.csr_matrix(normalize(x.T.tocsr(), axis=1).T, dtype=np.float64)
    else:
        x = sp.csr_matrix(bm25_weight(x.T.tocsr(), K1=k1, B=b).T, dtype=np.float64)
    model = ItemItemRecommender(K=k)
    model.fit(x, show_progress=False)
    return sp.csr_matrix(model.similarity, dtype=np.float32)


_KNN_PARAMS = {
    "neighbours": Param(100, int, 1, 100000, grid=(20, 50, 100, 200, 400)),
    "similarity": Param("cosine", str, choices=("cosine", "bm25"), grid=("cosine", "bm25")),
    "bm25_k1": Param(1.2, float, 0, 100),
    "bm25_b": Param(0.75, float, 0, 1),
}


class ItemKNN(Recommender):
    """Item-kNN: a user's score for item j sums the similarity of j to the items they had.

    ``similar_items`` and session recommendations read the neighbour lists directly.
    """

    name = "itemknn"
    PARAMS: ClassVar[dict[str, Param]] = dict(_KNN_PARAMS)

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        p = self.params
        self.similarity_ = _neighbours(
            data.matrix, p["neighbours"], p["similarity"], p["bm25_k1"], p["bm25_b"]
        )

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        s = (rows @ self.similarity_).toarray().astype(np.float32)
        s[np.diff(rows.indptr) == 0] = np.nan
        return s

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        s = self.similarity_[idx].toarray()
        s[s == 0] = -np.inf
        return s

    def pair_similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[a.ravel(), b.ravel()], np.float32).reshape(a.shape)

    def _state(self) -> dict[str, np.ndarray]:
        return sparse_state("sim", self.similarity_)

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.similarity_ = sparse_restore(state, "sim")


class UserKNN(Recommender):
    """User-kNN: a user's score for item j sums their neighbours' weights on j, each
    neighbour weighted by similarity. A user not seen in training is matched to the
    training users by cosine over their history."""

    name = "userknn"
    PARAMS: ClassVar[dict[str, Param]] = _KNN_PARAMS | {
        "neighbours": Param(50, int, 1, 100000, grid=(10, 20, 50, 100, 200))
    }

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        p = self.params
        self.similarity_ = _neighbours(
            data.matrix.T.tocsr(), p["neighbours"], p["similarity"], p["bm25_k1"], p["bm25_b"]
        )
        self.similarity_.setdiag(0)
        self.similarity_.eliminate_zeros()

    def _normalised(self) -> sp.csr_matrix:
        if not hasattr(self, "_norm"):
            norms = np.sqrt(np.asarray(self.seen_.multiply(self.seen_).sum(axis=1)).ravel())
            self._norm = sp.diags(1 / np.maximum(norms, 1e-12)) @ self.seen_
        return self._norm

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        n = rows.shape[0]
        sims = sp.lil_matrix((n, self.seen_.shape[0]), dtype=np.float32)
        known = uidx >= 0
        sims = sp.csr_matrix(sims)
        parts = []
        if known.any():
            pick = sp.csr_matrix(
                (np.ones(int(known.sum()), np.float32), (np.flatnonzero(known), uidx[known])),
                shape=(n, self.seen_.shape[0]),
            )
            parts.append(pick @ self.similarity_)
        unknown = ~known & (np.diff(rows.indptr) > 0)
        if unknown.any():
            r = rows[np.flatnonzero(unknown)]
            rn = (
                sp.diags(
                    1 / np.maximum(np.sqrt(np.asarray(r.multiply(r).sum(axis=1)).ravel()), 1e-12)
                )
                @ r
            )
            dense = (rn @ self._normalised().T).toarray()
            kk = min(self.params["neighbours"], dense.shape[1])
            cut = -np.partition(-dense, kk - 1, axis=1)[:, kk - 1 : kk]
            dense[dense < cut] = 0
            place = sp.csr_matrix(
                (
                    np.ones(int(unknown.sum()), np.float32),
                    (np.flatnonzero(unknown), np.arange(int(unknown.sum()))),
                ),
                shape=(n, int(unknown.sum())),
            )
            parts.append(place @ sp.csr_matrix(dense, dtype=np.float32))
        for part in parts:
            sims = sims + part
        s = (sims @ self.seen_).toarray().astype(np.float32)
        s[~known & ~unknown] = np.nan
        return s

    def _item_embedding(self) -> sp.csr_matrix:
        cols = self.seen_.T.tocsr()
        norms = np.sqrt(np.asarray(cols.multiply(cols).sum(axis=1)).ravel())
        return sp.diags(1 / np.maximum(norms, 1e-12)) @ cols

    def _state(self) -> dict[str, np.ndarray]:
        return sparse_state("sim", self.similarity_)

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.similarity_ = sparse_restore(state, "sim")

"""Content-based scores: the seeds' R(u,v) = Σ_k β_k C(u,k) V(k,v).

V(k, v) is item v's value on feature k: one-hot category, brand and price band (within its
category), and the TF-IDF of its title and description. C(u, k) is the user's weighted,
time-decayed average of V over the items they interacted with; on the category block this
is exactly the profile's category affinity A(u) (same weights, same decay, shares summing
to 1). β_k weighs each block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender, sparse_restore, sparse_state

BLOCKS = ("category", "brand", "price_band", "text")
TIE_BREAK = 1e-4


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1 / np.maximum(norms, 1e-12)) @ m, dtype=np.float32)


class ContentBased(Recommender):
    """R(u,v) = Σ_k β_k C(u,k) V(k,v) over category, brand, price band and text features.

    Items nobody has touched yet score like any other: this is how a new item is reached.
    """

    name = "content"
    needs_features = True
    PARAMS: ClassVar[dict[str, Param]] = {
        "beta_category": Param(1.0, float, 0, 1e3, grid=(0.5, 1.0, 2.0)),
        "beta_brand": Param(0.5, float, 0, 1e3, grid=(0.0, 0.5, 1.0)),
        "beta_price_band": Param(0.3, float, 0, 1e3, grid=(0.0, 0.3, 1.0)),
        "beta_text": Param(0.5, float, 0, 1e3, grid=(0.0, 0.5, 1.0)),
    }

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        assert features is not None
        if len(features.items) != data.n_items or not np.array_equal(
            features.items.ids, data.items.ids
        ):
            raise ValueError("item features must be aligned with the interactions' items")
        self.blocks_ = {
            k: (
                _l2_rows(features.blocks[k])
                if k == "text"
                else sp.csr_matrix(features.blocks[k], dtype=np.float32)
            )
            for k in BLOCKS
            if k in features.blocks and features.blocks[k].shape[1] > 0
        }
        self.names_ = {k: features.names[k] for k in self.blocks_}

    def user_vectors(self, rows: sp.csr_matrix) -> dict[str, sp.csr_matrix]:
        """C(u, ·) per block: the weighted average of the user's items' feature vectors."""
        total = np.asarray(rows.sum(axis=1), np.float64).ravel()
        norm = sp.diags((1 / np.maximum(total, 1e-12)).astype(np.float32))
        return {k: sp.csr_matrix(norm @ (rows @ v)) for k, v in self.blocks_.items()}

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        out = np.zeros((rows.shape[0], len(self.items_)), np.float32)
        for k, c in self.user_vectors(rows).items():
            beta = self.params[f"beta_{k}"]
            if beta:
                out += beta * (c @ self.blocks_[k].T).toarray()
        # Many items share a category, brand and price band, so R(u,v) ties a lot; ties go
        # to the more popular item (a term far below any one feature's contribution).
        out += TIE_BREAK * (self.popularity_ / max(float(self.popularity_.max()), 1.0))
        out[np.diff(rows.indptr) == 0] = np.nan
        return out

    def _item_embedding(self) -> sp.csr_matrix:
        parts = [np.sqrt(self.params[f"beta_{k}"]) * v for k, v in self.blocks_.items()]
        return _l2_rows(sp.hstack(parts).tocsr())

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        e = self._item_embedding()
        return (e[idx] @ e.T).toarray()

    def _state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"blocks": np.asarray(list(self.blocks_), dtype=str)}
        for k, v in self.blocks_.items():
            out |= sparse_state(f"b.{k}", v)
            out[f"n.{k}"] = self.names_[k].astype(str)
        return out

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.blocks_ = {str(k): sparse_restore(state, f"b.{k}") for k in state["blocks"]}
        self.names_ = {str(k): state[f"n.{k}"] for k in state["blocks"]}

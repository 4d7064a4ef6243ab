"""EASE^R (Steck 2019): a closed-form item-item model, for catalogs up to ~30k items."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.errors import InputError
from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender


class EASE(Recommender):
    """B = I - P / diag(P) with P = (XᵀX + λI)⁻¹ and a zero diagonal; scores are X B.

    Memory is items² floats (30k items: 3.6 GB in float32), hence ``max_items``.
    """

    name = "ease"
    PARAMS: ClassVar[dict[str, Param]] = {
        "l2": Param(500.0, float, 1e-6, 1e9, grid=(50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)),
        "max_items": Param(30000, int, 1, 200000),
        "binary": Param(1, int, 0, 1, help="1: fit on 0/1 interactions; 0: on the weights"),
    }

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        n = data.n_items
        if n > self.params["max_items"]:
            raise InputError(
                f"ease: {n} items is more than max_items={self.params['max_items']}",
                hint="use als or itemknn for large catalogs, or raise max_items if memory allows (items² x 8 bytes)",
            )
        x = data.matrix if not self.params["binary"] else (data.matrix > 0).astype(np.float32)
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices(n)] += self.params["l2"]
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n)] = 0.0
        self.b_ = b.astype(np.float32)

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        x = rows if not self.params["binary"] else (rows > 0).astype(np.float32)
        s = np.asarray(x @ self.b_, np.float32)
        s[np.diff(rows.indptr) == 0] = np.nan
        return s

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        return self.b_[idx].copy()

    def pair_similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.b_[a, b]

    def _state(self) -> dict[str, np.ndarray]:
        return {"b": self.b_}

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.b_ = state["b"]

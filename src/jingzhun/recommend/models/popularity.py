"""Popularity: global, per segment, and time-decayed (the decay is in the interaction weights)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender


class Popularity(Recommender):
    """Most popular items, overall or within the user's segment.

    ``by="users"`` counts distinct users per item; ``by="weight"`` sums the (time-decayed)
    interaction weights, so recent and stronger interest counts more. With ``groups`` at fit
    time, each segment gets its own ranking; a user whose segment is known at recommend time
    gets their segment's ranking (blended with the global one by ``shrinkage``: a segment
    with few users leans on the global ranking).
    """

    name = "popularity"
    PARAMS: ClassVar[dict[str, Param]] = {
        "by": Param("weight", str, choices=("users", "weight"), grid=("users", "weight")),
        "shrinkage": Param(
            50.0, float, 0, 1e9, help="pseudo-users that pull a segment toward the global ranking"
        ),
    }

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        x = data.matrix if self.params["by"] == "weight" else (data.matrix > 0).astype(np.float32)
        self.global_ = np.asarray(x.sum(axis=0), np.float64).ravel()
        self.global_ /= max(self.global_.sum(), 1e-12)
        self.groups_ = np.asarray([], dtype=str)
        self.by_group_ = np.zeros((0, data.n_items), np.float32)
        if groups is not None:
            labels = np.asarray(groups, dtype=object)
            known = np.asarray([g is not None and g == g and str(g) != "" for g in labels])
            codes_all = np.full(len(labels), -1)
            names, codes = np.unique(labels[known].astype(str), return_inverse=True)
            codes_all[known] = codes
            sel = sp.csr_matrix(
                (np.ones(int(known.sum()), np.float32), (codes, np.flatnonzero(known))),
                shape=(len(names), data.n_users),
            )
            sums = np.asarray((sel @ x).todense(), np.float64)
            users = np.bincount(codes, minlength=len(names)).astype(np.float64)
            s = self.params["shrinkage"]
            totals = sums.sum(axis=1, keepdims=True)
            share = np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)
            lam = (users / (users + s))[:, None] if s > 0 else 1.0
            self.by_group_ = (lam * share + (1 - lam) * self.global_).astype(np.float32)
            self.groups_ = names.astype(str)

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        out = np.tile(self.global_.astype(np.float32), (rows.shape[0], 1))
        if groups is not None and len(self.groups_):
            pos = np.searchsorted(self.groups_, np.asarray(groups, dtype=object).astype(str))
            pos = np.clip(pos, 0, len(self.groups_) - 1)
            hit = self.groups_[pos] == np.asarray(groups, dtype=object).astype(str)
            out[hit] = self.by_group_[pos[hit]]
        return out

    def has_group(self, groups: np.ndarray) -> np.ndarray:
        g = np.asarray(groups, dtype=object).astype(str)
        return np.isin(g, self.groups_)

    def _item_embedding(self) -> None:
        return None

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        return np.tile(self.global_.astype(np.float32), (len(idx), 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "global": self.global_,
            "groups": self.groups_.astype(str),
            "by_group": self.by_group_,
        }

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self.global_ = state["global"]
        self.groups_ = state["groups"]
        self.by_group_ = state["by_group"]

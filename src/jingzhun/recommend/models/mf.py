"""Matrix factorisation: ALS (implicit feedback, Hu et al. 2008) and BPR, both by implicit."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender


@functools.cache
def blas_controller() -> Any:
    """threadpoolctl's controller, inspected once (a limit through it costs ~10 µs)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: Below this many users, top-k runs on one thread.
SMALL_BATCH = 64


class _Factors(Recommender):
    """Scores are user_factors @ item_factors.T; top-k goes through implicit's C++ top-k."""

    # implicit's top-k scores in its own bounded blocks: big batches only save call overhead
    # (measured on 1M x 50k: 100k users in 10.5 s at 512 per call, 8.0 s at 16,384).
    block_users: ClassVar[int] = 16384

    def _implicit_class(self) -> type:  # pragma: no cover - overridden
        raise NotImplementedError

    def _implicit_model(self) -> Any:
        """implicit's model with this model's parameters (each is named as implicit names it)."""
        return self._implicit_class()(**{name: self.params[name] for name in self.PARAMS})

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        # implicit's BLAS calls run one thread per core already; nested OpenBLAS threads
        # oversubscribe the two cores and slow ALS down several-fold.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model = self._implicit_model()
            model.fit(sp.csr_matrix(data.matrix, dtype=np.float32), show_progress=False)
        self._yty = None
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _user_vectors(self, rows: sp.csr_matrix, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Factor rows for the batch: stored factors for training users (unless a history is
        given for them), folded in for new histories; ``ok`` marks users that have one."""
        u = np.zeros((len(uidx), self.item_factors_.shape[1]), np.float32)
        has = np.diff(rows.indptr) > 0
        known = uidx >= 0
        # Stored factors only for the very history they were fitted on; a user with no
        # history (given or in training) is cold.
        use_stored = known & has & self._same_history(rows, uidx)
        u[use_stored] = self.user_factors_[uidx[use_stored]]
        fold = has & ~use_stored
        if fold.any():
            u[fold] = self._fold_in(rows[np.flatnonzero(fold)])
        return u, use_stored | fold

    def _same_history(self, rows: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        out = np.zeros(len(uidx), bool)
        known = np.flatnonzero(uidx >= 0)
        if len(known):
            # Exact, vectorised: same lengths, then the same columns and weights entry by entry.
            seen, given = self.seen_[uidx[known]], sp.csr_matrix(rows[known])
            seen.sort_indices()
            given.sort_indices()
            same = np.diff(seen.indptr) == np.diff(given.indptr)
            rows_same = np.flatnonzero(same)
            if len(rows_same):
                a, b = seen[rows_same], given[rows_same]
                bad = np.r_[0, np.cumsum((a.indices != b.indices) | (a.data != b.data))]
                per_row = bad[a.indptr[1:]] - bad[a.indptr[:-1]]
                same[rows_same] = per_row == 0
            out[known] = same
        return out

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        u, ok = self._user_vectors(rows, uidx)
        s = u @ self.item_factors_.T
        s[~ok] = np.nan
        return s

    def topk_block(self, rows, uidx, k, allowed, *, exclude, more=None, groups=None):
        from implicit.cpu.topk import topk

        u, ok = self._user_vectors(rows, uidx)
        filt = exclude
        if more is not None:
            filt = more if filt is None else sp.csr_matrix(filt + more)
        filter_items = None if allowed is None else np.flatnonzero(~allowed).astype(np.int32)
        kk = min(k, self.item_factors_.shape[0])
        # implicit's top-k runs its own threads: OpenBLAS threads under them only contend
        # (measured: all-user batch 140 s -> 82 s on 2 cores with BLAS held to one thread).
        with blas_controller().limit(limits=1, user_api="blas"):
            idx, val = topk(
                self.item_factors_,
                u,
                kk,
                filter_query_items=None if filt is None else sp.csr_matrix(filt, dtype=np.float32),
                filter_items=filter_items,
                # A few users: one thread (waking the OpenMP pool costs more than the product).
                num_threads=1 if len(u) < SMALL_BATCH else 0,
            )
        idx = idx.astype(np.int64)
        val = val.astype(np.float32)
        # implicit marks filtered items with -FLT_MAX (finite), not -inf.
        bad = ~np.isfinite(val) | (idx < 0) | (val <= np.finfo(np.float32).min)
        idx[bad], val[bad] = -1, np.nan
        if kk < k:
            idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
            val = np.pad(val, ((0, 0), (0, k - kk)), constant_values=np.nan)
        cold = ~ok
        if cold.any():  # the base's popularity path, with the same filters
            ci, cv, _ = Recommender.topk_block(
                self,
                rows[np.flatnonzero(cold)],
                uidx[cold],
                k,
                allowed,
                exclude=None if exclude is None else exclude[np.flatnonzero(cold)],
                more=None if more is None else more[np.flatnonzero(cold)],
            )
            idx[cold], val[cold] = ci, cv
        return idx, val, cold

    def _item_embedding(self) -> np.ndarray:
        f = self.item_factors_
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        e = self._item_embedding()
        return e[idx] @ e.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        self._yty = None
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]


class ALS(_Factors):
    """Implicit-feedback ALS: confidence 1 + alpha * weight, factors by alternating least
    squares (conjugate gradient), from implicit."""

    name = "als"
    PARAMS: ClassVar[dict[str, Param]] = {
        "factors": Param(64, int, 1, 1024, grid=(32, 64, 128)),
        "regularization": Param(0.05, float, 0, 1e6, grid=(0.01, 0.1, 1.0, 10.0)),
        "alpha": Param(1.0, float, 0, 1e6, grid=(1.0, 5.0, 20.0)),
        "iterations": Param(15, int, 1, 1000),
        "random_state": Param(42, int, 0, 2**31),
    }

    def _implicit_class(self) -> type:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        """Solve each new user's factors against the fixed item factors (one small linear
        system per user, the same objective ALS minimises)."""
        if getattr(self, "_yty", None) is None:  # fixed once fitted: computed once
            y64 = self.item_factors_.astype(np.float64)
            self._y64, self._yty = y64, y64.T @ y64
        y, yty = self._y64, self._yty
        reg = self.params["regularization"]
        alpha = self.params["alpha"]
        out = np.zeros((rows.shape[0], y.shape[1]), np.float32)
        for r in range(rows.shape[0]):  # a handful of users per call (sessions, new users)
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            cols, conf = rows.indices[lo:hi], alpha * rows.data[lo:hi].astype(np.float64)
            yi = y[cols]
            a = yty + (yi.T * conf) @ yi + reg * np.eye(y.shape[1])
            b = yi.T @ (1 + conf)
            out[r] = np.linalg.solve(a, b)
        return out


class BPR(_Factors):
    """Bayesian Personalised Ranking by SGD on sampled (user, liked, other) triples, from
    implicit. A new user's vector is the mean of their items' factors."""

    name = "bpr"
    PARAMS: ClassVar[dict[str, Param]] = {
        "factors": Param(64, int, 1, 1024, grid=(32, 64, 128)),
        "learning_rate": Param(0.05, float, 1e-6, 10, grid=(0.01, 0.05, 0.1)),
        "regularization": Param(0.01, float, 0, 100, grid=(0.001, 0.01, 0.1)),
        # implicit's BPR overfits fast on small logs (MovieLens-100k: nDCG 0.38 at 50 epochs,
        # 0.28 at 100, 0.18 at 200), so the grid reaches down to a few dozen.
        "iterations": Param(100, int, 1, 10000, grid=(30, 50, 100, 200)),
        "random_state": Param(42, int, 0, 2**31),
    }

    def _implicit_class(self) -> type:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        w = sp.diags(1 / np.maximum(np.asarray(rows.sum(axis=1)).ravel(), 1e-12)) @ rows
        u = np.asarray(w @ self.item_factors_, np.float32)
        u[:, -1] = 1.0  # implicit keeps the item bias in the last factor; users carry a 1 there
        return u

"""The recommender contract every model follows (in the style of implicit and LensKit).

A model stores its parameters in the constructor, learns in :meth:`Recommender.fit` (learned
state ends with ``_``), and answers in ids, never matrix indices:

- ``recommend(user_ids, k, history=None, exclude_seen=True, filter_items=None, items=None)``
  for one user or a batch returns a :class:`Recs` (ids, scores, and whether each row took the
  cold-start path);
- ``similar_items(item_ids, k)``;
- ``save(path)`` / :func:`load` as ``.npz`` with ``allow_pickle=False``.

A model only implements ``_fit`` and ``_scores`` (a dense users x items block, NaN rows for
users it cannot score); ranking, filtering, cold start and persistence live here once.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.contracts.estimator import Param, check_params
from jingzhun.errors import InputError
from jingzhun.recommend.data import Interactions, ItemFeatures, Vocabulary, take_rows

#: Users scored per dense block: 512 x 50k float32 is 100 MB.
BLOCK_USERS = 512


@dataclass
class Recs:
    """Top-k recommendations for a batch of users, aligned with ``users``.

    ``items`` holds ids (``None`` where fewer than k candidates were left), ``scores`` the
    model's scores (NaN there), ``cold`` whether the row came from the cold-start path.
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    cold: np.ndarray
    index: np.ndarray  # item indices, -1 where empty

    def to_frame(self) -> Any:
        import pandas as pd

        n, k = self.index.shape
        keep = self.index.ravel() >= 0
        return pd.DataFrame(
            {
                "user_id": np.repeat(self.users, k)[keep],
                "rank": np.tile(np.arange(1, k + 1), n)[keep],
                "item_id": self.items.ravel()[keep],
                "score": self.scores.ravel()[keep],
                "cold": np.repeat(self.cold, k)[keep],
            }
        )


def _check_weights(matrix: sp.csr_matrix, what: str) -> None:
    """Interaction weights are finite: NaN made some models fail with a library's traceback
    and others recommend nothing, without a word."""
    bad = int(np.count_nonzero(~np.isfinite(matrix.data)))
    if bad:
        raise InputError(
            f"{what} hold {bad:,} NaN or infinite weights",
            hint="give every interaction a finite weight",
        )


def topk_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest finite scores per row, best first (-1 / NaN pad)."""
    n, m = scores.shape
    k_eff = min(k, m)
    if k_eff == 0:
        return np.full((n, k), -1, np.int64), np.full((n, k), np.nan, np.float32)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    bad = ~np.isfinite(vals)
    idx[bad] = -1
    vals = vals.astype(np.float32)
    vals[bad] = np.nan
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - k_eff)), constant_values=np.nan)
    return idx, vals


def mask_rows(scores: np.ndarray, rows: sp.csr_matrix) -> None:
    """Set the scores of each row's nonzero columns to -inf, in place."""
    coo = rows.tocoo()
    scores[coo.row, coo.col] = -np.inf


class Recommender:
    """Base class of every model. Subclasses set ``name``, ``PARAMS`` and implement
    ``_fit(data, features, groups)`` and ``_scores(rows, uidx, groups)``."""

    name: ClassVar[str] = "base"
    PARAMS: ClassVar[dict[str, Param]] = {}
    #: Whether the model can score a user from a history it has not seen in training.
    folds_in: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    #: Users per block in ``recommend``: dense scores need 512 x items floats at a time.
    block_users: ClassVar[int] = BLOCK_USERS

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = check_params(self.name, self.PARAMS, params)

    # -- learning -----------------------------------------------------------------------------

    def fit(
        self,
        data: Interactions,
        *,
        features: ItemFeatures | None = None,
        groups: np.ndarray | None = None,
    ) -> Recommender:
        """Learn from ``data`` (users x items weights); ``features`` are item side information
        (content models need them); ``groups`` is a segment label per training user."""
        if data.nnz == 0:
            raise InputError(
                f"{self.name}: no interactions to learn from", hint="ingest events first"
            )
        _check_weights(data.matrix, f"{self.name}: the interactions")
        if self.needs_features and features is None:
            raise InputError(f"{self.name}: needs item features", hint="ingest the item catalog")
        self.users_: Vocabulary = data.users
        self.items_: Vocabulary = data.items
        self.seen_: sp.csr_matrix = data.matrix
        self.popularity_: np.ndarray = np.asarray((data.matrix > 0).sum(axis=0), np.float32).ravel()
        self._fit(data, features, groups)
        return self

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        raise NotImplementedError

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError

    # -- answering ----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise InputError(f"{self.name}: the model is not fitted", hint="call fit() or load()")

    def user_rows(
        self, user_ids: np.ndarray, history: sp.csr_matrix | None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        uidx = self.users_.index(user_ids)
        if history is not None:
            if history.shape != (len(uidx), len(self.items_)):
                raise InputError(
                    f"{self.name}: history has shape {history.shape}",
                    hint=f"give one row per user and {len(self.items_)} item columns",
                )
            rows = sp.csr_matrix(history, dtype=np.float32)
            _check_weights(rows, f"{self.name}: history")
            return rows, uidx
        return take_rows(self.seen_, uidx), uidx

    def score_block(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense scores for a block of users and which rows took the cold-start path
        (popularity, or segment popularity where the model has it)."""
        s = np.asarray(self._scores(rows, uidx, groups), dtype=np.float32)
        cold = np.isnan(s).any(axis=1)
        if cold.any():
            s[cold] = self.popularity_ / max(float(self.popularity_.max()), 1.0)
        # A user never seen, with no history given, is on the cold-start path whatever the
        # model (popularity answers them as it answers everyone, but they are still cold).
        cold |= (uidx < 0) & (np.diff(rows.indptr) == 0)
        return s, cold

    def recommend(
        self,
        user_ids: str | Iterable[str],
        k: int = 10,
        *,
        history: sp.csr_matrix | None = None,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
        filter_items: Iterable[str] | None = None,
        items: Iterable[str] | None = None,
        groups: np.ndarray | None = None,
    ) -> Recs:
        """Top-``k`` items for one user or a batch.

        Parameters
        ----------
        user_ids : str or iterable of str
            Users; one the model never saw takes the cold-start path.
        k : int
            How many items per user.
        history : csr_matrix, optional
            One row per user over the model's items, replacing the training history (a
            session, a new user's first events).
        exclude_seen : bool
            Leave out items in the user's history.
        exclude : csr_matrix, optional
            More items to leave out per user (same shape as ``history``).
        filter_items : iterable of str, optional
            Items never to recommend.
        items : iterable of str, optional
            Only rank these items.
        groups : array of str, optional
            Each user's segment, for segment popularity.
        """
        self._check_fitted()
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"{self.name}: k={k!r}", hint="use k >= 1")
        users = np.asarray(
            [user_ids] if isinstance(user_ids, str) else list(user_ids), dtype=object
        )
        rows, uidx = self.user_rows(users, history)
        allowed = self.allowed_mask(filter_items, items)
        n = len(users)
        out_idx = np.full((n, k), -1, np.int64)
        out_val = np.full((n, k), np.nan, np.float32)
        cold = np.zeros(n, bool)
        for lo in range(0, n, self.block_users):
            hi = min(lo + self.block_users, n)
            g = None if groups is None else np.asarray(groups, dtype=object)[lo:hi]
            idx, val, c = self.topk_block(
                rows[lo:hi],
                uidx[lo:hi],
                k,
                allowed,
                exclude=(rows[lo:hi] if exclude_seen else None),
                more=(exclude[lo:hi] if exclude is not None else None),
                groups=g,
            )
            out_idx[lo:hi], out_val[lo:hi], cold[lo:hi] = idx, val, c
        ids = np.where(out_idx >= 0, self.items_.ids[np.maximum(out_idx, 0)], None)
        return Recs(users, ids, out_val, cold, out_idx)

    def topk_block(
        self,
        rows: sp.csr_matrix,
        uidx: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        *,
        exclude: sp.csr_matrix | None,
        more: sp.csr_matrix | None = None,
        groups: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, cold = self.score_block(rows, uidx, groups)
        if allowed is not None:
            s[:, ~allowed] = -np.inf
        for m in (exclude, more):
            if m is not None:
                mask_rows(s, m)
        idx, val = topk_dense(s, k)
        return idx, val, cold

    def allowed_mask(
        self, filter_items: Iterable[str] | None, items: Iterable[str] | None
    ) -> np.ndarray | None:
        if filter_items is None and items is None:
            return None
        mask = np.ones(len(self.items_), bool)
        if items is not None:
            mask[:] = False
            idx = self.items_.index(list(items))
            mask[idx[idx >= 0]] = True
        if filter_items is not None:
            idx = self.items_.index(list(filter_items))
            mask[idx[idx >= 0]] = False
        return mask

    def similar_items(
        self, item_ids: str | Iterable[str], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each of ``item_ids`` (ids, scores); an unknown item
        gets an empty row."""
        self._check_fitted()
        ids = np.asarray([item_ids] if isinstance(item_ids, str) else list(item_ids), dtype=object)
        idx = self.items_.index(ids)
        s = np.full((len(ids), len(self.items_)), np.nan, np.float32)
        known = idx >= 0
        if known.any():
            s[known] = self._item_scores(idx[known])
            s[np.flatnonzero(known), idx[known]] = -np.inf
        top, val = topk_dense(s, k)
        return np.where(top >= 0, self.items_.ids[np.maximum(top, 0)], None), val

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        """Similarity of items ``idx`` to every item; default: score a one-item history."""
        rows = sp.csr_matrix(
            (np.ones(len(idx), np.float32), (np.arange(len(idx)), idx)),
            shape=(len(idx), len(self.items_)),
        )
        s = np.asarray(self._scores(rows, np.full(len(idx), -1), None), np.float32)
        return np.nan_to_num(s, nan=-np.inf)

    def pair_similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity of item pairs (a[i], b[i]) (for explanations: "because you bought X")."""
        emb = self._item_embedding()
        if emb is None:
            return np.zeros(np.broadcast(a, b).shape, np.float32)
        if sp.issparse(emb):
            emb = sp.csr_matrix(emb)
            prod = emb[a.ravel()].multiply(emb[b.ravel()]).sum(axis=1)
            return np.asarray(prod, np.float32).reshape(a.shape)
        return np.einsum("...d,...d->...", emb[a], emb[b]).astype(np.float32)

    def _item_embedding(self) -> np.ndarray | sp.csr_matrix | None:
        """L2-normalised item vectors, when the model has them."""
        return None

    # -- persistence --------------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted model as named arrays (what :meth:`save` writes, :func:`load` reads)."""
        self._check_fitted()
        arrays = {f"m.{k}": v for k, v in self._state().items()}
        arrays |= {
            "meta": np.asarray(json.dumps({"model": self.name, "params": self.params})),
            "users": self.users_.ids.astype(str),
            "items": self.items_.ids.astype(str),
            "popularity": self.popularity_,
        }
        arrays |= sparse_state("seen", self.seen_)
        return arrays

    def to_bytes(self) -> bytes:
        """The fitted model as ``.npz`` bytes (no pickle), as the store's registry keeps it."""
        buffer = io.BytesIO()
        np.savez(buffer, **self.to_arrays())
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model as ``.npz`` (no pickle); the write is atomic."""
        blob = self.to_bytes()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        return path

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({params})"


def sparse_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as named .npz arrays (no pickle)."""
    m = sp.csr_matrix(m)
    return {
        f"{prefix}.data": m.data,
        f"{prefix}.indices": m.indices,
        f"{prefix}.indptr": m.indptr,
        f"{prefix}.shape": np.asarray(m.shape, np.int64),
    }


def sparse_restore(state: Mapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """The CSR matrix :func:`sparse_state` wrote."""
    return sp.csr_matrix(
        (state[f"{prefix}.data"], state[f"{prefix}.indices"], state[f"{prefix}.indptr"]),
        shape=tuple(state[f"{prefix}.shape"]),
    )

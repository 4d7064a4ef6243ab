"""Hybrid: a weighted blend of rank-normalised component scores, with cold-start switching.

Each component ranks its own candidates (after the rules' filters); the item at rank r of
``depth`` gets (depth - r) / depth, others 0, and the blend is Σ w_c · that. Rank
normalisation makes scales comparable (an ALS dot product and a popularity share are not).
A component that cannot score a user (no history: CF and content models) drops out for that
user, so a new user gets (segment) popularity, plus content and item-kNN from whatever first
events they have; a new item is reached through the content component.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from jingzhun.checks import finite
from jingzhun.errors import InputError
from jingzhun.recommend.data import Interactions, ItemFeatures
from jingzhun.recommend.models.base import Param, Recommender, mask_rows, topk_dense
from jingzhun.recommend.models.registry import COMPONENTS as MODELS  # what a hybrid blends

DEFAULT_COMPONENTS = "als,itemknn,content,popularity"
#: The largest blend weight (weights are relative; a huge one overflows the float32 blend).
MAX_WEIGHT = 1e6


def rank_normalise(scores: np.ndarray, depth: int) -> np.ndarray:
    """(depth - r) / depth for each row's top ``depth`` finite scores (r = 0 is best), 0
    elsewhere; a NaN row stays all 0."""
    idx, _ = topk_dense(np.nan_to_num(scores, nan=-np.inf, neginf=-np.inf), depth)
    out = np.zeros_like(scores, dtype=np.float32)
    ranks = np.broadcast_to((depth - np.arange(idx.shape[1], dtype=np.float32)) / depth, idx.shape)
    ok = idx >= 0
    rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
    out[rows[ok], idx[ok]] = ranks[ok]
    return out


class Hybrid(Recommender):
    """Blend of components (names from the model registry) with weights tuned on validation."""

    name = "hybrid"
    PARAMS: ClassVar[dict[str, Param]] = {
        "components": Param(DEFAULT_COMPONENTS, str, help="comma-separated model names"),
        "weights": Param("", str, help="name:weight,… ; empty: equal weights"),
        "depth": Param(200, int, 10, 100000, help="candidates each component ranks"),
        "component_params": Param("{}", str, help="JSON: {model: {param: value}}"),
    }

    def __init__(self, **params: Any) -> None:
        if isinstance(params.get("component_params"), dict):
            params["component_params"] = json.dumps(params["component_params"], sort_keys=True)
        if isinstance(params.get("weights"), dict):
            params["weights"] = ",".join(f"{k}:{v:g}" for k, v in params["weights"].items())
        super().__init__(**params)
        names = [c.strip() for c in self.params["components"].split(",") if c.strip()]
        bad = [c for c in names if c not in MODELS or c == "hybrid"]
        if bad or not names:
            raise InputError(
                f"hybrid: unknown component {bad[0] if bad else '(none)'!r}",
                hint=f"use some of: {', '.join(m for m in MODELS if m != 'hybrid')}",
            )
        try:
            cparams = json.loads(self.params["component_params"])
        except json.JSONDecodeError as exc:
            raise InputError(
                f"hybrid: component_params is not JSON ({exc.msg})",
                hint='give {"als": {"factors": 64}}',
            ) from None
        self.components = {c: MODELS[c](**cparams.get(c, {})) for c in names}
        self.weights = self._parse_weights(self.params["weights"], names)
        if not any(w > 0 for w in self.weights.values()) or any(
            w < 0 for w in self.weights.values()
        ):
            raise InputError(
                f"hybrid: weights {self.params['weights']!r}",
                hint="give weights >= 0, at least one of them > 0",
            )

    #: Tuning needs every component's ranks, whatever its current weight.
    _all_components = False

    @staticmethod
    def _parse_weights(text: str, names: list[str]) -> dict[str, float]:
        weights = {c: 1.0 for c in names}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition(":")
            if name not in weights:
                raise InputError(
                    f"hybrid: weight for {name!r}, which is not a component",
                    hint=f"components: {', '.join(names)}",
                )
            try:
                number = float(value)
            except ValueError:
                raise InputError(f"hybrid: weight {part!r}", hint="write name:number") from None
            # NaN passed the >= 0 test below (every comparison with NaN is false) and made an
            # active model that recommends nothing; so did 1e300 (the float32 blend overflows
            # to inf, and infinite scores are dropped). Weights are relative: 1e6 is plenty.
            weights[name] = finite(
                number,
                f"hybrid: weight of {name}",
                lo=0,
                hi=MAX_WEIGHT,
                hint="weights are relative; at least one of them > 0",
            )
        return weights

    @classmethod
    def from_components(
        cls, components: Mapping[str, Recommender], weights: Mapping[str, float], depth: int = 200
    ) -> Hybrid:
        """A hybrid over already-fitted components (what tuning does)."""
        model = cls(
            components=",".join(components),
            weights=",".join(f"{k}:{weights.get(k, 1.0):g}" for k in components),
            depth=depth,
            component_params={k: m.params for k, m in components.items()},
        )
        model.components = dict(components)
        first = next(iter(components.values()))
        model.users_, model.items_, model.seen_ = first.users_, first.items_, first.seen_
        model.popularity_ = first.popularity_
        return model

    def set_weights(self, weights: Mapping[str, float]) -> None:
        self.weights = {c: float(weights.get(c, 0.0)) for c in self.components}
        self.params["weights"] = ",".join(f"{k}:{v:g}" for k, v in self.weights.items())

    def _fit(
        self, data: Interactions, features: ItemFeatures | None, groups: np.ndarray | None
    ) -> None:
        for comp in self.components.values():
            if comp.needs_features and features is None:
                raise InputError(
                    "hybrid: the content component needs item features",
                    hint="ingest the catalog, or drop content from components",
                )
            comp.fit(data, features=features, groups=groups)

    def component_ranks(
        self,
        rows: sp.csr_matrix,
        uidx: np.ndarray,
        groups: np.ndarray | None,
        masks: list[sp.csr_matrix | None],
        allowed: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Each component's rank-normalised scores for a block, after the filters."""
        out = {}
        for name, comp in self.components.items():
            if not self.weights.get(name, 0.0) and not self._all_components:
                continue  # weighted 0: it cannot move the blend
            s = np.asarray(comp._scores(rows, uidx, groups), np.float32)
            if allowed is not None:
                s[:, ~allowed] = -np.inf
            for m in masks:
                if m is not None:
                    mask_rows(s, m)
            out[name] = rank_normalise(s, self.params["depth"])
        return out

    @staticmethod
    def blend(ranks: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        total = None
        for name, r in ranks.items():
            w = weights.get(name, 0.0)
            if w:
                total = w * r if total is None else total + w * r
        if total is None:
            raise ValueError("the blend has no component with a weight")
        return total

    def topk_block(self, rows, uidx, k, allowed, *, exclude, more=None, groups=None):
        ranks = self.component_ranks(rows, uidx, groups, [exclude, more], allowed)
        s = self.blend(ranks, self.weights)
        blocked = np.zeros(s.shape, bool)
        if allowed is not None:
            blocked[:, ~allowed] = True
        for m in (exclude, more):
            if m is not None:
                coo = m.tocoo()
                blocked[coo.row, coo.col] = True
        cold = np.diff(rows.indptr) == 0  # no history: only popularity can rank
        # Items no component ranked keep a tiny popularity score, so that k is always filled.
        s = s + 1e-6 * (self.popularity_ / max(float(self.popularity_.max()), 1.0))
        s[blocked] = -np.inf
        idx, val = topk_dense(s, k)
        return idx, val, cold

    def _scores(
        self, rows: sp.csr_matrix, uidx: np.ndarray, groups: np.ndarray | None
    ) -> np.ndarray:
        ranks = self.component_ranks(rows, uidx, groups, [], None)
        return self.blend(ranks, self.weights)

    def pair_similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        for name in ("itemknn", "ease", "als", "bpr", "content"):
            if name in self.components:
                return self.components[name].pair_similarity(a, b)
        return super().pair_similarity(a, b)

    def _item_scores(self, idx: np.ndarray) -> np.ndarray:
        parts = []
        for name, comp in self.components.items():
            if name == "popularity":
                continue
            s = np.nan_to_num(comp._item_scores(idx), nan=-np.inf, neginf=-np.inf)
            parts.append(self.weights.get(name, 1.0) * rank_normalise(s, self.params["depth"]))
        return sum(parts) if parts else super()._item_scores(idx)

    def _state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, comp in self.components.items():
            out |= {f"{name}.{k}": v for k, v in comp._state().items()}
        return out

    def _restore(self, state: Mapping[str, np.ndarray]) -> None:
        for name, comp in self.components.items():
            comp.users_, comp.items_, comp.seen_, comp.popularity_ = (
                self.users_,
                self.items_,
                self.seen_,
                self.popularity_,
            )
            prefix = f"{name}."
            comp._restore({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

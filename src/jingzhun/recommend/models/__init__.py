"""The model registry: every recommender by its CLI name."""

from __future__ import annotations

from typing import Any

from jingzhun.errors import InputError
from jingzhun.recommend.models.base import Param, Recommender, Recs, load, topk_dense
from jingzhun.recommend.models.content import ContentBased
from jingzhun.recommend.models.ease import EASE
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.recommend.models.knn import ItemKNN, UserKNN
from jingzhun.recommend.models.mf import ALS, BPR
from jingzhun.recommend.models.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, ItemKNN, UserKNN, ALS, BPR, EASE, ContentBased, Hybrid)
}
#: Short names the CLI accepts.
ALIASES = {"pop": "popularity"}


def model_name(name: str) -> str:
    """The registry name for ``name`` (or an alias); an error listing the valid ones."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in MODELS:
        raise InputError(
            f"unknown model {name!r}",
            hint=f"use one of: {', '.join(['pop', *[m for m in MODELS if m != 'popularity']])}",
        )
    return key


def make(name: str, **params: Any) -> Recommender:
    """A new, unfitted model by name."""
    return MODELS[model_name(name)](**params)


__all__ = ["MODELS", "Param", "Recommender", "Recs", "load", "make", "model_name", "topk_dense"]

"""The model registry: every recommender by its CLI name, made or loaded by that name."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jingzhun.errors import InputError
from jingzhun.recommend.data import Vocabulary
from jingzhun.recommend.models.base import Param, Recommender, Recs, sparse_restore, topk_dense
from jingzhun.recommend.models.content import ContentBased
from jingzhun.recommend.models.ease import EASE
from jingzhun.recommend.models.hybrid import Hybrid
from jingzhun.recommend.models.knn import ItemKNN, UserKNN
from jingzhun.recommend.models.mf import ALS, BPR
from jingzhun.recommend.models.popularity import Popularity
from jingzhun.recommend.models.registry import COMPONENTS

MODELS: dict[str, type[Recommender]] = {**COMPONENTS, Hybrid.name: Hybrid}
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


def load(source: str | os.PathLike[str] | bytes) -> Recommender:
    """Load a model written by :meth:`Recommender.save` (a path) or :meth:`to_bytes`."""
    where = "model" if isinstance(source, bytes) else str(source)
    try:
        opened = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with np.load(opened, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{where}: not a saved jingzhun model ({exc})", hint="train again"
        ) from exc
    meta = json.loads(str(arrays["meta"]))
    cls = MODELS.get(meta["model"])
    if cls is None:
        raise InputError(f"{where}: unknown model {meta['model']!r}", hint="train again")
    model = cls(**meta["params"])
    model.users_ = Vocabulary(arrays["users"])
    model.items_ = Vocabulary(arrays["items"])
    model.popularity_ = arrays["popularity"]
    model.seen_ = sparse_restore(arrays, "seen")
    model._restore({k[2:]: v for k, v in arrays.items() if k.startswith("m.")})
    return model


__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "MODELS",
    "ContentBased",
    "Hybrid",
    "ItemKNN",
    "Param",
    "Popularity",
    "Recommender",
    "Recs",
    "UserKNN",
    "load",
    "make",
    "model_name",
    "topk_dense",
]

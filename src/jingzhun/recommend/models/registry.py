"""The recommenders a hybrid can blend, by their CLI name: every model but the hybrid.

:mod:`~jingzhun.recommend.models.hybrid` builds its components from here, and the package adds
the hybrid itself to make :data:`jingzhun.recommend.models.MODELS`. Keeping the two apart is
what lets the hybrid look models up by name without importing the package that imports it.
"""

from __future__ import annotations

from jingzhun.recommend.models.base import Recommender
from jingzhun.recommend.models.content import ContentBased
from jingzhun.recommend.models.ease import EASE
from jingzhun.recommend.models.knn import ItemKNN, UserKNN
from jingzhun.recommend.models.mf import ALS, BPR
from jingzhun.recommend.models.popularity import Popularity

__all__ = ["COMPONENTS"]

#: Every recommender but the hybrid, in the order the CLI lists them.
COMPONENTS: dict[str, type[Recommender]] = {
    m.name: m for m in (Popularity, ItemKNN, UserKNN, ALS, BPR, EASE, ContentBased)
}

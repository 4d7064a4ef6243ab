"""``ws.segments``: the segment stage's facade — runs, portraits, members, assignment.

Examples
--------
>>> run = ws.segments.run("kmeans", k="auto", name="value")         # doctest: +SKIP
>>> ws.segments.get("value").portraits[0]["label"]                  # doctest: +SKIP
>>> ws.segments.of_user("u123")                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jingzhun.contracts.results import Result

if TYPE_CHECKING:
    import pandas as pd

    from jingzhun.config import Settings
    from jingzhun.segment.runs import RunResult, Segmenter
    from jingzhun.store import Store

# Stage modules are imported when first used: scikit-learn and Ibis take seconds to import,
# and `jingzhun --help` or a notebook's `import jingzhun` should not wait for them.


@dataclass
class SegmentRunInfo(Result):
    """A stored run: how it was fitted, its quality and its segment portraits."""

    run_id: str
    name: str
    method: str
    params: dict[str, Any]
    features: list[str]
    metrics: dict[str, Any]
    users: int
    segments: int
    as_of: datetime | None
    active: bool
    created_at: datetime
    portraits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Assignment(Result):
    """Users placed into a run's segments without refitting."""

    run_id: str
    assigned: int
    segments: dict[str, int]


@dataclass
class UserSegment(Result):
    """A user's segment in one active run."""

    run_id: str
    name: str
    segment: str
    label: str | None
    fitted: bool


class Segments:
    """The segment stage on one store.

    Parameters
    ----------
    store : Store
        The open store.
    settings : Settings
        Kept for the stages' uniform construction; segment runs take their options as
        arguments.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings

    def run(
        self,
        method: str = "kmeans",
        *,
        k: int | str | None = "auto",
        features: Sequence[str] | None = None,
        name: str | None = None,
        pca: float | int | None = None,
        k_range: tuple[int, int] = (2, 10),
        random_state: int = 0,
        stability_resamples: int = 5,
        eps: float | None = None,
        min_samples: int | None = None,
        min_cluster_size: int | None = None,
        grid: int | None = None,
    ) -> RunResult:
        """Segment the profiles with ``method`` (rfm, kmeans, minibatch-kmeans, hierarchical,
        dbscan, hdbscan, gmm, som); the run becomes the active run of ``name`` (default: the
        method). ``eps``/``min_samples`` (dbscan, hdbscan), ``min_cluster_size`` (hdbscan) and
        ``grid`` (som) are the methods' own."""
        from jingzhun.segment.runs import run

        own = {"eps": eps, "min_samples": min_samples, "min_cluster_size": min_cluster_size}
        own["grid"] = grid
        return run(
            self._store,
            method=method,
            k=k,
            features=None if features is None else list(features),
            name=name,
            pca=pca,
            k_range=k_range,
            random_state=random_state,
            stability_resamples=stability_resamples,
            options={key: v for key, v in own.items() if v is not None},
        )

    def list(self) -> pd.DataFrame:
        """Every run, newest first, with its headline metrics."""
        from jingzhun.segment.runs import list_runs

        return list_runs(self._store)

    def get(self, ref: str | None = None, *, lang: str = "en") -> SegmentRunInfo:
        """A run (by run id or name; default the latest active) with its portraits, their
        names in ``lang`` (en, zh)."""
        from jingzhun.segment.read import label_text
        from jingzhun.segment.runs import portraits_of, resolve

        label_text("", lang)  # a bad lang is refused before any work
        info = resolve(self._store, ref)
        portraits = portraits_of(self._store, info["run_id"])
        for p in portraits:
            p["label"] = label_text(p["label"], lang)
        return SegmentRunInfo(**info, portraits=portraits)

    def members(self, ref: str | None = None) -> pd.DataFrame:
        """user_id, segment, label, fitted, assigned_at of a run."""
        from jingzhun.segment.runs import members_of, resolve

        return members_of(self._store, resolve(self._store, ref)["run_id"])

    def projection(self, ref: str | None = None) -> pd.DataFrame:
        """Up to 4,000 of a run's members on two principal components of the space it was
        fitted in (``user_id``, ``segment``, ``x``, ``y``), kept with the run; empty for RFM
        runs and runs fitted before this was kept."""
        from jingzhun.segment.runs import projection_of, resolve

        return projection_of(self._store, resolve(self._store, ref)["run_id"])

    def members_page(
        self, ref: str | None = None, *, segment: str | None = None, page: int = 1, size: int = 50
    ) -> tuple[pd.DataFrame, int]:
        """Page ``page`` (from 1) of ``size`` members of a run, of one ``segment`` or all, by
        user id; and how many members there are (the dashboard's member table)."""
        from jingzhun.segment.runs import members_page, resolve

        run_id = resolve(self._store, ref)["run_id"]
        return members_page(self._store, run_id, segment, (max(page, 1) - 1) * size, size)

    def export(
        self, out: str | os.PathLike[str], ref: str | None = None, *, desensitize: bool = False
    ) -> int:
        """Write a run's members to Parquet or CSV (by extension), user ids as keyed
        pseudonyms with ``desensitize``; the rows written."""
        from jingzhun.segment.read import export_members

        return export_members(self._store, ref, out, desensitize=desensitize)

    def assign(self, ref: str | None = None) -> Assignment:
        """Place profiled users who are not yet in the run into its segments (no refit)."""
        from jingzhun.segment.runs import assign_new

        return Assignment(**assign_new(self._store, ref))

    def segmenter(self, ref: str | None = None) -> Segmenter:
        """The run's model in memory: ``.assign(traits)`` places one user in microseconds."""
        from jingzhun.segment.runs import Segmenter

        return Segmenter(self._store, ref)

    def of_user(self, user_id: str, *, lang: str = "en") -> list[UserSegment]:
        """The user's segment in every active run, newest run first (names in ``lang``)."""
        from jingzhun.segment.read import label_text
        from jingzhun.segment.runs import user_segments
        from jingzhun.store.desensitize import user_key

        label_text("", lang)
        rows = user_segments(self._store, user_key(self._store, user_id))
        return [
            UserSegment(**(row | {"label": row["label"] and label_text(row["label"], lang)}))
            for row in rows
        ]

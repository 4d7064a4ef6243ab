"""What other parts read of the segment stage: its active runs, their members with the traits
the run was fitted on, and the members as a file.

The report, the CLI and the coming server and campaign stages call these functions instead of
querying ``segment_members`` or the registry's segment runs. Besides the segment stage's tables
they read only the profiles below it. Every value reaches DuckDB as a ``?`` parameter.

Examples
--------
>>> from jingzhun.segment import read                                   # doctest: +SKIP
>>> read.active_runs(store)                                             # doctest: +SKIP
['behaviour-2', 'rfm-1']
>>> read.member_features(store, "behaviour", sample=100).columns[:3].tolist()  # doctest: +SKIP
['user_id', 'recency_days', 'frequency']
"""

from __future__ import annotations

import os

import pandas as pd

from jingzhun.checks import MAX_ROWS, bounded_int
from jingzhun.profile.build import profile_columns
from jingzhun.segment.features import select_sql
from jingzhun.segment.runs import resolve
from jingzhun.store import Registry, Store
from jingzhun.store.export import copy_out
from jingzhun.store.sql import Sql

__all__ = ["active_runs", "export_members", "member_features"]


def active_runs(store: Store, *, limit: int | None = None) -> list[str]:
    """The ids of the active segment runs (one per run name), newest first.

    Parameters
    ----------
    limit : int, optional
        At most this many (the newest); default all.

    Returns
    -------
    list of str
        Run ids; empty when nothing was segmented yet.

    Raises
    ------
    InputError
        If ``limit`` is not a whole number of at least 1.
    """
    if limit is not None:
        limit = bounded_int(limit, "limit", lo=1, hi=MAX_ROWS)
    ids = [r.model_id for r in Registry(store).list("segment") if r.active]
    return ids if limit is None else ids[:limit]


def member_features(
    store: Store, ref: str | None = None, *, sample: int | None = 4000, seed: int = 7
) -> pd.DataFrame:
    """A run's members with the feature values it was fitted on, read from today's profiles.

    Parameters
    ----------
    ref : str, optional
        A run id, or a run name (its active run); default the latest active run.
    sample : int, optional
        Return a uniform sample of this many members (reservoir sampling); None for all.
    seed : int
        The sample's seed: the same seed, members and profiles give the same sample.

    Returns
    -------
    DataFrame
        ``user_id``, one column per feature of the run (derived features computed and gaps
        filled as when fitting, raw values: not scaled) and ``segment``, one row per member
        (in no particular order).

    Raises
    ------
    NotFoundError
        If there is no such run, or no profiles.
    InputError
        If the profiles no longer have a trait the run uses, or ``sample`` or ``seed`` is out
        of range.
    """
    run = resolve(store, ref)
    features: Sql = select_sql(run["features"], profile_columns(store))
    sampled: Sql = ""
    if sample is not None:
        size = bounded_int(sample, "sample", lo=1, hi=MAX_ROWS)
        state = bounded_int(seed, "seed", lo=0, hi=2**31 - 1)
        sampled = f"USING SAMPLE {int(size)} ROWS (reservoir, {int(state)})"
    # The sample is drawn from the run's members: DuckDB samples a FROM clause before its
    # WHERE, so sampling the join itself would draw from every run's members.
    return store.sql(
        f"SELECT * FROM (SELECT f.*, m.segment FROM ({features}) f "
        f"JOIN segment_members m USING (user_id) WHERE m.run_id = ?) {sampled}",
        [run["run_id"]],
    ).df()


def export_members(store: Store, ref: str | None, out: str | os.PathLike[str]) -> int:
    """Write a run's members to Parquet or CSV (by the file's extension), ordered by user id.

    Parameters
    ----------
    ref : str or None
        A run id, or a run name (its active run); None for the latest active run.
    out : str or path-like
        The file to write (``--out``), replaced atomically; see
        :func:`jingzhun.store.export.copy_out`.

    Returns
    -------
    int
        The rows written: ``user_id``, ``segment``, ``label`` (the segment's portrait name) and
        ``fitted`` (false for members assigned after the fit).

    Raises
    ------
    NotFoundError
        If there is no such run.
    InputError
        If ``out`` may not be written or is neither ``.parquet`` nor ``.csv``.
    """
    run_id = resolve(store, ref)["run_id"]
    return copy_out(
        store,
        "SELECT m.user_id, m.segment, p.label, m.fitted FROM segment_members m "
        "LEFT JOIN segment_portraits p USING (run_id, segment) "
        "WHERE m.run_id = ? ORDER BY m.user_id",
        out,
        params=[run_id],
    )
